"""CBLUE test-set submissions: the raw test files in, one prediction file per task out, checked.

    from medgo.eval.submission import placeholder_gold, write_submission, check_submission
    pred = {...}                                   # the structure the task's scorer takes
    path, n_filled = write_submission("CHIP-CTC", raw_test_path, pred, out_dir)
    problems = check_submission("CHIP-CTC", raw_test_path, path)    # [] when it passes

Each file has the name and layout the CBLUE leaderboard takes (``TaskSpec.submission_file``):
the raw test file with its answer fields filled in.  A unit without a usable prediction (an
unparsed reply, a label outside the task's list, an ill-formed tree, a tag sequence of the wrong
length) still gets a well-formed answer — empty, or the task's fallback label — and is counted
in ``n_filled``.  :func:`check_submission` repeats the checks of the CBLUE format checkers:
the file name, one record for every raw record, the required fields and their types, and
labels from the predefined lists.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from medgo.eval.metrics import TASKS
from medgo.data.files import as_str, keyed_by_text, read_json, read_json_or_jsonl

IR_CANDIDATES = 10
FALLBACK = {"CHIP-CTC": "Multiple", "KUAKE-QIC": "其他", "CHIP-STS": "0", "KUAKE-QTR": "0", "KUAKE-QQR": "0", "IMCS-V2-DAC": "Other"}
"""The label written for a classification unit without a usable prediction."""
EMPTY_DECISION = {"role": "D", "triples": [], "logical_rel": "null"}
BY_TEXT = ("CMeEE-V2", "CMeIE", "CMedCausal", "CHIP-CDN", "Text2DT")
BY_ID = ("CHIP-CDEE", "CHIP-CTC", "KUAKE-QIC", "CHIP-STS", "KUAKE-QTR", "KUAKE-QQR", "MedDG")
ANSWER_FIELD = {
    "CMeEE-V2": "entities", "CMeIE": "spo_list", "CMedCausal": "relation_of_mention", "CHIP-CDN": "normalized_result",
    "Text2DT": "tree", "CHIP-CDEE": "event", "CHIP-CTC": "label", "KUAKE-QIC": "label", "CHIP-STS": "label",
    "KUAKE-QTR": "label", "KUAKE-QQR": "label", "MedDG": "output",
}  # fmt: skip
IMCS_RAW = {"IMCS-V2-NER": "IMCS-V2-NER_test.json", "IMCS-V2-DAC": "IMCS-V2-DAC_test.json", "IMCS-V2-SR": "IMCS-V2-SR_test.json", "IMCS-V2-MRG": "IMCS-V2-MRG_test.json"}


class SubmissionError(ValueError):
    """A raw test file that cannot be read or filled in; the message names the file."""


# --- raw test files -> the units to answer ---------------------------------------------------------


def raw_records(path: Path) -> list[dict]:
    data = read_json_or_jsonl(path)
    return [r for r in (data if isinstance(data, list) else [data]) if isinstance(r, dict)]


def _imcs_sentences(dialogues_path: Path) -> dict:
    data = read_json(dialogues_path)
    if not isinstance(data, dict):
        raise SubmissionError(f"{dialogues_path}: expected an object keyed by dialogue id")
    return {as_str(d): {as_str(s.get("sentence_id")): as_str(s.get("sentence")) for s in v.get("dialogue") or []} for d, v in data.items()}


def _mdcfnpc_keys(records: list[dict]) -> list[tuple]:
    return [(as_str(d.get("dialog_id")), as_str(t.get("sentence_id")), int(n["range"][0]), int(n["range"][1]))
            for d in records for t in d.get("dialog_info") or [] for n in t.get("ner") or []]  # fmt: skip


def placeholder_gold(task: str, path: Path):
    """The unit keys of a raw test file, shaped as the task's gold (answers empty), so examples can be built."""
    if task in BY_TEXT:
        return {k: None for k in keyed_by_text(as_str(r.get("text")) for r in raw_records(path))}
    if task in BY_ID:
        return {as_str(r.get("id")): None for r in raw_records(path)}
    if task == "CHIP-MDCFNPC":
        return {k: None for k in _mdcfnpc_keys(raw_records(path))}
    sentences = _imcs_sentences(path)
    utterances = {(d, s): None for d, sents in sentences.items() for s in sents}
    if task == "IMCS-V2-SR":
        return {"utterance": {k: {} for k in utterances}, "dialogue": {d: {} for d in sentences}}
    if task == "IMCS-V2-MRG":
        return {d: [{}] for d in sentences}
    return utterances


# --- predictions -> the submission layout ----------------------------------------------------------


