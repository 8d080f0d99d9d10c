"""A round's judgements: read from the store past the registry's watermark, de-identified, split.

    batch = read_judgements("sqlite:///runs/serve/feedback.db", after=watermark)
    batch.write(path)                                # the feedback JSONL the DPO/KTO builders read
    train, held = hold_back(batch.records, share=0.2, seed=0, min_pairs=1)

Every feedback row with ``id > after`` is read, oldest first, joined with the completion it judges,
and de-identified exactly as ``medgo serve export`` does (:func:`medgo.serve.store.deidentify_record`).
A changed verdict is a newer row for the same response: the newest row of a response is its
current judgement, the older ones are superseded (they still count as consumed, so the next round
does not read them again).  Each line carries its ``feedback_id``; the lineage the registry keeps is
the consumed ids, their count, the highest id (the next watermark), the SHA-256 of the ids
(:func:`medgo.flywheel.registry.feedback_lineage`) and ``file_sha256``, that of the round's file.

The hold-back works on conversation contexts: all judgements of a held-back context leave the
training file, so no held-back pair (nor either of its answers) is trained on.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from medgo.data.feedback import feedback_context
from medgo.flywheel.registry import feedback_lineage
from medgo.serve.store import CompletionRow, FeedbackRow, deidentify_record, make_engine, preference_record


@dataclass
class Judgements:
    """The feedback rows one round consumes, as de-identified export records (oldest first)."""

    records: list[dict]
    ids: list[int]
    deidentified: Counter = field(default_factory=Counter)

    @property
    def watermark(self) -> int | None:
        return max(self.ids) if self.ids else None

    def current(self) -> list[dict]:
        """The newest judgement of each response (the others are superseded)."""
        newest = {r["response_id"]: r["feedback_id"] for r in self.records}
        return [r for r in self.records if newest[r["response_id"]] == r["feedback_id"]]

    def lineage(self, path: Path) -> dict:
        """What the registry records about the rows a version was trained on, plus the SHA-256 of the round's file."""
        return {**feedback_lineage(self.ids), "file_sha256": file_sha256(path)}


def read_judgements(database_url: str, after: int = 0) -> Judgements:
    """Feedback rows with ``id > after`` joined with their completions, de-identified, oldest first."""
    engine = make_engine(database_url)
    query = (select(FeedbackRow, CompletionRow).join(CompletionRow, FeedbackRow.response_id == CompletionRow.id)
             .where(FeedbackRow.id > after).order_by(FeedbackRow.id))  # fmt: skip
    counts: Counter = Counter()
    records, ids = [], []
    try:
        with Session(engine) as session:
            for fb, comp in session.execute(query):
                records.append({**deidentify_record(preference_record(fb, comp), counts), "feedback_id": fb.id})
                ids.append(fb.id)
    finally:
        engine.dispose()
    return Judgements(records, ids, counts)


def plant(store, records: list[dict], prefix: str) -> list[int]:
    """Store judgement records (``prompt, answer, verdict[, corrected_answer, reviewer]``) as tiny-model
    chat completions with their feedback; the new feedback ids (tests and the round benchmark)."""
    ids = []
    for i, r in enumerate(records):
        rid = f"{prefix}-{i}"
        store.add_completion(id=rid, endpoint="chat", model="medgo-tiny", base_version="tiny@planted", adapter=None, adapter_version=None,
                             prompt=[{"role": "user", "content": r["prompt"]}], answer=r["answer"], params={}, finish_reason="stop",
                             prompt_tokens=10, completion_tokens=10, latency_s=0.01)  # fmt: skip
        ids.append(store.add_feedback(rid, r["verdict"], corrected_answer=r.get("corrected_answer"), reviewer=r.get("reviewer")).id)
    return ids


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- hold-back


def context_key(record: dict) -> str | None:
    """The conversation before the answer, as a stable string (None: no usable context)."""
    context, _ = feedback_context(record)
    return None if context is None else json.dumps(context, ensure_ascii=False)


def paired_contexts(records: list[dict]) -> dict[str, int]:
    """Contexts that give at least one pair -> how many pairs (verdict pairs + corrections)."""
    verdicts: dict[str, Counter] = {}
    corrections: Counter = Counter()
    for r in records:
        key = context_key(r)
        if key is None:
            continue
        verdicts.setdefault(key, Counter())[r["verdict"]] += 1
        corrections[key] += bool(r["verdict"] == "unacceptable" and r.get("corrected_answer"))
    pairs = {k: c["acceptable"] * c["unacceptable"] + corrections[k] for k, c in verdicts.items()}
    return {k: n for k, n in pairs.items() if n}


def hold_back(records: list[dict], share: float, seed: int, min_pairs: int = 1) -> tuple[list[dict], list[dict]]:
    """(training records, held-back records): whole contexts, seeded, about ``share`` of the pairs.

    ``records`` are current judgements.  Contexts are taken in the order of a seeded hash until
    ``max(share x pairs, min_pairs)`` pairs are held back (``share: 0`` holds back nothing); one
    paired context always stays in training.
    """
    pairs = paired_contexts(records)
    order = sorted(pairs, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    target = max(share * sum(pairs.values()), min_pairs) if share > 0 else 0
    held: set[str] = set()
    for key in order[:-1]:  # the last context always stays in training
        if sum(pairs[k] for k in held) >= target:
            break
        held.add(key)
    return [r for r in records if context_key(r) not in held], [r for r in records if context_key(r) in held]
