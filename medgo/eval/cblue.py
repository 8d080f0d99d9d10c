"""CBLUE tasks in the evaluation run: examples -> prompts -> parsed predictions -> scores.

    tasks, skipped = native_tasks(cfg)      # {task: GenerationTask | IRTask}, {task: reason}

Examples and prompts come from the shared formats (:func:`medgo.data.cblue.read_examples`,
:func:`medgo.data.prompts.build_prompt`), the very ones SFT trains on; parsers and scorers come
from :mod:`medgo.eval.metrics`, so a parsed reply is scored by exactly the code that scores a
submission file with ``medgo eval score``.

With ``metric_set: promptcblue`` the run instead generates from the PromptCBLUE file's ready-made
``input`` prompts and scores the replies with the PromptCBLUE evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medgo.data import cblue
from medgo.data.cblue import SR_LEVELS
from medgo.data.files import as_str, records
from medgo.data.paths import resolve_path
from medgo.data.prompts import build_prompt
from medgo.eval import retrieval
from medgo.eval.config import EvalConfig, RetrievalConfig
from medgo.eval.generation import Renderer, make_request
from medgo.eval.metrics import ASSETS, TASKS, get_task, parse, score_promptcblue_rows
from medgo.eval.report import write_jsonl


# --- examples -> predictions ------------------------------------------------------------------


def add_cdn_choices(examples: list[dict], gold_path, k: int) -> None:
    """CHIP-CDN: the ``k`` standard terms of ``icd10_vocab.tsv`` closest to each text by BM25 (shown in the prompt)."""
    vocab_path = Path(gold_path).with_name("icd10_vocab.tsv")
    if not vocab_path.is_file():
        return
    terms = {str(i): text for i, text in enumerate(sorted(set(retrieval.read_tsv(vocab_path).values())))}
    cands = retrieval.bm25_candidates(terms, {str(i): ex["text"] for i, ex in enumerate(examples)}, RetrievalConfig(top_k=k))
    for i, ex in enumerate(examples):
        ex["choices"] = [terms[pid] for pid, _ in cands[str(i)][:k]]


def collect(task: str, examples: list[dict], results: list[tuple]) -> object:
    """Parsed replies ``(prediction, parse_ok)`` -> the prediction structure the task's scorer takes.

    An unparsed reply contributes no prediction: the scorer counts its units as missing (wrong).
    """
    kept = [(ex, p) for ex, (p, ok) in zip(examples, results) if ok]
    if task == "CHIP-MDCFNPC":
        return {k: v for _, p in kept for k, v in p.items()}
    if task == "IMCS-V2-SR":
        return {level: {ex["keys"][0]: p for ex, p in kept if ex["level"] == level} for level in SR_LEVELS}
    return {ex["keys"][0]: p for ex, p in kept}


# --- one task in the run -----------------------------------------------------------------------


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k) if not isinstance(k, str) else k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in (sorted(x) if isinstance(x, (set, frozenset)) else x)]
    return x


@dataclass
class GenerationTask:
    """A CBLUE task answered by generation: prompts out, parsed and scored replies back."""

    task: str
    gold_path: Path
    examples: list[dict]
    gold: object
    max_new_tokens: int

    def uid(self, i: int) -> str:
        return f"{self.task}/{i}"

    def requests(self, render: Renderer) -> list[dict]:
        return [make_request(self.uid(i), render(build_prompt(self.task, ex)), self.max_new_tokens) for i, ex in enumerate(self.examples)]

    def finish(self, answers: dict, out_dir: Path) -> dict:
        raws = [answers[self.uid(i)]["text"] for i in range(len(self.examples))]
        results = [parse(self.task, raw, ex) for raw, ex in zip(raws, self.examples)]
        rows = [{"keys": _jsonable(ex["keys"]), "level": ex.get("level"), "raw": raw, "parsed": _jsonable(p), "parse_ok": ok} for ex, raw, (p, ok) in zip(self.examples, raws, results)]
        write_jsonl(out_dir / f"{self.task}.jsonl", rows)
        spec = TASKS[self.task]
        scores = spec.score(self.gold, collect(self.task, self.examples, results), **spec.read_resources(self.gold_path))
        return {**scores, "parsed": parse_counts(self.examples, [ok for _, ok in results])}


def parse_counts(examples: list[dict], oks: list[bool]) -> dict[str, list[int]]:
    """``{level: [parsed, prompts]}`` (level ``"None"`` for tasks with a single level)."""
    out: dict[str, list[int]] = {}
    for ex, ok in zip(examples, oks):
        count = out.setdefault(str(ex.get("level")), [0, 0])
        count[0] += bool(ok)
        count[1] += 1
    return out


@dataclass
class IRTask:
    """KUAKE-IR: BM25 candidates per query, optionally reranked by the model's query likelihood,
    written as a ranking and scored by MRR@10."""

    corpus: dict[str, str]
    queries: dict[str, str]
    gold: dict
    cfg: RetrievalConfig
    candidates: dict = field(default_factory=dict)

    def uid(self, qid: str, pid: str) -> str:
        return f"KUAKE-IR/{qid}/{pid}"

    def requests(self, render: Renderer) -> list[dict]:
        self.candidates = retrieval.bm25_candidates(self.corpus, self.queries, self.cfg, render.tokenizer)
        if not self.cfg.rerank:
            return []
        return [make_request(self.uid(q, p), render.plain(retrieval.rerank_prompt(self.corpus[p])), continuation=self.queries[q]) for q, cands in self.candidates.items() for p, _ in cands]

    def ranking(self, answers: dict) -> dict:
        """BM25 candidates, reranked by the model's query likelihood when ``rerank`` is on."""
        ranking = self.candidates
        if self.cfg.rerank:
            per_token = {(q, p): answers[self.uid(q, p)]["loglik"] / max(1, answers[self.uid(q, p)]["n_tokens"]) for q, c in ranking.items() for p, _ in c}
            ranking = retrieval.rerank(ranking, per_token, self.cfg.rerank_weight)
        return ranking

    def finish(self, answers: dict, out_dir: Path) -> dict:
        ranking = self.ranking(answers)
        path = retrieval.write_ranking(out_dir / "KUAKE-IR_ranking.tsv", ranking, self.cfg.top_k)
        spec = TASKS["KUAKE-IR"]
        ranked = sum(1 for q in self.gold if q in ranking)
        return {**spec.score(self.gold, spec.read_pred(path)), "parsed": {"None": [ranked, len(self.gold)]}}


