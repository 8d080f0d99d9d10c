"""Doctors' judgements of the model's own answers -> DPO preference pairs.

    pairs = build_preferences(feedback=["runs/serve/feedback-round1.jsonl", "runs/serve/feedback-round2.jsonl"],
                              pairs=["medgo://assets/dpo/pairs.jsonl"])
    pairs.write("runs/dpo/tiny/data")     # pairs.parquet, summary.json, skipped.jsonl

Feedback files are what ``medgo serve export`` writes (one judgement per line: ``response_id,
prompt, messages, answer, verdict, corrected_answer, reviewer, ...``); pair files hold
ready-made ``{prompt, chosen, rejected}`` lines.  The rules, all deterministic (the same files
in the same order give the same rows in the same order):

* Responses are grouped by their conversation context: the chat ``messages`` (system prompt
  and earlier turns included) when the record has them, else the single user turn ``prompt``.
  A record whose ``messages`` is ``null`` answered a raw text completion and is skipped.
* Within one context, every acceptable answer is preferred to every unacceptable one
  (kind ``verdict``), and an unacceptable answer with a doctor's ``corrected_answer`` gives
  corrected ≻ answer (kind ``correction``).  Ready-made pairs have kind ``given``.
* The newest judgement of a response wins: files are read in the order given (oldest feedback
  round first) and lines in file order (the export writes the oldest first); an older
  judgement of the same ``response_id`` is counted as ``superseded``.
* Whitespace is normalised (runs of spaces collapse, lines are stripped, at most one blank line);
  a pair whose chosen equals its rejected, and a repeat of an earlier pair, are dropped.
* De-identified by default: every prompt, answer and correction passes through
  :func:`medgo.corpus.phi.deidentify` before pairing (names, phones, ID and record numbers...
  become typed placeholders), and ``summary.json`` counts the replacements by type under
  ``deidentified``.  ``raw_unsafe=True`` (the DPO config's ``data.raw_feedback_unsafe``) keeps
  the text as the doctors typed it; the summary then says ``"deidentified": null``.

Nothing is lost silently: every record that gives no pair is counted by reason in
``summary.json`` and written, with its file and line, to ``skipped.jsonl``.  Rows are in TRL's
conversational preference format: ``prompt`` is a list of ``{role, content}`` messages,
``chosen``/``rejected`` one assistant message each, followed by provenance columns.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from medgo.corpus.phi import scrub
from medgo.data.feedback import ACCEPTABLE, UNACCEPTABLE, feedback_context, normalise_text, parse_messages, text_field
from medgo.data.paths import expand

PAIRS_FILE, SUMMARY_FILE, SKIPPED_FILE = "pairs.parquet", "summary.json", "skipped.jsonl"

# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Skip:
    """One input record that gave no pair, with where it came from and why."""

    source: str
    line: int
    reason: str
    detail: str = ""


@dataclass
class Ledger:
    """Counts and lists every skipped record."""

    skipped: list[Skip] = field(default_factory=list)
    records: Counter = field(default_factory=Counter)

    def skip(self, origin: tuple[str, int], reason: str, detail: str = "") -> None:
        self.skipped.append(Skip(origin[0], origin[1], reason, detail))

    def reasons(self) -> dict[str, int]:
        return dict(sorted(Counter(s.reason for s in self.skipped).items()))


@dataclass(frozen=True)
class Judgement:
    """A doctor's verdict on one answer, in its conversation context."""

    context: tuple[tuple[str, str], ...]
    response_id: str
    answer: str
    verdict: str
    corrected: str | None
    reviewer: str | None
    origin: tuple[str, int]


