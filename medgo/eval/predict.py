"""``medgo eval predict``: answer the CBLUE test sets and write what the leaderboard takes.

    medgo eval predict --config jobs/configs/eval/tiny.yaml --split test
    medgo eval predict --config jobs/configs/eval/tiny.yaml --split test --format promptcblue

For every configured task the model answers each record of the task's official test file (no
answers in it) with the same prompts and parsers as ``medgo eval run``.  The run directory's
``submission/`` folder (``<output_dir>/eval/<run_name>/submission/``) receives one file per task
in the name and layout of the CBLUE leaderboard (:mod:`medgo.eval.submission`) and
``submission.zip`` holding them all; a reply the parser cannot read still yields a well-formed
record, counted in ``summary.json``.  ``predictions/`` keeps every raw reply.  With
``--format promptcblue`` the model answers the PromptCBLUE file's prompts instead and
``submission/`` receives the PromptCBLUE prediction JSONL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medgo import console
from medgo.config import save_config
from medgo.data.cblue import READERS
from medgo.eval import retrieval
from medgo.eval.cblue import GenerationTask, IRTask, PromptCBLUETask, add_cdn_choices, collect, gold_file, promptcblue_task
from medgo.eval.config import EvalConfig
from medgo.eval.generation import run_requests
from medgo.eval.metrics import parse
from medgo.eval.report import write_jsonl
from medgo.eval.run import AnswerCount, make_renderer
from medgo.eval.submission import IMCS_RAW, check_submission, placeholder_gold, write_submission, zip_submission
from medgo.ray_utils import init_ray

PROMPTCBLUE_FILE = "promptcblue_test_predictions.jsonl"


@dataclass
class SubmissionTask:
    """One task's test file: the generation (or retrieval) task, and where its submission comes from."""

    task: str
    inner: GenerationTask | IRTask
    raw_path: Path
    dialogues_path: Path | None = None

    def requests(self, render) -> list[dict]:
        return self.inner.requests(render)

    def finish(self, answers: dict, out_dir: Path, sub_dir: Path) -> dict:
        if isinstance(self.inner, IRTask):
            pred, n_units, unparsed = self.inner.ranking(answers), len(self.inner.queries), 0
        else:
            raws = [answers[self.inner.uid(i)]["text"] for i in range(len(self.inner.examples))]
            results = [parse(self.task, raw, ex) for raw, ex in zip(raws, self.inner.examples)]
            write_jsonl(out_dir / f"{self.task}.jsonl", [{"raw": raw, "parse_ok": ok} for raw, (_, ok) in zip(raws, results)])
            pred, n_units = collect(self.task, self.inner.examples, results), len(raws)
            unparsed = sum(1 for _, ok in results if not ok)
        path, n_filled = write_submission(self.task, self.raw_path, pred, sub_dir, self.dialogues_path)
        problems = check_submission(self.task, self.raw_path, path, self.dialogues_path)
        return {"file": path.name, "prompts": n_units, "unparsed": unparsed, "filled_in": n_filled, "format_problems": problems}


def submission_task(cfg: EvalConfig, task: str) -> SubmissionTask:
    """The task's test files (a missing one raises ``FileNotFoundError`` naming it)."""
    path = gold_file(cfg, task)
    if task == "KUAKE-IR":
        queries_path = path.with_name("test.query.txt")
        corpus = retrieval.read_tsv(path.with_name("corpus.tsv"))
        return SubmissionTask(task, IRTask(corpus, retrieval.read_tsv(queries_path), {}, cfg.retrieval), queries_path)
    raw = path.with_name(IMCS_RAW[task]) if task in IMCS_RAW else path
    for p in {path, raw}:
        if not p.is_file():
            raise FileNotFoundError(f"missing file {p}")
    examples = READERS[task](task, path, placeholder_gold(task, path))
    if task == "CHIP-CDN" and cfg.cblue.cdn_candidates:
        add_cdn_choices(examples, path, cfg.cblue.cdn_candidates)
    budget = cfg.generation.max_new_tokens_per_task.get(task, cfg.generation.max_new_tokens)
    return SubmissionTask(task, GenerationTask(task, path, examples, None, budget), raw, path if task in IMCS_RAW else None)


def _promptcblue_finish(task: PromptCBLUETask, answers: dict, sub_dir: Path) -> dict:
    rows = [{**r, "target": answers[f"promptcblue/{i}"]["text"]} for i, r in enumerate(task.rows)]
    sub_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(sub_dir / PROMPTCBLUE_FILE, rows)
    return {"file": PROMPTCBLUE_FILE, "prompts": len(rows), "empty": sum(1 for r in rows if not r["target"].strip())}


def run(cfg: EvalConfig) -> dict:
    """Write ``submission/`` for the first model of ``cfg``; returns the summary also written to ``summary.json``."""
    if cfg.cblue.split != "test":
        raise ValueError(f"medgo eval predict answers the test sets: use --split test (cblue.split is {cfg.cblue.split!r})")
    model = cfg.models[0]
    if cfg.cblue.metric_set == "promptcblue":
        tasks, skipped = promptcblue_task(cfg)
    else:
        tasks = {t: submission_task(cfg, t) for t in cfg.cblue.tasks}
        skipped = {}
    if not tasks:
        raise ValueError(f"nothing to predict: {skipped}")
    render = make_renderer(model, cfg, max([cfg.generation.max_new_tokens, *cfg.generation.max_new_tokens_per_task.values()]))
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    init_ray(cfg.ray.address)
    requests = [r for t in tasks.values() for r in t.requests(render)]
    count = AnswerCount(models=1)
    count.expect(len(requests))
    answers = run_requests(model.model, requests, cfg.generation, cfg.ray, desc=f"predict {model.name}", on_answer=count)
    sub_dir, out_dir = run_dir / "submission", run_dir / "predictions" / model.name
    if cfg.cblue.metric_set == "promptcblue":
        results = {"PromptCBLUE": _promptcblue_finish(tasks["PromptCBLUE"], answers, sub_dir)}
    else:
        results = {name: t.finish(answers, out_dir, sub_dir) for name, t in tasks.items()}
    summary = {"model": model.name, "format": cfg.cblue.metric_set, "tasks": results, "skipped": skipped, "zip": zip_submission(sub_dir).name}
    (run_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    for name, r in results.items():
        print(f"{name:<14} {r['file']:<28} {r['prompts']} prompts, {r.get('unparsed', 0)} unparsed, {r.get('filled_in', 0)} filled in")
    console.summary(f"submission written to {sub_dir}")
    return summary