def _entities(text: str, ents) -> tuple[list, int]:
    ok = [(s, e, t) for s, e, t in ents or [] if t in TASKS["CMeEE-V2"].labels and 0 <= s <= e < len(text)]
    return [{"start_idx": s, "end_idx": e, "type": t, "entity": text[s : e + 1]} for s, e, t in ok], len(ok) != len(ents or [])


def _spos(text: str, triples) -> tuple[list, int]:
    ok = [t for t in triples or [] if t[1] in TASKS["CMeIE"].labels]
    return [{"subject": s, "predicate": p, "object": {"@value": o}} for s, p, o in ok], len(ok) != len(triples or [])


def _mention(text: str, span) -> dict:
    s, e = span
    return {"mention": text[s:e], "start_idx": s, "end_idx": e, "type": "mention"}


def _causal(text: str, units) -> tuple[list, int]:
    out, bad = [], 0
    for head, rel, tail in units or []:
        if rel in (1, 3) and tail is not None:
            out.append({"head": _mention(text, head), "relation": rel, "tail": _mention(text, tail)})
        elif rel == 2 and tail[1] == 1:
            inner = {"type": "relation", "head": _mention(text, tail[0]), "relation": 1, "tail": _mention(text, tail[2])}
            out.append({"head": _mention(text, head), "relation": 2, "tail": inner})
        else:
            bad = 1
    return out, bad


def _events(text: str, events) -> tuple[list, int]:
    ok = [e for e in events or [] if e[1] in TASKS["CHIP-CDEE"].labels]
    return [{"core_name": c, "tendency": t, "character": sorted(ch), "anatomy_list": sorted(an)} for c, t, ch, an in ok], len(ok) != len(events or [])


def _tree(text: str, tree) -> tuple[list, int]:
    problems = _tree_problems(tree) if tree else ["empty"]
    return (tree, 0) if not problems else ([dict(EMPTY_DECISION)], 1)


def _label(task: str):
    def fill(text: str, label) -> tuple[str, int]:
        return (label, 0) if label in TASKS[task].labels else (FALLBACK[task], 1)

    return fill


FILL = {
    "CMeEE-V2": _entities, "CMeIE": _spos, "CMedCausal": _causal, "CHIP-CDEE": _events, "Text2DT": _tree,
    "CHIP-CDN": lambda text, terms: ("##".join(terms or []), 0), "MedDG": lambda text, reply: (as_str(reply), 0),
    **{t: _label(t) for t in ("CHIP-CTC", "KUAKE-QIC", "CHIP-STS", "KUAKE-QTR", "KUAKE-QQR")},
}  # fmt: skip


def _fill_records(task: str, path: Path, pred: dict) -> tuple[list[dict], int]:
    records, n_filled = raw_records(path), 0
    keys = keyed_by_text(as_str(r.get("text")) for r in records) if task in BY_TEXT else [as_str(r.get("id")) for r in records]
    out = []
    for key, r in zip(keys, records):
        value, bad = FILL[task](as_str(r.get("text")), pred.get(key))
        n_filled += bad or key not in pred
        out.append({**r, ANSWER_FIELD[task]: value})
    return out, n_filled


def _fill_mdcfnpc(path: Path, pred: dict) -> tuple[list[dict], int]:
    records, n_filled = raw_records(path), 0
    for d in records:
        for t in d.get("dialog_info") or []:
            for n in t.get("ner") or []:
                key = (as_str(d.get("dialog_id")), as_str(t.get("sentence_id")), int(n["range"][0]), int(n["range"][1]))
                attr = pred.get(key)
                n_filled += attr not in TASKS["CHIP-MDCFNPC"].labels
                n["attr"] = attr if attr in TASKS["CHIP-MDCFNPC"].labels else "不标注"
    return records, n_filled


def _fill_imcs(task: str, path: Path, pred, sentences: dict) -> tuple[dict, int]:
    out, n_filled = {}, 0
    for did, sents in sentences.items():
        if task == "IMCS-V2-MRG":
            report = pred.get(did) if isinstance(pred.get(did), dict) else {}
            n_filled += not report
            out[did] = {k: as_str(report.get(k)) for k in TASKS[task].labels}
            continue
        out[did] = {}
        for sid, sentence in sents.items():
            value, bad = _imcs_unit(task, pred, (did, sid), sentence)
            out[did][sid] = value
            n_filled += bad
    return out, n_filled


