"""The quickstart's closing table: does each stage do its job on held-out data?

    from medgo.quickstart_table import learning_table
    print(learning_table("runs/quickstart").text())     # after python -m medgo.quickstart

Every figure is read from the runs' artefacts or computed here, on items no stage trained on:

* pre-training: the held-out loss (the last ``eval_loss`` of the run, on the corpus's validation
  blocks) against the unigram entropy of the corpus's training tokens and against the loss the
  same unigram model has on the held-out tokens, all in nats per token;
* SFT: per CBLUE task of the quickstart evaluation (the dev split), the share of replies the
  evaluation's parser read (with ``metric_set: promptcblue``, the PromptCBLUE evaluator: a reply that
  is one of the task's label words), the accuracy, and the majority-class baseline (the share of the
  commonest gold label: the best any constant answer scores);
* DPO: preference accuracy without a reference model (:func:`medgo.eval.preference.preference_accuracy`)
  on the held-out doctors' pairs;
* ClinicalQA: log-likelihood accuracy (chance: 25%).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from medgo.config import ModelConfig, load_config
from medgo.data.cblue import read_examples
from medgo.data.files import read_jsonl
from medgo.data.paths import resolve_path

PARSE_TARGET = 0.8


@dataclass
class Row:
    stage: str
    measure: str
    values: dict[str, float | None]
    """Per model (or one entry ``value`` for a stage-wide figure)."""
    target: str
    met: bool | None = None
    percent: bool = True
    """Shares print as percentages; other figures (losses, counts) as they are."""


@dataclass
class LearningTable:
    models: list[str]
    rows: list[Row] = field(default_factory=list)

    def text(self, times: dict[str, float] | None = None) -> str:
        """Markdown table (models as columns), then the stage times."""
        head = ["stage", "held-out measure", *self.models, "target", "met"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [_fmt(r.values.get(m, r.values.get("value") if m == self.models[0] else None), r.percent) for m in self.models]
            lines.append("| " + " | ".join([r.stage, r.measure, *cells, r.target, {True: "yes", False: "NO", None: ""}[r.met]]) + " |")
        if times:
            lines.append("\nstage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f"; total {sum(times.values()):.0f} s")
        return "\n".join(lines)

    def met(self) -> bool:
        return all(r.met is not False for r in self.rows)


def _fmt(v, percent: bool) -> str:
    if v is None:
        return ""
    return f"{100 * v:.1f}%" if percent else f"{v:.3f}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------- pre-training


def token_counts(corpus_dir: str | Path, split: str) -> np.ndarray:
    """How often each token id occurs in a split of a built corpus."""
    from medgo.corpus.dataset import shard_paths

    ids = [pq.read_table(p, columns=["input_ids"]).column("input_ids").combine_chunks().flatten().to_numpy() for p in shard_paths(corpus_dir, split)]
    return np.bincount(np.concatenate(ids))


def unigram_figures(corpus_dir: str | Path, vocab_size: int) -> tuple[float, float]:
    """``(entropy, held-out cross-entropy)`` of the training tokens' unigram distribution, in nats per token.

    The entropy is the loss of the best context-free model on the training tokens themselves; the
    cross-entropy is that model's loss on the validation tokens (add-one smoothed over the
    vocabulary, so a token the training split lacks costs a finite amount).
    """
    train, held_out = token_counts(corpus_dir, "train"), token_counts(corpus_dir, "validation")
    p = train[train > 0] / train.sum()
    entropy = float(-(p * np.log(p)).sum())
    smoothed = (np.pad(train, (0, vocab_size - len(train))) + 1) / (train.sum() + vocab_size)
    q = np.pad(held_out, (0, vocab_size - len(held_out))) / held_out.sum()
    return entropy, float(-(q * np.log(smoothed)).sum())


def heldout_loss(pretrain_dir: str | Path) -> float | None:
    """The last ``eval_loss`` the pre-training run logged."""
    from medgo.train.metrics import read_metrics

    losses = [r["eval_loss"] for r in read_metrics(Path(pretrain_dir) / "metrics.jsonl") if "eval_loss" in r]
    return losses[-1] if losses else None


def pretrain_rows(corpus_dir, pretrain_dir) -> list[Row]:
    """The held-out loss against the unigram model: its entropy on the corpus and its loss on the held-out tokens."""
    from medgo.model.tokenizer import load_tokenizer

    loss = heldout_loss(pretrain_dir)
    vocab = len(load_tokenizer(Path(pretrain_dir) / "model"))
    entropy, cross = unigram_figures(corpus_dir, vocab)
    return [
        Row("pretrain", f"held-out loss, nats/token (corpus unigram entropy {entropy:.3f})", {"value": loss}, f"< {entropy:.3f}", loss is not None and loss < entropy, percent=False),
        Row("pretrain", "held-out loss of the corpus's unigram model, nats/token", {"value": cross}, f"loss < {cross:.3f}", loss is not None and loss < cross, percent=False),
    ]


# ----------------------------------------------------------------------------- SFT (CBLUE)


def native_figures(eval_dir: Path, cfg, task: str) -> tuple[dict, dict, list]:
    """``(parsed share, right share, gold labels)`` per model from a native run's ``<task>.jsonl``."""
    from medgo.eval.cblue import gold_file

    _, gold = read_examples(task, gold_file(cfg, task))
    parse, acc = {}, {}
    for m in (m.name for m in cfg.models):
        rows = read_jsonl(eval_dir / "predictions" / m / f"{task}.jsonl")
        parse[m] = sum(r["parse_ok"] for r in rows) / len(rows)
        acc[m] = sum(r["parse_ok"] and r["parsed"] == gold[r["keys"][0]] for r in rows) / len(rows)
    return parse, acc, list(gold.values())


