"""Doctors' judgements -> DPO pairs, on hand-made feedback files: pairing, corrections, rounds, drops."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medgo.train.preference import build_preferences, load_pairs, normalise_text

Q1, Q2 = "高血压患者可以喝咖啡吗？", "发烧38.5度要吃退烧药吗？"


def judgement(rid: str, prompt: str, answer: str, verdict: str, corrected: str | None = None, **extra) -> dict:
    return {"response_id": rid, "created": "2026-01-01T00:00:00Z", "model": "medgo-tiny", "prompt": prompt, "answer": answer,
            "verdict": verdict, "corrected_answer": corrected, "comment": None, "reviewer": "dr_li", **extra}  # fmt: skip


def write_jsonl(path: Path, records: list) -> str:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def sides(prefs) -> list[tuple[str, str, str, str]]:
    """``(kind, last user turn, chosen, rejected)`` of every pair, in order."""
    return [(r["kind"], r["prompt"][-1]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in prefs.rows()]


def test_acceptable_beats_unacceptable_for_the_same_prompt_only(tmp_path):
    f = write_jsonl(tmp_path / "fb.jsonl", [
        judgement("a", Q1, "可以少量饮用，注意监测血压。", "acceptable"),
        judgement("b", Q1, "随便喝。", "unacceptable"),
        judgement("c", Q2, "体温38.5度可以服用对乙酰氨基酚。", "acceptable"),
        judgement("d", Q1, "绝对不能喝。", "unacceptable"),
    ])  # fmt: skip
    prefs = build_preferences(feedback=[f])
    assert sides(prefs) == [
        ("verdict", Q1, "可以少量饮用，注意监测血压。", "随便喝。"),
        ("verdict", Q1, "可以少量饮用，注意监测血压。", "绝对不能喝。"),
    ]
    row = prefs.rows()[0]
    assert row["prompt"] == [{"role": "user", "content": Q1}] and row["chosen_id"] == "a" and row["rejected_id"] == "b"
    assert row["chosen_source"] == f"{f}:1" and row["rejected_source"] == f"{f}:2"
    assert prefs.ledger.reasons() == {"unpaired": 1}  # Q2 has no unacceptable answer
    assert prefs.ledger.skipped[0].line == 3


def test_a_corrected_answer_beats_the_unacceptable_one(tmp_path):
    f = write_jsonl(tmp_path / "fb.jsonl", [
        judgement("a", Q1, "随便喝。", "unacceptable", corrected="可以少量饮用，避免浓咖啡。"),
        judgement("b", Q2, "不用管。", "unacceptable"),
    ])  # fmt: skip
    prefs = build_preferences(feedback=[f])
    assert sides(prefs) == [("correction", Q1, "可以少量饮用，避免浓咖啡。", "随便喝。")]
    assert prefs.rows()[0]["chosen_source"] == f"{f}:1#corrected_answer"
    assert [(s.line, s.reason) for s in prefs.ledger.skipped] == [(2, "unpaired")]


def test_context_is_the_whole_conversation(tmp_path):
    history = [{"role": "system", "content": "你是医生。"}, {"role": "user", "content": "我有高血压。"},
               {"role": "assistant", "content": "好的。"}, {"role": "user", "content": Q1}]  # fmt: skip
    f = write_jsonl(tmp_path / "fb.jsonl", [
        judgement("a", Q1, "少量可以。", "acceptable", messages=history),
        judgement("b", Q1, "随便喝。", "unacceptable"),              # same question, no history: another context
        judgement("c", Q1, "随便喝。", "unacceptable", messages=history),
        judgement("d", "raw text", "continued", "acceptable", messages=None),  # a text completion
    ])  # fmt: skip
    prefs = build_preferences(feedback=[f])
    assert len(prefs.pairs) == 1
    row = prefs.rows()[0]
    assert row["prompt"] == history and row["chosen_id"] == "a" and row["rejected_id"] == "c"
    assert prefs.ledger.reasons() == {"text_completion": 1, "unpaired": 1}


def test_whitespace_duplicates_and_equal_sides_are_dropped_and_counted(tmp_path):
    f = write_jsonl(tmp_path / "fb.jsonl", [
        judgement("a", Q1, "可以少量饮用。", "acceptable"),
        judgement("b", "  高血压患者可以喝咖啡吗？\n", "随便\t\t喝。", "unacceptable"),
        judgement("c", Q1, "可以少量饮用。 ", "unacceptable", corrected="可以少量饮用。"),  # corrected == answer
    ])  # fmt: skip
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [
        {"id": "p1", "prompt": Q1, "chosen": "可以少量饮用。", "rejected": "随便 喝。"},  # repeats the verdict pair
        {"id": "p2", "prompt": Q2, "chosen": "同样", "rejected": "同样"},
        {"id": "p3", "prompt": Q2, "chosen": "可以服用退烧药。", "rejected": "不用管。"},
    ])  # fmt: skip
    prefs = build_preferences(feedback=[f], pairs=[pairs])
    assert sides(prefs) == [("verdict", Q1, "可以少量饮用。", "随便 喝。"), ("given", Q2, "可以服用退烧药。", "不用管。")]
    assert prefs.ledger.reasons() == {"chosen_equals_rejected": 3, "duplicate_pair": 1}
    # a (acceptable) vs c (unacceptable, same text once normalised), c's correction, and p2
    assert sorted((s.source, s.line) for s in prefs.ledger.skipped if s.reason == "chosen_equals_rejected") == [(f, 3), (f, 3), (pairs, 2)]
    assert [(s.source, s.line) for s in prefs.ledger.skipped if s.reason == "duplicate_pair"] == [(pairs, 1)]


def test_bad_lines_are_reported_with_file_and_line(tmp_path):
    f = write_jsonl(tmp_path / "fb.jsonl", [
        judgement("a", Q1, "少量可以。", "acceptable"),
        '{"response_id": "b", "prompt": ',
        "[1, 2]",
        judgement("c", Q1, "随便喝。", "maybe"),
        judgement("d", Q1, "", "unacceptable"),
        judgement("e", Q1, "随便喝。", "unacceptable"),
    ])  # fmt: skip
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": Q1, "chosen": "少量可以。"}])
    prefs = build_preferences(feedback=[f], pairs=[pairs])
    assert len(prefs.pairs) == 1
    got = [(s.source, s.line, s.reason) for s in prefs.ledger.skipped]
    assert got == [(f, 2, "bad_json"), (f, 3, "not_an_object"), (f, 4, "bad_verdict"), (f, 5, "missing_answer"), (pairs, 1, "missing_field")]
    assert "rejected" in prefs.ledger.skipped[-1].detail


def test_newest_judgement_of_a_response_wins_across_rounds(tmp_path):
    round1 = write_jsonl(tmp_path / "round1.jsonl", [
        judgement("a", Q1, "少量可以。", "acceptable"),
        judgement("b", Q1, "随便喝。", "acceptable"),
    ])  # fmt: skip
    round2 = write_jsonl(tmp_path / "round2.jsonl", [
        judgement("b", Q1, "随便喝。", "unacceptable", corrected="少量可以，避免浓咖啡。"),
    ])  # fmt: skip
    prefs = build_preferences(feedback=[round1, round2])
    assert sides(prefs) == [("correction", Q1, "少量可以，避免浓咖啡。", "随便喝。"), ("verdict", Q1, "少量可以。", "随便喝。")]
    assert [(s.source, s.line, s.reason) for s in prefs.ledger.skipped] == [(round1, 2, "superseded")]
    flipped = build_preferences(feedback=[round2, round1])  # the other order: b is acceptable in the end
    assert flipped.pairs == [] and flipped.ledger.reasons() == {"superseded": 1, "unpaired": 2}
    assert build_preferences(feedback=[str(tmp_path / "round*.jsonl")]).rows() == prefs.rows()  # a glob, sorted


def test_output_is_deterministic_parquet_with_summary(tmp_path):
    fb, pairs = "medgo/assets/feedback/feedback.jsonl", "medgo/assets/dpo/pairs.jsonl"
    first = build_preferences([fb], [pairs])
    path = first.write(tmp_path / "a")
    build_preferences([fb], [pairs]).write(tmp_path / "b")
    assert path.read_bytes() == (tmp_path / "b" / "pairs.parquet").read_bytes()
    table = pq.read_table(path)
    assert table.column_names[:3] == ["prompt", "chosen", "rejected"] and {"pair_id", "kind", "chosen_source", "rejected_source"} <= set(table.column_names)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text(encoding="utf-8"))
    # 64 judgements: 24 unacceptable with a correction, 14 prompts with both verdicts, 40 ready-made triples
    assert summary["by_kind"] == {"correction": 24, "given": 40, "verdict": 14} and summary["pairs"] == 78
    assert summary["skipped"] == {"unpaired": 26} and len((tmp_path / "a" / "skipped.jsonl").read_text().splitlines()) == 26
    data = load_pairs(path)
    assert data.column_names == ["prompt", "chosen", "rejected"] and len(data) == 78
    assert data[0]["chosen"][0]["role"] == "assistant"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        build_preferences(feedback=[str(tmp_path / "nope.jsonl")])


@pytest.mark.parametrize(("raw", "clean"), [(" a \t b ", "a b"), ("x\r\n\r\n\r\n\ny", "x\n\ny"), ("咖啡\u3000因 ", "咖啡 因"), ("a  \nb", "a\nb")])
def test_normalise_text(raw, clean):
    assert normalise_text(raw) == clean


# Identifiers a doctor might type, each in a place the builder reads: system prompt, earlier turns,
# the question, answers, corrections, and a ready-made pair.
PLANTED = {
    "name": ["陈静", "李娜", "王芳", "刘洋", "赵敏"],
    "phone": ["15900001111", "021-65432198", "139 1234 5678", "13812345678"],
    "id_card": ["11010519491231002X"],
    "record_number": ["BA-778812", "MZ0098123", "ZY20240518"],
}


def planted_feedback(tmp_path) -> tuple[str, str]:
    chat = [{"role": "system", "content": "你是医院的导诊助手，当前患者陈静，手机15900001111。"},
            {"role": "user", "content": "姓名：李娜，女，34岁，病案号BA-778812，身份证号11010519491231002X。"},
            {"role": "assistant", "content": "请问有什么不适？"},
            {"role": "user", "content": "家属王芳电话021-65432198，问能否喝咖啡？"}]
    records = [
        judgement("r1", None, "刘洋，男，45岁，门诊号MZ0098123，可以少量饮用。", "acceptable", messages=chat),
        judgement("r2", None, "随便喝，有事打139 1234 5678。", "unacceptable", "赵敏医生建议住院号ZY20240518患者少量饮用。", messages=chat),
    ]
    pair = {"prompt": "患者张伟，电话13812345678，头痛怎么办？", "chosen": "建议就医。", "rejected": "不用管。"}
    return write_jsonl(tmp_path / "fb.jsonl", records), write_jsonl(tmp_path / "pairs.jsonl", [pair])


def test_planted_identifiers_never_reach_the_preference_set(tmp_path):
    fb, pairs = planted_feedback(tmp_path)
    prefs = build_preferences(feedback=[fb], pairs=[pairs])
    out = prefs.write(tmp_path / "data")
    assert sorted(r["kind"] for r in prefs.rows()) == ["correction", "given", "verdict"]
    stored = json.dumps(pq.read_table(out).to_pylist(), ensure_ascii=False) + (tmp_path / "data" / "skipped.jsonl").read_text(encoding="utf-8")
    leaked = [value for values in PLANTED.values() for value in values + ["张伟"] if value in stored]
    assert leaked == [], f"identifiers in the preference set: {leaked}"
    assert "[姓名]" in stored and "[电话]" in stored and "[身份证号]" in stored and "[病历号]" in stored
    summary = json.loads((tmp_path / "data" / "summary.json").read_text(encoding="utf-8"))
    # the chat is read twice (two judgements), each answer and the correction once, the pair once
    assert summary["deidentified"] == {"id_card": 2, "name": 9, "phone": 6, "record_number": 4}


def test_raw_feedback_needs_the_unsafe_switch(tmp_path):
    fb, pairs = planted_feedback(tmp_path)
    raw = build_preferences(feedback=[fb], pairs=[pairs], raw_unsafe=True)
    assert raw.summary()["deidentified"] is None
    text = json.dumps(raw.rows(), ensure_ascii=False)
    assert all(value in text for values in PLANTED.values() for value in values)