# --- PromptCBLUE -------------------------------------------------------------------------------


@dataclass
class PromptCBLUETask:
    """PromptCBLUE rows: generate from each ``input``, score every task with the PromptCBLUE evaluator."""

    rows: list[dict]
    max_new_tokens: int

    def requests(self, render: Renderer) -> list[dict]:
        return [make_request(f"promptcblue/{i}", render([{"role": "user", "content": as_str(r.get("input"))}]), self.max_new_tokens) for i, r in enumerate(self.rows)]

    def finish(self, answers: dict, out_dir: Path) -> dict:
        preds = [{"sample_id": r.get("sample_id"), "task_dataset": r.get("task_dataset"), "target": answers[f"promptcblue/{i}"]["text"]} for i, r in enumerate(self.rows)]
        write_jsonl(out_dir / "promptcblue_predictions.jsonl", preds)
        return score_promptcblue_rows(self.rows, preds)


# --- task selection ----------------------------------------------------------------------------


def gold_file(cfg: EvalConfig, task: str) -> Path:
    """``<data_dir>/<asset dir>/<gold file for the split>``."""
    spec = TASKS[task]
    root = resolve_path(cfg.cblue.data_dir) if cfg.cblue.data_dir else ASSETS
    name = spec.gold_file.replace("dev", cfg.cblue.split)
    path = root / spec.asset_dir / name
    if task == "KUAKE-IR" and not path.is_file():  # the official release names it KUAKE-IR_<split>.tsv
        path = path.with_name(f"KUAKE-IR_{cfg.cblue.split}.tsv")
    return path


def _ir_task(cfg: EvalConfig, path: Path) -> IRTask:
    queries_path, corpus_path = path.with_name(f"{cfg.cblue.split}.query.txt"), path.with_name("corpus.tsv")
    for p in (queries_path, corpus_path):
        if not p.is_file():
            raise FileNotFoundError(f"missing file {p}")
    gold = TASKS["KUAKE-IR"].read_gold(path)
    queries = {q: t for q, t in retrieval.read_tsv(queries_path).items() if q in gold}
    if cfg.cblue.max_samples:
        queries = dict(list(queries.items())[: cfg.cblue.max_samples])
        gold = {q: gold[q] for q in queries}
    return IRTask(retrieval.read_tsv(corpus_path), queries, gold, cfg.retrieval)