def promptcblue_figures(eval_dir: Path, cfg, task: str) -> tuple[dict, dict, list]:
    """The same from a PromptCBLUE run: each reply read as the PromptCBLUE evaluator reads it
    (:func:`~medgo.eval.metrics.promptcblue_replies.structure`); parsed when that is one of the
    task's labels (the evaluator counts the rest ``out_of_label_set``)."""
    from medgo.data.files import records
    from medgo.eval.metrics.promptcblue import CLASSIFICATION, task_name
    from medgo.eval.metrics.promptcblue_replies import structure

    labels = set(CLASSIFICATION[task][0])
    gold = {r["sample_id"]: structure(task, r["target"]) for r in records(resolve_path(cfg.cblue.promptcblue_file)) if task_name(r["task_dataset"]) == task}
    parse, acc = {}, {}
    for m in (m.name for m in cfg.models):
        rows = read_jsonl(eval_dir / "predictions" / m / "promptcblue_predictions.jsonl")
        read = {r["sample_id"]: structure(task, r["target"], lenient=True) for r in rows if r["sample_id"] in gold}
        parse[m] = sum(read.get(k) in labels for k in gold) / len(gold)
        acc[m] = sum(read.get(k) == g for k, g in gold.items()) / len(gold)
    return parse, acc, list(gold.values())


def task_figures(eval_dir: Path, task: str) -> tuple[dict, dict, float, int]:
    """``(parse rate per model, accuracy per model, majority-class baseline, items)`` of one task of the run."""
    from medgo.eval.config import EvalConfig

    cfg = load_config(EvalConfig, Path(eval_dir) / "config.yaml")
    figures = promptcblue_figures if cfg.cblue.metric_set == "promptcblue" else native_figures
    parse, acc, gold = figures(Path(eval_dir), cfg, task)
    return parse, acc, Counter(gold).most_common(1)[0][1] / len(gold), len(gold)


def cblue_rows(eval_dir: Path, base: str, tuned: str) -> list[Row]:
    """Parse rate, accuracy and majority baseline per task; ``tuned`` (the SFT model) carries the targets."""
    from medgo.eval.config import EvalConfig

    cfg = load_config(EvalConfig, eval_dir / "config.yaml")
    rows, beaten = [], []
    for task in cfg.cblue.tasks:
        parse, acc, majority, n = task_figures(eval_dir, task)
        target = f"{tuned} ≥ {PARSE_TARGET:.0%} and > {base}"
        rows.append(Row("sft", f"{task} parse rate ({n} items)", parse, target, parse[tuned] >= PARSE_TARGET and parse[tuned] > parse[base]))
        rows.append(Row("sft", f"{task} accuracy", acc, f"(majority class {majority:.1%})"))
        beaten += [task] if acc[tuned] > majority else []
    rows.append(Row("sft", f"tasks where {tuned} accuracy beats the majority class: {', '.join(beaten) or 'none'}", {"value": len(beaten)}, "≥ 2",
                    len(beaten) >= 2, percent=False))  # fmt: skip
    return rows


def clinicalqa_row(eval_dir: Path) -> Row:
    results = json.loads((eval_dir / "results.json").read_text(encoding="utf-8"))
    values = {m: r["accuracy_loglik"] / 100 if r.get("accuracy_loglik") is not None else None for m, r in results["clinicalqa"].items()}  # the report's percent
    n = len(read_jsonl(eval_dir / "predictions" / results["models"][0] / "ClinicalQA.jsonl"))
    return Row("eval", f"ClinicalQA log-likelihood accuracy ({n} items)", values, "(chance 25%)")


# ----------------------------------------------------------------------------- DPO


def preference_row(models: dict[str, ModelConfig], pairs_file: str, sft: str, dpo: str) -> Row:
    """Preference accuracy on held-out pairs for every model; the DPO model must beat the SFT one."""
    from medgo.eval.preference import preference_accuracy
    from medgo.model.loading import load_model_and_tokenizer

    rows = read_jsonl(resolve_path(pairs_file))
    values = {}
    for name, cfg in models.items():
        model, tokenizer = load_model_and_tokenizer(cfg)
        values[name] = preference_accuracy(model, tokenizer, rows)["accuracy"]
    return Row("dpo", f"preference accuracy ({len(rows)} doctor pairs)", values, f"{dpo} > {sft}", values[dpo] > values[sft])


def eval_models(eval_dir: Path) -> dict[str, ModelConfig]:
    """The evaluated models, as the eval run's ``config.yaml`` names them."""
    from medgo.eval.config import EvalConfig

    return {m.name: m.model for m in load_config(EvalConfig, eval_dir / "config.yaml").models}