@dataclass(frozen=True)
class Pair:
    """chosen ≻ rejected after ``context``, with where each side came from."""

    context: tuple[tuple[str, str], ...]
    chosen: str
    rejected: str
    kind: str
    chosen_id: str | None
    rejected_id: str | None
    chosen_source: str
    rejected_source: str
    origin: tuple[str, int]
    """The record that made this pair (the rejected judgement, or the ready-made line)."""
    reviewer: str | None = None

    def key(self) -> str:
        payload = json.dumps([self.context, self.chosen, self.rejected], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def row(self) -> dict:
        """The TRL conversational row plus provenance columns."""
        return {
            "prompt": [{"role": role, "content": content} for role, content in self.context],
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
            "pair_id": self.key(),
            "kind": self.kind,
            "chosen_id": self.chosen_id,
            "rejected_id": self.rejected_id,
            "chosen_source": self.chosen_source,
            "rejected_source": self.rejected_source,
            "reviewer": self.reviewer,
        }


def where(origin: tuple[str, int]) -> str:
    return f"{origin[0]}:{origin[1]}"


# ----------------------------------------------------------------------------- reading


def expand_paths(patterns: Iterable[str]) -> list[Path]:
    """Every file named by ``patterns``, in order; a pattern that names no file is an error."""
    paths: list[Path] = []
    for pattern in patterns:
        found = expand(pattern)
        if not found:
            raise FileNotFoundError(f"preference data not found: {pattern}")
        paths += found
    return paths


def read_jsonl(path: Path, ledger: Ledger) -> Iterator[tuple[tuple[str, int], dict]]:
    """``((file, line), record)`` for every JSON-object line; other non-blank lines are skipped by reason."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            origin = (str(path), number)
            ledger.records[str(path)] += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                ledger.skip(origin, "bad_json", str(exc))
                continue
            if not isinstance(record, dict):
                ledger.skip(origin, "not_an_object", type(record).__name__)
                continue
            yield origin, record


def parse_judgement(record: dict, origin: tuple[str, int], ledger: Ledger) -> Judgement | None:
    context, reason = feedback_context(record)
    answer, verdict = text_field(record, "answer"), record.get("verdict")
    response_id = record.get("response_id")
    problem = (
        (reason, "") if context is None
        else ("missing_answer", "") if answer is None
        else ("bad_verdict", repr(verdict)) if verdict not in (ACCEPTABLE, UNACCEPTABLE)
        else ("missing_response_id", "") if not isinstance(response_id, str) or not response_id
        else None
    )
    if problem:
        ledger.skip(origin, *problem)
        return None
    reviewer = record.get("reviewer") if isinstance(record.get("reviewer"), str) else None
    return Judgement(context, response_id, answer, verdict, text_field(record, "corrected_answer"), reviewer, origin)


def side(value) -> str | None:
    """One side of a ready-made pair: a string, or a list of messages ending with the assistant's."""
    if isinstance(value, str):
        return normalise_text(value) or None
    messages = parse_messages(value)
    if messages and messages[-1][0] == "assistant" and messages[-1][1]:
        return messages[-1][1]
    return None


def pair_context(prompt) -> tuple[tuple[str, str], ...] | None:
    """The prompt of a ready-made pair: a list of messages, or a question (one user turn)."""
    if isinstance(prompt, list):
        return parse_messages(prompt)
    text = normalise_text(prompt) if isinstance(prompt, str) else ""
    return (("user", text),) if text else None


def parse_pair(record: dict, origin: tuple[str, int], ledger: Ledger) -> Pair | None:
    context = pair_context(record.get("prompt"))
    chosen, rejected = side(record.get("chosen")), side(record.get("rejected"))
    missing = [name for name, value in (("prompt", context), ("chosen", chosen), ("rejected", rejected)) if value is None]
    if missing:
        ledger.skip(origin, "missing_field", ", ".join(missing))
        return None
    pair_id = str(record["id"]) if record.get("id") is not None else None
    return Pair(context, chosen, rejected, "given", pair_id, pair_id, where(origin), where(origin), origin)


# ----------------------------------------------------------------------------- pairing


def newest_judgements(judgements: list[Judgement], ledger: Ledger) -> list[Judgement]:
    """The last judgement of each response (input order is oldest first); older ones are counted."""
    latest: dict[str, Judgement] = {}
    for j in judgements:
        if j.response_id in latest:
            old = latest.pop(j.response_id)
            ledger.skip(old.origin, "superseded", f"{j.response_id} judged again at {where(j.origin)}")
        latest[j.response_id] = j
    return [j for j in judgements if latest.get(j.response_id) is j]


def group_by_context(judgements: list[Judgement]) -> dict[tuple, list[Judgement]]:
    groups: dict[tuple, list[Judgement]] = {}
    for j in judgements:
        groups.setdefault(j.context, []).append(j)
    return groups


def pairs_for_context(group: list[Judgement], ledger: Ledger) -> list[Pair]:
    """Correction and verdict pairs of one context; a judgement that gives none is counted as unpaired."""
    good = [j for j in group if j.verdict == ACCEPTABLE]
    pairs: list[Pair] = []
    for bad in (j for j in group if j.verdict == UNACCEPTABLE):
        if bad.corrected:
            pairs.append(Pair(bad.context, bad.corrected, bad.answer, "correction", None, bad.response_id, f"{where(bad.origin)}#corrected_answer", where(bad.origin), bad.origin, bad.reviewer))
        for ok in good:
            pairs.append(Pair(bad.context, ok.answer, bad.answer, "verdict", ok.response_id, bad.response_id, where(ok.origin), where(bad.origin), bad.origin, bad.reviewer))
        if not bad.corrected and not good:
            ledger.skip(bad.origin, "unpaired", "unacceptable, with no corrected answer and no acceptable answer to the same prompt")
    if good and len(good) == len(group):
        for ok in good:
            ledger.skip(ok.origin, "unpaired", "acceptable, with no unacceptable answer to the same prompt")
    return pairs


def drop_bad_pairs(pairs: list[Pair], ledger: Ledger) -> list[Pair]:
    """Drop pairs whose two sides are equal and repeats of an earlier pair (same context, chosen, rejected)."""
    kept: dict[str, Pair] = {}
    for p in pairs:
        if p.chosen == p.rejected:
            ledger.skip(p.origin, "chosen_equals_rejected", f"{p.kind} pair")
        elif p.key() in kept:
            ledger.skip(p.origin, "duplicate_pair", f"{p.kind} pair repeats the one from {where(kept[p.key()].origin)}")
        else:
            kept[p.key()] = p
    return list(kept.values())


# ----------------------------------------------------------------------------- de-identification


def scrub_context(context: tuple[tuple[str, str], ...], counts: Counter) -> tuple[tuple[str, str], ...]:
    return tuple((role, scrub(content, counts)) for role, content in context)


def deidentify_judgement(j: Judgement, counts: Counter) -> Judgement:
    return replace(j, context=scrub_context(j.context, counts), answer=scrub(j.answer, counts), corrected=scrub(j.corrected, counts))


def deidentify_pair(p: Pair, counts: Counter) -> Pair:
    return replace(p, context=scrub_context(p.context, counts), chosen=scrub(p.chosen, counts), rejected=scrub(p.rejected, counts))


# ----------------------------------------------------------------------------- the set


def data_summary(ledger: Ledger, sources: dict[str, list[str]], deidentified: Counter | None, max_listed: int = 50) -> dict:
    """What every preference data set reports besides its rows: inputs, skipped records by reason, identifiers replaced."""
    return {
        "sources": {kind: [{"path": p, "records": ledger.records[p]} for p in paths] for kind, paths in sources.items()},
        "skipped": ledger.reasons(),
        "skipped_total": len(ledger.skipped),
        "first_skipped": [asdict(s) for s in ledger.skipped[:max_listed]],
        "deidentified": None if deidentified is None else dict(sorted(deidentified.items())),
    }


def write_data(out_dir: str | Path, name: str, rows: list[dict], schema, summary: dict, ledger: Ledger) -> Path:
    """``<name>`` (Parquet), ``summary.json`` and ``skipped.jsonl`` in ``out_dir``; returns the Parquet path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / name)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    with (out / SKIPPED_FILE).open("w", encoding="utf-8") as f:
        for s in ledger.skipped:
            f.write(json.dumps(asdict(s), ensure_ascii=False) + "\n")
    return out / name


@dataclass
class PreferenceSet:
    """The pairs built from some feedback and pair files, and the ledger of what was skipped."""

    pairs: list[Pair]
    ledger: Ledger
    sources: dict[str, list[str]]
    deidentified: Counter | None = None
    """Identifiers replaced, by type; None when built with ``raw_unsafe``."""
    judged: list[str] = field(default_factory=list)
    """``response_id`` of every usable judgement, the newest of each response."""

    def rows(self) -> list[dict]:
        return [p.row() for p in self.pairs]

    def used(self) -> set[str]:
        """Judgements (``response_id``) that gave at least one kept pair."""
        return {rid for p in self.pairs if p.kind != "given" for rid in (p.chosen_id, p.rejected_id) if rid is not None}

    def summary(self, max_listed: int = 50) -> dict:
        return {
            "pairs": len(self.pairs),
            "by_kind": dict(sorted(Counter(p.kind for p in self.pairs).items())),
            **data_summary(self.ledger, self.sources, self.deidentified, max_listed),
        }

    def write(self, out_dir: str | Path, **extra) -> Path:
        """``pairs.parquet``, ``summary.json`` and ``skipped.jsonl`` (the summary with ``extra``) in ``out_dir``; returns the Parquet path."""
        return write_data(out_dir, PAIRS_FILE, self.rows(), ROW_SCHEMA, {**self.summary(), **extra}, self.ledger)


def messages_type():
    import pyarrow as pa

    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def _row_schema():
    import pyarrow as pa

    columns = [("prompt", messages_type()), ("chosen", messages_type()), ("rejected", messages_type())]
    columns += [(name, pa.string()) for name in ("pair_id", "kind", "chosen_id", "rejected_id", "chosen_source", "rejected_source", "reviewer")]
    return pa.schema(columns)


ROW_SCHEMA = _row_schema()


def read_judgements(paths: list[Path], ledger: Ledger, counts: Counter | None) -> list[Judgement]:
    """The newest usable judgement of each response in ``paths`` (oldest round first), de-identified unless ``counts`` is None."""
    judgements = [j for path in paths for origin, rec in read_jsonl(path, ledger) if (j := parse_judgement(rec, origin, ledger))]
    judgements = judgements if counts is None else [deidentify_judgement(j, counts) for j in judgements]
    return newest_judgements(judgements, ledger)


def read_given(paths: list[Path], ledger: Ledger, counts: Counter | None) -> list[Pair]:
    """Ready-made pairs in ``paths``, de-identified unless ``counts`` is None."""
    given = [p for path in paths for origin, rec in read_jsonl(path, ledger) if (p := parse_pair(rec, origin, ledger))]
    return given if counts is None else [deidentify_pair(p, counts) for p in given]


def build_preferences(feedback: Iterable[str] = (), pairs: Iterable[str] = (), raw_unsafe: bool = False) -> PreferenceSet:
    """Read feedback files (oldest round first) and ready-made pair files, de-identified unless
    ``raw_unsafe``; see the module docstring."""
    ledger, counts = Ledger(), None if raw_unsafe else Counter()
    feedback_paths, pair_paths = expand_paths(feedback), expand_paths(pairs)
    latest = read_judgements(feedback_paths, ledger, counts)
    built = [p for group in group_by_context(latest).values() for p in pairs_for_context(group, ledger)]
    built += read_given(pair_paths, ledger, counts)
    sources = {"feedback": [str(p) for p in feedback_paths], "pairs": [str(p) for p in pair_paths]}
    return PreferenceSet(drop_bad_pairs(built, ledger), ledger, sources, counts, [j.response_id for j in latest])


def judgement_counts(method: str, judged: list[str], used: set[str], unpaired: int) -> dict:
    """What ``method`` does with the usable judgements ``judged``: how many it trains on (``used``: those its data set
    uses), how many it leaves out, and how many give no DPO pair (``unpaired``)."""
    n = len(set(judged) & used)
    return {"method": method, "judgements": len(judged), "unpaired": unpaired,
            "dpo": n if method == "dpo" else 0, "kto": n if method == "kto" else 0, "unused": len(judged) - n}  # fmt: skip


def unpaired_count(prefs) -> int:
    """Usable judgements that give no kept DPO pair."""
    return len(set(prefs.judged) - prefs.used())


def load_pairs(path: str | Path):
    """``pairs.parquet`` as a Hugging Face ``Dataset`` with TRL's ``prompt``/``chosen``/``rejected`` columns only."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    return Dataset.from_list(pq.read_table(path, columns=["prompt", "chosen", "rejected"]).to_pylist())
