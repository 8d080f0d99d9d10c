"""Doctors' judgements -> KTO's unpaired rows, and the choice between DPO and KTO.

    rows = build_unpaired(feedback=["runs/serve/feedback-round1.jsonl"], pairs=["medgo://assets/dpo/pairs.jsonl"])
    rows.write("runs/kto/tiny/data")     # rows.parquet, summary.json, skipped.jsonl
    method, counts = choose_method("auto", feedback=[...], pairs=[...])   # ("kto", {"judgements": 64, ...})

The files and the reading rules are the DPO pair builder's (:mod:`medgo.train.preference`): the
newest judgement of a response wins (older ones counted as ``superseded``), whitespace is
normalised, everything is de-identified unless ``raw_unsafe``, every unusable record is counted by
reason and listed with file and line in ``skipped.jsonl``, and the same files in the same order
give the same rows in the same order.  What differs is that a judgement needs no partner:

* an acceptable answer is a desirable row, an unacceptable one an undesirable row (kind ``verdict``);
* a doctor's ``corrected_answer`` is one more desirable row (kind ``correction``);
* a ready-made ``{prompt, chosen, rejected}`` line gives a desirable and an undesirable row (kind ``given``).

A repeat of an earlier row (same context and completion, same label) is dropped as
``duplicate_row``; a completion labelled both desirable and undesirable in the same context
(e.g. a correction equal to the answer it corrects) is dropped on every side as
``conflicting_labels``.  Rows are TRL's conversational unpaired format: ``prompt`` a list of
``{role, content}`` messages, ``completion`` one assistant message, ``label`` a bool, followed by
provenance columns.

:func:`choose_method` applies the rule for ``auto``: when any usable judgement would give no DPO
pair (an acceptable answer with no unacceptable one beside it, an unacceptable one with neither a
correction nor an acceptable answer beside it), KTO trains on every judgement; otherwise DPO.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from medgo.data.feedback import ACCEPTABLE
from medgo.train.preference import (
    Judgement,
    Ledger,
    Pair,
    build_preferences,
    judgement_counts,
    data_summary,
    expand_paths,
    messages_type,
    read_given,
    read_judgements,
    unpaired_count,
    where,
    write_data,
)

ROWS_FILE = "rows.parquet"
METHODS = ("dpo", "kto", "auto")


@dataclass(frozen=True)
class Example:
    """One completion after ``context``, desirable (``label``) or not, with where it came from."""

    context: tuple[tuple[str, str], ...]
    completion: str
    label: bool
    kind: str
    response_id: str | None
    source: str
    origin: tuple[str, int]
    reviewer: str | None = None

    def key(self) -> str:
        payload = json.dumps([self.context, self.completion], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def row(self) -> dict:
        """The TRL conversational unpaired row plus provenance columns."""
        return {
            "prompt": [{"role": role, "content": content} for role, content in self.context],
            "completion": [{"role": "assistant", "content": self.completion}],
            "label": self.label,
            "row_id": self.key(),
            "kind": self.kind,
            "response_id": self.response_id,
            "source": self.source,
            "reviewer": self.reviewer,
        }


# ----------------------------------------------------------------------------- rows


def judgement_examples(j: Judgement) -> list[Example]:
    """The judged answer (desirable when acceptable) and the doctor's correction (desirable)."""
    rows = [Example(j.context, j.answer, j.verdict == ACCEPTABLE, "verdict", j.response_id, where(j.origin), j.origin, j.reviewer)]
    if j.corrected:
        rows.append(Example(j.context, j.corrected, True, "correction", j.response_id, f"{where(j.origin)}#corrected_answer", j.origin, j.reviewer))
    return rows


def pair_examples(p: Pair) -> list[Example]:
    """A ready-made pair: chosen desirable, rejected undesirable."""
    return [Example(p.context, p.chosen, True, p.kind, p.chosen_id, p.chosen_source, p.origin),
            Example(p.context, p.rejected, False, p.kind, p.rejected_id, p.rejected_source, p.origin)]  # fmt: skip


def drop_bad_examples(examples: list[Example], ledger: Ledger) -> list[Example]:
    """Drop repeats of an earlier row and every row of a completion that carries both labels."""
    groups: dict[str, list[Example]] = {}
    for e in examples:
        groups.setdefault(e.key(), []).append(e)
    kept = []
    for group in groups.values():
        if len({e.label for e in group}) > 1:
            for e in group:
                ledger.skip(e.origin, "conflicting_labels", f"{e.kind} row: the same completion is judged desirable and undesirable")
            continue
        kept.append(group[0])
        for e in group[1:]:
            ledger.skip(e.origin, "duplicate_row", f"{e.kind} row repeats the one from {where(group[0].origin)}")
    return kept