def _imcs_unit(task: str, pred, key: tuple, sentence: str):
    if task == "IMCS-V2-NER":
        tags = pred.get(key)
        ok = isinstance(tags, list) and len(tags) == len(sentence) and all(t in TASKS[task].labels for t in tags)
        return (" ".join(tags), 0) if ok else (" ".join(["O"] * len(sentence)), 1)
    if task == "IMCS-V2-DAC":
        act = pred.get(key)
        return (act, 0) if act in TASKS[task].labels else (FALLBACK[task], 1)
    symptoms = pred["utterance"].get(key)
    ok = isinstance(symptoms, dict) and all(v in TASKS[task].labels for v in symptoms.values())
    return (dict(symptoms), 0) if ok else ({}, int(key not in pred["utterance"] or not ok))


def _write_ir(path: Path, ranking: dict, out: Path) -> int:
    """``qid<TAB>p1,...,p10`` per raw query; a query ranked short is padded from the corpus order."""
    queries = [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    corpus = [line.split("\t")[0] for line in path.with_name("corpus.tsv").read_text(encoding="utf-8").splitlines() if line.strip()]
    n_filled, lines = 0, []
    for q in queries:
        ranked = [p for p, _ in ranking.get(q, [])][:IR_CANDIDATES]
        n_filled += len(ranked) < IR_CANDIDATES
        ranked += [p for p in corpus if p not in ranked][: IR_CANDIDATES - len(ranked)]
        lines.append(f"{q}\t{','.join(ranked)}\n")
    out.write_text("".join(lines), encoding="utf-8")
    return n_filled


def _dump(out: Path, data, jsonl: bool) -> None:
    if jsonl:
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
    else:
        out.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def write_submission(task: str, raw_path: Path, pred, out_dir: Path, dialogues_path: Path | None = None) -> tuple[Path, int]:
    """The task's submission file in ``out_dir``; returns its path and the number of units filled in."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / TASKS[task].submission_file
    if task == "KUAKE-IR":
        return out, _write_ir(raw_path, pred, out)
    if task == "CHIP-MDCFNPC":
        data, n = _fill_mdcfnpc(raw_path, pred)
    elif task in IMCS_RAW:
        data, n = _fill_imcs(task, raw_path, pred, _imcs_sentences(dialogues_path or raw_path))
    else:
        data, n = _fill_records(task, raw_path, pred)
    _dump(out, data, out.suffix == ".jsonl")
    return out, n


def zip_submission(out_dir: Path, name: str = "submission.zip") -> Path:
    """Every prediction file of ``out_dir`` in one zip (file names at the top level)."""
    path = out_dir / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(out_dir.iterdir()):
            if f.is_file() and f.name != name:
                z.write(f, f.name)
    return path


# --- the format checks ----------------------------------------------------------------------------


def _tree_problems(tree) -> list[str]:
    if not isinstance(tree, list) or not tree:
        return ["tree must be a non-empty list"]
    out = []
    for node in tree:
        if not isinstance(node, dict) or not {"role", "triples", "logical_rel"} <= set(node):
            return [f"node {node!r} lacks role/triples/logical_rel"]
        if node["role"] not in ("C", "D") or node["logical_rel"] not in ("and", "or", "null") or not isinstance(node["triples"], list):
            out.append(f"node {node!r}: role C/D, logical_rel and/or/null and a triple list are required")
        out += [f"triple {t!r}: relation not in the list" for t in node["triples"] if not isinstance(t, (list, tuple)) or len(t) != 3 or t[1] not in TASKS["Text2DT"].labels]
    return out + ([] if _is_preorder_tree([n.get("role") for n in tree]) else ["not a valid pre-order binary tree"])


def _is_preorder_tree(roles: list) -> bool:
    """Fold every C whose next two unfolded nodes are D into a D; a valid tree ends as a single D."""
    roles = list(roles)
    while roles[0] != "D":
        before = list(roles)
        for i, r in enumerate(roles):
            rest = [j for j in range(i + 1, len(roles)) if roles[j] != "X"]
            if r == "C" and len(rest) >= 2 and roles[rest[0]] == "D" and roles[rest[1]] == "D":
                roles[i] = "D"
                for k in range(i + 1, rest[1] + 1):
                    roles[k] = "X"
                break
        if roles == before:
            return False
    return True


def _keys(task: str, path: Path) -> set:
    """The record keys the format checker compares (its ``load_file``)."""
    if task == "KUAKE-IR":
        return {line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    if task == "CHIP-MDCFNPC":
        return set(_mdcfnpc_keys(raw_records(path)))
    if task in IMCS_RAW:
        data = read_json(path)
        return set(data) if task == "IMCS-V2-MRG" else {(d, s) for d, sents in data.items() for s in sents}
    field = "text" if task in BY_TEXT else "id"
    return {as_str(r[field]) for r in raw_records(path)}


def _record_problems(task: str, r: dict) -> list[str]:
    value, name = r.get(ANSWER_FIELD[task]), as_str(r.get("id") if task in BY_ID else r.get("text"))[:30]
    if task in FALLBACK:
        return [] if value in TASKS[task].labels else [f"{name}: label {value!r} not in the predefined list"]
    if task == "CMeEE-V2":
        return [f"{name}: entity {e!r}" for e in value if not (isinstance(e.get("start_idx"), int) and isinstance(e.get("end_idx"), int) and e.get("type") in TASKS[task].labels)]
    if task == "CMeIE":
        return [f"{name}: spo {s!r}" for s in value if not (isinstance(s.get("subject"), str) and s.get("predicate") in TASKS[task].labels and isinstance((s.get("object") or {}).get("@value"), str))]
    if task == "CHIP-CDEE":
        ok = lambda e: isinstance(e.get("core_name"), str) and isinstance(e.get("character"), list) and isinstance(e.get("anatomy_list"), list) and e.get("tendency") in TASKS[task].labels  # noqa: E731
        return [f"{name}: event {e!r}" for e in value if not ok(e)]
    if task == "CMedCausal":
        return [f"{name}: relation {x!r}" for x in value if not _causal_ok(x)]
    if task == "Text2DT":
        return [f"{name}: {p}" for p in _tree_problems(value)]
    return [] if isinstance(value, str) else [f"{name}: {ANSWER_FIELD[task]} must be a string"]


def _mention_ok(m) -> bool:
    return isinstance(m, dict) and {"mention", "start_idx", "end_idx"} <= set(m) and isinstance(m["start_idx"], int) and isinstance(m["end_idx"], int)


def _causal_ok(x: dict) -> bool:
    head, rel, tail = x.get("head"), x.get("relation"), x.get("tail")
    if rel in (1, 3):
        return _mention_ok(head) and _mention_ok(tail) and tail.get("type") == "mention"
    return rel == 2 and _mention_ok(head) and isinstance(tail, dict) and tail.get("type") == "relation" and _causal_ok({**tail, "relation": tail.get("relation")}) and tail.get("relation") in (1, 3)


def _imcs_problems(task: str, data: dict, sentences: dict) -> list[str]:
    out = []
    for did, sents in data.items():
        if task == "IMCS-V2-MRG":
            out += [f"{did}: {k} must be a string" for k in TASKS[task].labels if not isinstance(sents.get(k), str)]
            continue
        for sid, v in sents.items():
            if task == "IMCS-V2-DAC" and v not in TASKS[task].labels:
                out.append(f"{did}/{sid}: act {v!r} not in the predefined list")
            elif task == "IMCS-V2-SR" and any(x not in TASKS[task].labels for x in v.values()):
                out.append(f"{did}/{sid}: symptom labels {v!r} not in 0/1/2")
            elif task == "IMCS-V2-NER" and (len(v.split()) != len(sentences.get(did, {}).get(sid, "")) or any(t not in TASKS[task].labels for t in v.split())):
                out.append(f"{did}/{sid}: {len(v.split())} BIO tags for a sentence of {len(sentences.get(did, {}).get(sid, ''))} characters, or a tag outside the list")
    return out


def _ir_problems(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.strip().split("\t")
        if len(cols) != 2 or len(cols[1].split(",")) != IR_CANDIDATES:
            out.append(f"{cols[0]}: expected 'id<TAB>c1,...,c10'")
    return out


def check_submission(task: str, raw_path: Path, sub_path: Path, dialogues_path: Path | None = None) -> list[str]:
    """What the task's CBLUE format checker would reject in ``sub_path`` (empty: it passes)."""
    spec = TASKS[task]
    if sub_path.name != spec.submission_file:
        return [f"submission file name should be {spec.submission_file}, got {sub_path.name}"]
    try:
        missing = _keys(task, raw_path) - _keys(task, sub_path)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"{sub_path.name}: records cannot be read ({exc!r})"]
    if missing:
        return [f"record number check: {len(missing)} raw records have no prediction, e.g. {next(iter(missing))!r}"]
    if task == "KUAKE-IR":
        return _ir_problems(sub_path)
    if task == "CHIP-MDCFNPC":
        return [f"{d.get('dialog_id')}: attr {n.get('attr')!r}" for d in raw_records(sub_path) for t in d.get("dialog_info") or [] for n in t.get("ner") or [] if n.get("attr") not in spec.labels]
    if task in IMCS_RAW:
        return _imcs_problems(task, read_json(sub_path), _imcs_sentences(dialogues_path or raw_path))
    return [p for r in raw_records(sub_path) for p in _record_problems(task, r)]
