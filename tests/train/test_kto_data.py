"""Doctors' judgements -> KTO rows, and the DPO-or-KTO choice, on hand-made files and on the sample feedback."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from medgo.data.feedback import normalise_text
from medgo.data.paths import resolve_path
from medgo.train.kto_data import build_unpaired, choose_method, load_rows

from test_preference import Q1, Q2, judgement, write_jsonl

FEEDBACK, PAIRS = "medgo://assets/feedback/feedback.jsonl", "medgo://assets/dpo/pairs.jsonl"


def rows_of(built) -> list[tuple[str, str, str, bool]]:
    """``(kind, last user turn, completion, label)`` of every row, in order."""
    return [(r["kind"], r["prompt"][-1]["content"], r["completion"][0]["content"], r["label"]) for r in built.rows()]


def test_every_judgement_is_a_row_and_a_correction_one_more(tmp_path):
    f = write_jsonl(tmp_path / "fb.jsonl", [
        judgement("a", Q1, "可以少量饮用，注意监测血压。", "acceptable"),
        judgement("b", Q2, "不用管。", "unacceptable", corrected="体温38.5度可以服用对乙酰氨基酚。"),
        judgement("c", Q2, "随便  吃。", "unacceptable"),
    ])  # fmt: skip
    built = build_unpaired(feedback=[f])
    assert rows_of(built) == [
        ("verdict", Q1, "可以少量饮用，注意监测血压。", True),
        ("verdict", Q2, "不用管。", False),
        ("correction", Q2, "体温38.5度可以服用对乙酰氨基酚。", True),
        ("verdict", Q2, "随便 吃。", False),
    ]
    row = built.rows()[2]
    assert row["prompt"] == [{"role": "user", "content": Q2}] and row["response_id"] == "b" and row["source"] == f"{f}:2#corrected_answer"
    assert built.ledger.skipped == [] and built.used() == {"a", "b", "c"}
    summary = built.summary()
    assert (summary["rows"], summary["desirable"], summary["undesirable"]) == (4, 2, 2)


def test_a_ready_made_pair_gives_one_row_of_each_label(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"id": "p1", "prompt": Q1, "chosen": "少量可以。", "rejected": "随便喝。"}])
    built = build_unpaired(pairs=[pairs])
    assert rows_of(built) == [("given", Q1, "少量可以。", True), ("given", Q1, "随便喝。", False)]
    assert built.used() == set() and built.judged == []


def test_newest_judgement_wins_and_conflicts_and_repeats_are_counted(tmp_path):
    round1 = write_jsonl(tmp_path / "round1.jsonl", [
        judgement("a", Q1, "少量可以。", "acceptable"),
        judgement("b", Q1, "随便喝。", "acceptable"),
        judgement("c", Q1, "少量可以。 ", "unacceptable", corrected="少量可以。"),  # correction == answer
        judgement("d", Q1, "少量可以。", "acceptable"),                             # repeats a's row
        '{"response_id": "e", "prompt": ',
        judgement("f", Q2, "随便吃。", "maybe"),
    ])  # fmt: skip
    round2 = write_jsonl(tmp_path / "round2.jsonl", [judgement("b", Q1, "随便喝。", "unacceptable")])
    built = build_unpaired(feedback=[round1, round2])
    assert rows_of(built) == [("verdict", Q1, "随便喝。", False)]
    got = sorted((s.source, s.line, s.reason) for s in built.ledger.skipped)
    assert got == sorted([
        (round1, 2, "superseded"), (round1, 5, "bad_json"), (round1, 6, "bad_verdict"),
        # a, c (answer), c (correction) and d: "少量可以。" is both desirable and undesirable after Q1
        (round1, 1, "conflicting_labels"), (round1, 3, "conflicting_labels"), (round1, 3, "conflicting_labels"), (round1, 4, "conflicting_labels"),
    ])  # fmt: skip
    assert built.judged == ["a", "c", "d", "b"] and built.used() == {"b"}


@pytest.mark.parametrize("raw", [False, True], ids=["default", "raw_feedback_unsafe"])
def test_rows_are_deidentified_unless_raw(tmp_path, raw):
    f = write_jsonl(tmp_path / "fb.jsonl", [judgement("a", "患者张伟，电话13812345678，能喝咖啡吗？", "张伟可以少量饮用。", "acceptable")])
    built = build_unpaired(feedback=[f], raw_unsafe=raw)
    text = json.dumps(built.rows(), ensure_ascii=False)
    assert ("张伟" in text and "13812345678" in text) if raw else not ("张伟" in text or "13812345678" in text)
    assert built.summary()["deidentified"] == (None if raw else {"name": 2, "phone": 1})


def sample_expectations() -> dict:
    """Counts of the sample files worked out from their records directly (prompt-only records, one judgement per response)."""
    records = [json.loads(line) for line in resolve_path(FEEDBACK).read_text(encoding="utf-8").splitlines() if line.strip()]
    given = [line for line in resolve_path(PAIRS).read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len({r["response_id"] for r in records}) == len(records)
    verdicts: dict[str, Counter] = {}
    for r in records:
        verdicts.setdefault(normalise_text(r["prompt"]), Counter())[r["verdict"]] += 1
    corrected = [r for r in records if r.get("corrected_answer")]
    unpaired = [r for r in records if (r["verdict"] == "acceptable" and not verdicts[normalise_text(r["prompt"])]["unacceptable"])
                or (r["verdict"] == "unacceptable" and not r.get("corrected_answer") and not verdicts[normalise_text(r["prompt"])]["acceptable"])]  # fmt: skip
    acceptable = sum(r["verdict"] == "acceptable" for r in records)
    return {"judgements": len(records), "unpaired": len(unpaired), "corrections": len(corrected), "given": len(given),
            "desirable": acceptable + len(corrected) + len(given), "undesirable": len(records) - acceptable + len(given)}  # fmt: skip


def test_sample_feedback_auto_picks_kto_and_uses_every_judgement(tmp_path):
    want = sample_expectations()
    assert want["unpaired"] > 0, "the sample feedback has judgements DPO cannot pair"
    method, counts = choose_method("auto", [FEEDBACK], [PAIRS])
    n = want["judgements"]
    assert method == "kto"
    assert counts == {"requested": "auto", "method": "kto", "judgements": n, "unpaired": want["unpaired"], "dpo": 0, "kto": n, "unused": 0}
    dpo = choose_method("dpo", [FEEDBACK], [PAIRS])[1]
    assert (dpo["dpo"], dpo["kto"], dpo["unused"]) == (n - want["unpaired"], 0, want["unpaired"])

    built = build_unpaired([FEEDBACK], [PAIRS])
    summary = built.summary()
    assert (summary["desirable"], summary["undesirable"]) == (want["desirable"], want["undesirable"])
    assert summary["by_kind"] == {"correction": want["corrections"], "given": 2 * want["given"], "verdict": n}
    assert summary["skipped"] == {} and len(built.used()) == n
    path = built.write(tmp_path / "a", judgements=counts)
    build_unpaired([FEEDBACK], [PAIRS]).write(tmp_path / "b", judgements=counts)
    assert path.read_bytes() == (tmp_path / "b" / "rows.parquet").read_bytes()  # deterministic
    assert json.loads((tmp_path / "a" / "summary.json").read_text(encoding="utf-8"))["judgements"] == counts
    assert pq.read_table(path).column_names[:3] == ["prompt", "completion", "label"]
    data = load_rows(path, seed=0)
    assert data.column_names == ["prompt", "completion", "label"] and sum(data["label"]) == want["desirable"]
    assert data["completion"] == load_rows(path, seed=0)["completion"] != pq.read_table(path).column("completion").to_pylist()


def test_auto_picks_dpo_when_every_judgement_pairs(tmp_path):
    f = write_jsonl(tmp_path / "fb.jsonl", [
        judgement("a", Q1, "少量可以。", "acceptable"),
        judgement("b", Q1, "随便喝。", "unacceptable"),
        judgement("c", Q2, "不用管。", "unacceptable", corrected="可以服用退烧药。"),
    ])  # fmt: skip
    method, counts = choose_method("auto", [f])
    assert method == "dpo" and (counts["judgements"], counts["unpaired"], counts["dpo"], counts["kto"]) == (3, 0, 3, 0)
    assert choose_method("kto", [f])[1]["kto"] == 3
    with pytest.raises(ValueError, match="method must be one of"):
        choose_method("ppo", [f])
