"""ClinicalQA: file validation, strict letter extraction, shuffling and the scores on hand-made cases."""

from __future__ import annotations

import json
import random

import pytest

from medgo.eval import clinicalqa as cqa
from medgo.data.prompts import CLINICALQA, build_prompt, target_text

Q = {"question": "2型糖尿病首选口服药是？", "options": {"A": "二甲双胍", "B": "胰岛素", "C": "阿司匹林", "D": "青霉素"}, "answer": "A"}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_jsonl_and_cmmlu_csv_read_the_same(tmp_path):
    j = write_jsonl(tmp_path / "q.jsonl", [Q])
    c = tmp_path / "q.csv"
    c.write_text(",Question,A,B,C,D,Answer\n0,2型糖尿病首选口服药是？,二甲双胍,胰岛素,阿司匹林,青霉素,A\n", encoding="utf-8")
    (a,), (b,) = cqa.load_questions([j]), cqa.load_questions([c])
    assert (a.question, a.options, a.answer) == (b.question, b.options, b.answer)
    assert a.uid == "q.jsonl:1" and b.uid == "q.csv:2"


@pytest.mark.parametrize(
    "record, message",
    [
        ({**Q, "answer": "E"}, r"q.jsonl:2: 'answer' must be one of"),
        ({**Q, "options": {"A": "x", "B": "y", "C": "z"}}, r"q.jsonl:2: 'options' must have exactly"),
        ({**Q, "question": " "}, r"q.jsonl:2: 'question' is missing"),
        ({**Q, "options": {**Q["options"], "C": ""}}, r"q.jsonl:2: option\(s\) C are empty"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, record, message):
    path = write_jsonl(tmp_path / "q.jsonl", [Q, record])
    with pytest.raises(cqa.ClinicalQAError, match=message):
        cqa.load_questions([path])


def test_bad_json_and_bad_csv_header(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text(json.dumps(Q) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(cqa.ClinicalQAError, match=r"q.jsonl:2: not valid JSON"):
        cqa.load_questions([p])
    c = tmp_path / "q.csv"
    c.write_text("Q,A,B,C,D,Answer\n", encoding="utf-8")
    with pytest.raises(cqa.ClinicalQAError, match="lacks column"):
        cqa.load_questions([c])


@pytest.mark.parametrize(
    "text, letter",
    [
        ("A", "A"), ("  C. 阿司匹林", "C"), ("(B)", "B"), ("【D】青霉素", "D"), ("答案：C", "C"),
        ("正确答案是 B，因为……", "B"), ("我认为答案为D。", "D"), ("The answer is A", "A"),
        ("", None), ("二甲双胍", None), ("答案是A或者B", None), ("选项A和选项C都对", None),
        ("Because insulin", None), ("ABCD", None),
        # hedges are not answers, even when the reply starts with a letter
        ("A或B", None), ("A和C都对", None), ("A、B", None), ("B / D", None), ("A or B", None), ("C还是D？", None),
        ("(A)或(B)", None), ("A，或者选项C", None),
        # other letters that are not a second choice
        ("C. 维生素B12", "C"), ("C，因为B选项剂量过大", "C"),
    ],
)  # fmt: skip
def test_extract_letter_is_strict(text, letter):
    assert cqa.extract_letter(text) == letter


def test_shuffle_moves_answer_and_maps_back():
    q = cqa.parse_question(Q, "x:1")
    rng = random.Random(0)
    for _ in range(20):
        s = cqa.shuffled(q, rng)
        assert s.perm != cqa.LETTERS and sorted(s.perm) == list(cqa.LETTERS)
        assert s.options[s.answer] == q.options[q.answer]
        for shown in cqa.LETTERS:
            assert s.options[shown] == q.options[cqa.to_original(s, shown)]
    assert [s.perm for s in cqa.shuffle_all([q] * 3, 7)] == [s.perm for s in cqa.shuffle_all([q] * 3, 7)]


def test_scores_on_hand_made_case():
    qs = [cqa.parse_question({**Q, "answer": a}, f"x:{i}") for i, a in enumerate("ABCD")]
    sq = cqa.shuffle_all(qs, 1)
    letters = ["A", "C", None, "D"]  # 2 right, 1 wrong, 1 unparsed
    # shuffled replies: same option text for q0 and q3, a different one for q1, unparsed for q2
    shuffled_letters = [cqa.LETTERS[sq[0].perm.index("A")], cqa.LETTERS[sq[1].perm.index("B")], cqa.LETTERS[sq[2].perm.index("C")], cqa.LETTERS[sq[3].perm.index("D")]]
    shuffled_letters[2] = None
    s = cqa.score(qs, letters, sq, shuffled_letters)
    assert s["n"] == 4 and s["correct"] == 2 and s["accuracy"] == 50.0
    assert s["unparsed"] == 1 and s["unparsed_rate"] == 25.0
    assert s["consistency"] == 50.0  # q0 and q3; q1 changed its pick, q2 unparsed
    assert s["accuracy_shuffled"] == 75.0  # q0, q1 (picked B = gold), q3


def test_prompt_lists_options_and_target_parses_back():
    q = cqa.parse_question(Q, "x:1")
    (msg,) = build_prompt(CLINICALQA, q)
    assert msg["role"] == "user" and all(f"{k}. {q.options[k]}" in msg["content"] for k in cqa.LETTERS)
    assert cqa.extract_letter(target_text(CLINICALQA, q)) == q.answer


def test_embedded_samples_load():
    files = cqa.default_files()
    if not files:
        pytest.skip("embedded ClinicalQA samples not present")
    qs = cqa.load_questions(files)
    assert len(qs) >= 4 and {p.suffix for p in files} == {".jsonl", ".csv"}
