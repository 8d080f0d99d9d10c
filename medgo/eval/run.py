"""``medgo eval run``: generate, parse and score every configured task for every model, then report.

    medgo eval run --config jobs/configs/eval/tiny.yaml
    medgo eval run --config jobs/configs/eval/compare.yaml              # two models side by side
    ray job submit --working-dir . -- python jobs/eval.py --config jobs/configs/eval/production.yaml

Before Ray starts, every input is read and checked: the config, each model's tokenizer and
architecture config (no weights), every task file (a task whose files are missing is skipped
and named in the report), every ClinicalQA question.  Then, per model, all requests of all
tasks go through one pool of replicas (:func:`medgo.eval.generation.run_requests`), so the
weights load once per replica.  The run directory ``<output_dir>/eval/<run_name>/`` receives
``config.yaml``, ``results.json``, ``report.md``, ``scores.png`` and ``predictions/<model>/``
(per-sample JSONL with the raw generation and parse status; the KUAKE-IR ranking as TSV).

On a cluster started with ``ray start --head`` clients need ``RAY_AUTH_MODE=token`` and the
token in ``~/.ray/auth_token`` to ``ray job submit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medgo import console
from medgo.config import save_config
from medgo.data.prompts import CLINICALQA, build_prompt, clinicalqa_option_text
from medgo.eval import clinicalqa as cqa
from medgo.eval.cblue import assemble, cblue_tasks
from medgo.eval.config import EvalConfig, EvalModel
from medgo.eval.generation import Renderer, make_request, run_requests
from medgo.eval.report import write_jsonl, write_report
from medgo.ray_utils import init_ray


# --- ClinicalQA ------------------------------------------------------------------------------


@dataclass
class ClinicalQATask:
    """Generation on the original and shuffled questions, plus one log-likelihood per option."""

    questions: list[cqa.Question]
    shuffled: list[cqa.Question] | None
    max_new_tokens: int
    loglik: str

    def all_questions(self) -> list[cqa.Question]:
        return self.questions + (self.shuffled or [])

    def requests(self, render: Renderer) -> list[dict]:
        out = []
        for q in self.all_questions():
            prompt = render(build_prompt(CLINICALQA, q))
            out.append(make_request(f"{CLINICALQA}/{q.uid}", prompt, self.max_new_tokens))
            if self.loglik != "off":
                for k in cqa.LETTERS:
                    cont = k if self.loglik == "letter" else clinicalqa_option_text(q, k)
                    out.append(make_request(f"{CLINICALQA}/{q.uid}/{k}", prompt, continuation=cont))
        return out

    def _option_scores(self, q: cqa.Question, answers: dict) -> dict[str, float] | None:
        """Log-likelihood per shown option (per token in ``option`` mode); ``None`` when off."""
        if self.loglik == "off":
            return None
        scores = {k: answers[f"{CLINICALQA}/{q.uid}/{k}"] for k in cqa.LETTERS}
        if self.loglik == "letter":
            return {k: a["loglik"] for k, a in scores.items()}
        return {k: a["loglik"] / max(1, a["n_tokens"]) for k, a in scores.items()}

    def finish(self, answers: dict, out_dir: Path) -> dict:
        rows, letters, picks = [], {}, {}
        for q in self.all_questions():
            raw = answers[f"{CLINICALQA}/{q.uid}"]["text"]
            letters[q.uid] = cqa.extract_letter(raw)
            option_scores = self._option_scores(q, answers)
            picks[q.uid] = max(cqa.LETTERS, key=option_scores.get) if option_scores else None
            rows.append({"uid": q.uid, "answer": q.answer, "raw": raw, "parsed": letters[q.uid], "parse_ok": letters[q.uid] is not None, "loglik": option_scores, "loglik_pick": picks[q.uid], "perm": "".join(q.perm)})
        write_jsonl(out_dir / "ClinicalQA.jsonl", rows)
        sq = self.shuffled
        result = cqa.score(self.questions, [letters[q.uid] for q in self.questions], sq, [letters[q.uid] for q in sq] if sq else None)
        if self.loglik != "off":
            ll = cqa.score(self.questions, [picks[q.uid] for q in self.questions], sq, [picks[q.uid] for q in sq] if sq else None)
            result |= {f"{k}_loglik": v for k, v in ll.items() if k in {"accuracy", "accuracy_shuffled", "consistency"}}
        return result


def clinicalqa_task(cfg: EvalConfig) -> ClinicalQATask | None:
    c = cfg.clinicalqa
    if not c.enabled:
        return None
    files = c.files or cqa.default_files()
    questions = cqa.load_questions(files, c.max_samples)
    shuffled = cqa.shuffle_all(questions, c.shuffle_seed) if c.shuffle_seed is not None else None
    return ClinicalQATask(questions, shuffled, c.max_new_tokens, c.loglik)


# --- the stage -------------------------------------------------------------------------------


def make_renderer(model: EvalModel, cfg: EvalConfig, longest_reply: int) -> Renderer:
    """Load the tokenizer and architecture config (no weights): a bad model dir fails here."""
    from medgo.model.loading import model_config_for, resolve_tokenizer_path
    from medgo.model.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(resolve_tokenizer_path(model.model))
    context = getattr(model_config_for(model.model, tokenizer), "max_position_embeddings", None) or 4096
    limit = cfg.generation.max_prompt_tokens or max(16, context - longest_reply)
    return Renderer(tokenizer, limit)


def run(cfg: EvalConfig) -> dict:
    """Evaluate every model of ``cfg``; returns the results dict also written to ``results.json``."""
    if cfg.cblue.split == "test":
        raise ValueError("cblue.split=test has no answers to score; 'medgo eval predict --split test' writes the submission files")
    run_dir = cfg.run_dir()
    tasks, skipped = cblue_tasks(cfg)
    for task, why in skipped.items():
        print(f"skipping {task}: {why}")
    qa = clinicalqa_task(cfg)
    units = [*tasks.values(), *([qa] if qa else [])]
    if not units:
        raise ValueError("nothing to evaluate: every configured task was skipped and ClinicalQA is disabled")
    longest = max([cfg.generation.max_new_tokens, *cfg.generation.max_new_tokens_per_task.values(), cfg.clinicalqa.max_new_tokens])
    renderers = {m.name: make_renderer(m, cfg, longest) for m in cfg.models}
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    init_ray(cfg.ray.address)
    count = AnswerCount(len(cfg.models))
    per_model = {m.name: evaluate_model(m, cfg, tasks, qa, renderers[m.name], run_dir / "predictions" / m.name, count) for m in cfg.models}
    results = assemble(cfg, per_model, skipped)
    paths = write_report(run_dir, results, cfg.chart)
    print(paths["report"].read_text(encoding="utf-8"))
    console.summary(f"eval '{cfg.run_name}': CBLUE mean " + ", ".join(f"{m} {v}" for m, v in results["average"].items()) + f"; report {paths['report']}")
    return results


class AnswerCount:
    """Answers so far, out of every model's requests, shown on the stage's progress bar."""

    def __init__(self, models: int):
        self.models, self.done, self.total = models, 0, 0

    def expect(self, requests: int) -> None:
        self.total = self.total or requests * self.models  # every model answers the same requests

    def __call__(self) -> None:
        self.done += 1
        console.progress(self.done, self.total)


def evaluate_model(model: EvalModel, cfg: EvalConfig, tasks: dict, qa: ClinicalQATask | None, render: Renderer, out_dir: Path, on_answer=None) -> dict:
    """All requests of all tasks through one replica pool, then each task parses and scores its answers."""
    units = [*tasks.values(), *([qa] if qa else [])]
    requests = [r for unit in units for r in unit.requests(render)]
    if on_answer is not None:
        on_answer.expect(len(requests))
    answers = run_requests(model.model, requests, cfg.generation, cfg.ray, desc=f"eval {model.name}", on_answer=on_answer)
    return {
        "cblue": {name: task.finish(answers, out_dir) for name, task in tasks.items()},
        "clinicalqa": qa.finish(answers, out_dir) if qa else None,
        "truncated_prompts": render.truncated,
    }