# ----------------------------------------------------------------------------- the set


@dataclass
class UnpairedSet:
    """The KTO rows built from some feedback and pair files, and the ledger of what was skipped."""

    examples: list[Example]
    ledger: Ledger
    sources: dict[str, list[str]]
    deidentified: Counter | None = None
    """Identifiers replaced, by type; None when built with ``raw_unsafe``."""
    judged: list[str] = field(default_factory=list)
    """``response_id`` of every usable judgement, the newest of each response."""

    def rows(self) -> list[dict]:
        return [e.row() for e in self.examples]

    def used(self) -> set[str]:
        """Judgements (``response_id``) that gave at least one kept row."""
        return {e.response_id for e in self.examples if e.kind != "given"}

    def summary(self, max_listed: int = 50) -> dict:
        labels = Counter(e.label for e in self.examples)
        return {
            "rows": len(self.examples),
            "desirable": labels[True],
            "undesirable": labels[False],
            "by_kind": dict(sorted(Counter(e.kind for e in self.examples).items())),
            **data_summary(self.ledger, self.sources, self.deidentified, max_listed),
        }

    def write(self, out_dir: str | Path, **extra) -> Path:
        """``rows.parquet``, ``summary.json`` and ``skipped.jsonl`` (the summary with ``extra``) in ``out_dir``; returns the Parquet path."""
        return write_data(out_dir, ROWS_FILE, self.rows(), ROW_SCHEMA, {**self.summary(), **extra}, self.ledger)


def _row_schema():
    import pyarrow as pa

    columns = [("prompt", messages_type()), ("completion", messages_type()), ("label", pa.bool_())]
    columns += [(name, pa.string()) for name in ("row_id", "kind", "response_id", "source", "reviewer")]
    return pa.schema(columns)


ROW_SCHEMA = _row_schema()


def build_unpaired(feedback: Iterable[str] = (), pairs: Iterable[str] = (), raw_unsafe: bool = False) -> UnpairedSet:
    """Read feedback files (oldest round first) and ready-made pair files into KTO rows,
    de-identified unless ``raw_unsafe``; see the module docstring."""
    ledger, counts = Ledger(), None if raw_unsafe else Counter()
    feedback_paths, pair_paths = expand_paths(feedback), expand_paths(pairs)
    latest = read_judgements(feedback_paths, ledger, counts)
    examples = [e for j in latest for e in judgement_examples(j)]
    examples += [e for p in read_given(pair_paths, ledger, counts) for e in pair_examples(p)]
    sources = {"feedback": [str(p) for p in feedback_paths], "pairs": [str(p) for p in pair_paths]}
    return UnpairedSet(drop_bad_examples(examples, ledger), ledger, sources, counts, [j.response_id for j in latest])


def load_rows(path: str | Path, seed: int):
    """``rows.parquet`` as a Hugging Face ``Dataset`` with TRL's ``prompt``/``completion``/``label`` columns, in a seeded order.

    KTOTrainer reads the rows in order (its KL term pairs each prompt with its batch neighbour's
    completion), so the order is shuffled once here rather than by the sampler.
    """
    import pyarrow.parquet as pq
    from datasets import Dataset

    return Dataset.from_list(pq.read_table(path, columns=["prompt", "completion", "label"]).to_pylist()).shuffle(seed=seed)


# ----------------------------------------------------------------------------- DPO or KTO


def choose_method(method: str, feedback: Iterable[str] = (), pairs: Iterable[str] = (), raw_unsafe: bool = False) -> tuple[str, dict]:
    """``(method_used, counts)`` for ``method`` in ``dpo | kto | auto``.

    ``auto`` is KTO when any usable judgement would give no DPO pair (KTO then uses every
    judgement; ready-made pairs give a desirable and an undesirable row), otherwise DPO.
    ``counts``: ``requested``, ``method``, ``judgements`` (usable, newest of each response),
    ``unpaired`` (those that give no DPO pair), ``dpo`` and ``kto`` (judgements each method
    trains on) and ``unused``; the stages write the same dict under ``judgements`` in
    ``data/summary.json``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    feedback, pairs = list(feedback), list(pairs)
    prefs = build_preferences(feedback, pairs, raw_unsafe=raw_unsafe)
    unpaired = unpaired_count(prefs)
    used = "kto" if method == "kto" or (method == "auto" and unpaired) else "dpo"
    spent = build_unpaired(feedback, pairs, raw_unsafe=raw_unsafe).used() if used == "kto" else prefs.used()
    return used, {"requested": method, **judgement_counts(used, prefs.judged, spent, unpaired)}