def native_tasks(cfg: EvalConfig) -> tuple[dict, dict]:
    """``(tasks, skipped)``: every configured task whose files read cleanly; the rest named with the reason."""
    if cfg.cblue.data_dir and cfg.cblue.tasks and not resolve_path(cfg.cblue.data_dir).is_dir():
        raise FileNotFoundError(f"CBLUE data directory not found: {cfg.cblue.data_dir} (cblue.data_dir)")
    tasks, skipped = {}, {}
    for task in cfg.cblue.tasks:
        path = gold_file(cfg, task)
        if not path.is_file():
            skipped[task] = f"missing file {path}"
            continue
        try:
            if task == "KUAKE-IR":
                tasks[task] = _ir_task(cfg, path)
                continue
            examples, gold = cblue.read_examples(task, path, cfg.cblue.max_samples)
            if task == "CHIP-CDN" and cfg.cblue.cdn_candidates:
                add_cdn_choices(examples, path, cfg.cblue.cdn_candidates)
        except FileNotFoundError as exc:
            skipped[task] = str(exc)
            continue
        if not examples:
            skipped[task] = f"no labelled examples in {path}"
            continue
        budget = cfg.generation.max_new_tokens_per_task.get(task, cfg.generation.max_new_tokens)
        tasks[task] = GenerationTask(task, path, examples, gold, budget)
    return tasks, skipped


def promptcblue_task(cfg: EvalConfig) -> tuple[dict, dict]:
    """The PromptCBLUE rows of the configured tasks (``max_samples`` per task); missing tasks are skipped."""
    from medgo.assets import asset_path

    path = resolve_path(cfg.cblue.promptcblue_file) if cfg.cblue.promptcblue_file else asset_path("promptcblue", "dev.json")
    if not path.is_file():
        return {}, {task: f"missing file {path}" for task in cfg.cblue.tasks}
    rows, per_task = [], {}
    for r in records(path):
        try:
            task = get_task(as_str(r.get("task_dataset"))).name
        except KeyError:
            continue
        if task in cfg.cblue.tasks and per_task.get(task, 0) < (cfg.cblue.max_samples or float("inf")):
            per_task[task] = per_task.get(task, 0) + 1
            rows.append(r)
    skipped = {task: f"no {task} rows in {path}" for task in cfg.cblue.tasks if task not in per_task}
    budget = cfg.generation.max_new_tokens
    return ({"PromptCBLUE": PromptCBLUETask(rows, budget)} if rows else {}), skipped


def cblue_tasks(cfg: EvalConfig) -> tuple[dict, dict]:
    return promptcblue_task(cfg) if cfg.cblue.metric_set == "promptcblue" else native_tasks(cfg)


# --- results -----------------------------------------------------------------------------------


def table_rows(cfg: EvalConfig, per_model: dict) -> list[dict]:
    """Table 1 rows in the paper's task order: one per task, IMCS-V2-SR twice (utterance, dialogue)."""
    rows: dict[str, dict] = {}
    order = {t: i for i, t in enumerate(TASKS)}

    def add(name: str, task: str, metric: str, model: str, score, parsed=None, sub: int = 0):
        row = rows.setdefault(name, {"task": name, "description": TASKS[task].description, "metric": metric, "scores": {}, "parsed": {}, "order": (order[task], sub)})
        row["scores"][model] = score
        if parsed is not None:
            row["parsed"][model] = parsed

    for model, res in per_model.items():
        for name, r in res["cblue"].items():
            if name == "PromptCBLUE":
                for pc_task, s in r["tasks"].items():
                    task = get_task(pc_task).name
                    add(task, task, s.get("metric", ""), model, s["score"])
            elif name == "IMCS-V2-SR":
                add("IMCS-V2-SR (utterance)", name, "Micro-F1", model, r["utterance_f1"], r["parsed"].get("utterance"), 0)
                dialogue = r["parsed"].get("dialogue")  # asked but nothing parsed: the scorer sees no dialogue level, F1 is 0
                add("IMCS-V2-SR (dialogue)", name, "Micro-F1", model, r["dialogue_f1"] if r["dialogue_f1"] is not None or not dialogue else 0.0, dialogue, 1)
            else:
                add(name, name, TASKS[name].metric, model, r["score"], r["parsed"]["None"])
    return [{k: v for k, v in row.items() if k != "order"} for row in sorted(rows.values(), key=lambda r: r["order"])]


def assemble(cfg: EvalConfig, per_model: dict, skipped: dict) -> dict:
    """The results dict of :mod:`medgo.eval.report`, with every raw score kept under ``details``."""
    rows = table_rows(cfg, per_model)
    models = [m.name for m in cfg.models]
    average = {m: (round(sum(r["scores"][m] or 0.0 for r in rows) / len(rows), 4) if rows else None) for m in models}
    return {
        "run_name": cfg.run_name,
        "metric_set": cfg.cblue.metric_set,
        "models": models,
        "rows": rows,
        "average": average,
        "skipped": skipped,
        "clinicalqa": {m: per_model[m]["clinicalqa"] for m in models if per_model[m]["clinicalqa"]},
        "truncated_prompts": {m: per_model[m]["truncated_prompts"] for m in models},
        "details": {m: _jsonable(per_model[m]["cblue"]) for m in models},
    }
