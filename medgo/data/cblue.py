"""CBLUE examples: a task's native file -> one example per prompt, used by SFT data and evaluation.

    from medgo.data.cblue import read_examples
    examples, gold = read_examples("CHIP-CTC", "medgo/assets/cblue/CHIP-CTC/CHIP-CTC_dev.json")

An *example* is one prompt: the task's input fields, ``gold`` (the gold item the task's
renderer in :mod:`medgo.data.answers` turns into the target reply) and ``keys`` (the scorer's
unit keys it answers).  Most tasks have one example per gold unit; CHIP-MDCFNPC asks once per
dialogue about all its findings; IMCS-V2-SR asks per utterance (the task's score) and per
dialogue (its second level).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medgo.data.cblue_gold import GOLD_READERS, dialogues
from medgo.data.files import as_str, keyed_by_text, records


SR_LEVELS = ("utterance", "dialogue")


def _by_text(fields: tuple[str, ...] = ("text",)) -> Callable:
    """Tasks whose records are keyed by their text (CMeEE-V2, CMeIE, CMedCausal, CHIP-CDN, Text2DT)."""

    def read(task: str, path: Path, gold: dict) -> list[dict]:
        recs = records(path)
        keys = keyed_by_text(as_str(r.get("text")) for r in recs)
        return [{"keys": [k], "gold": gold[k], **{f: as_str(r.get(f)) for f in fields}} for k, r in zip(keys, recs) if k in gold]

    return read


def _by_id(fields: tuple[str, ...]) -> Callable:
    """Tasks whose records carry an ``id`` (the classification tasks, CHIP-CDEE, MedDG)."""

    def read(task: str, path: Path, gold: dict) -> list[dict]:
        out = []
        for r in records(path):
            key = as_str(r.get("id"))
            if key in gold:
                out.append({"keys": [key], "gold": gold[key], **{f: r.get(f) for f in fields}})
        return out

    return read


def _meddg(task: str, path: Path, gold: dict) -> list[dict]:
    examples = _by_id(("history",))(task, path, gold)
    for ex in examples:
        ex["history"] = "\n".join(map(as_str, ex["history"] or []))
    return examples


def _dialogue_text(turns: list[dict], speaker: str = "speaker", sentence: str = "sentence") -> str:
    return "\n".join(f"{as_str(t.get(speaker))}：{as_str(t.get(sentence))}" for t in turns if isinstance(t, dict))


def _imcs_utterances(task: str, path: Path, gold: dict) -> list[dict]:
    """IMCS-V2-NER and -DAC: one example per utterance."""
    out = []
    for did, d in dialogues(path).items():
        for s in d.get("dialogue") or []:
            key = (did, as_str(s.get("sentence_id")))
            if key in gold:
                out.append({"keys": [key], "gold": gold[key], "speaker": as_str(s.get("speaker")), "sentence": as_str(s.get("sentence"))})
    return out


def _imcs_sr(task: str, path: Path, gold: dict) -> list[dict]:
    """IMCS-V2-SR: one example per utterance, then one per dialogue."""
    by_id = dialogues(path)
    utt = [{**ex, "level": "utterance", "gold": gold["utterance"][ex["keys"][0]]} for ex in _imcs_utterances(task, path, gold["utterance"])]
    dia = [
        {"keys": [did], "level": "dialogue", "gold": gold["dialogue"][did], "self_report": as_str(d.get("self_report")), "dialogue": _dialogue_text(d.get("dialogue") or [])}
        for did, d in by_id.items()
        if did in gold["dialogue"]
    ]
    return utt + dia


def _imcs_mrg(task: str, path: Path, gold: dict) -> list[dict]:
    """IMCS-V2-MRG: one example per dialogue; the first reference report is the training target."""
    return [
        {"keys": [did], "gold": (gold[did] or [{}])[0], "self_report": as_str(d.get("self_report")), "dialogue": _dialogue_text(d.get("dialogue") or [])}
        for did, d in dialogues(path).items()
        if did in gold
    ]


def _mdcfnpc_findings(did: str, turns: list[dict]) -> list[tuple]:
    """``(unit key, mention, sentence id)`` of every annotated finding, in dialogue order."""
    out = []
    for t in turns:
        for n in t.get("ner") or []:
            rng = n.get("range") if isinstance(n, dict) else None
            if isinstance(rng, list) and len(rng) == 2:
                out.append(((did, as_str(t.get("sentence_id")), int(rng[0]), int(rng[1])), as_str(n.get("mention")), as_str(t.get("sentence_id"))))
    return out


def _mdcfnpc(task: str, path: Path, gold: dict) -> list[dict]:
    """CHIP-MDCFNPC: one example per dialogue listing its findings; a mention repeated in several
    sentences is named with its sentence (``第3句的痰``) so each finding gets its own answer."""
    out = []
    for d in records(path):
        did, turns = as_str(d.get("dialog_id")), [t for t in d.get("dialog_info") or [] if isinstance(t, dict)]
        found = [f for f in _mdcfnpc_findings(did, turns) if f[0] in gold]
        if not found:
            continue
        counts = {m: sum(1 for _, x, _ in found if x == m) for _, m, _ in found}
        findings = [(key, m if counts[m] == 1 else f"第{sid}句的{m}") for key, m, sid in found]
        out.append({"keys": [k for k, _ in findings], "gold": {k: gold[k] for k, _ in findings}, "findings": findings, "dialogue": _dialogue_text(turns, "sender", "text")})
    return out


READERS: dict[str, Callable] = {
    "CMeEE-V2": _by_text(), "CMeIE": _by_text(), "CMedCausal": _by_text(), "CHIP-CDN": _by_text(), "Text2DT": _by_text(),
    "CHIP-CDEE": _by_id(("text",)), "CHIP-CTC": _by_id(("text",)), "KUAKE-QIC": _by_id(("query",)),
    "CHIP-STS": _by_id(("text1", "text2")), "KUAKE-QTR": _by_id(("query", "title")), "KUAKE-QQR": _by_id(("query1", "query2")),
    "MedDG": _meddg, "CHIP-MDCFNPC": _mdcfnpc, "IMCS-V2-NER": _imcs_utterances, "IMCS-V2-DAC": _imcs_utterances,
    "IMCS-V2-SR": _imcs_sr, "IMCS-V2-MRG": _imcs_mrg,
}  # fmt: skip
"""Native gold file -> examples, for every task answered by generation."""


def read_examples(task: str, gold_path: str | Path, max_samples: int | None = None) -> tuple[list[dict], object]:
    """The task's examples (first ``max_samples`` per level) and its gold restricted to them."""
    gold = GOLD_READERS[task](gold_path)
    examples = READERS[task](task, Path(gold_path), gold)
    if max_samples:
        levels = [ex.get("level") for ex in examples]
        examples = [ex for i, ex in enumerate(examples) if levels[:i].count(levels[i]) < max_samples]
    return examples, restrict_gold(task, gold, examples)


def restrict_gold(task: str, gold, examples: list[dict]):
    """Gold of only the units the examples answer (so ``max_samples`` scores a consistent subset)."""
    if task == "IMCS-V2-SR":
        return {level: {k: gold[level][k] for ex in examples if ex["level"] == level for k in ex["keys"]} for level in SR_LEVELS}
    return {k: gold[k] for ex in examples for k in ex["keys"]}

