"""CBLUE test-set submissions: every task written from the sample test files and checked as the
CBLUE format checkers check (file name, record count, required fields, predefined labels)."""

from __future__ import annotations

import json
import zipfile

import pytest

from medgo.cli import main
from medgo.eval import retrieval
from medgo.eval.config import CBLUE_TASKS, EvalConfig
from medgo.eval.metrics import TASKS
from medgo.eval.predict import IRTask, submission_task
from medgo.eval.submission import check_submission

CFG = EvalConfig(cblue={"split": "test"})


def submit(task: str, reply: str, out_dir):
    tt = submission_task(CFG, task)
    if isinstance(tt.inner, IRTask):
        tt.inner.candidates = retrieval.bm25_candidates(tt.inner.corpus, tt.inner.queries, CFG.retrieval, None)
        answers = {}
    else:
        answers = {tt.inner.uid(i): {"text": reply} for i in range(len(tt.inner.examples))}
    return tt, tt.finish(answers, out_dir / "predictions", out_dir / "submission")


@pytest.mark.parametrize("task", CBLUE_TASKS)
def test_unreadable_replies_still_give_a_well_formed_record_per_unit(task, tmp_path):
    tt, res = submit(task, "抱歉，我无法回答。", tmp_path)
    assert res["file"] == TASKS[task].submission_file and res["format_problems"] == []
    if task != "KUAKE-IR":  # MedDG takes any reply, CHIP-CDN reads it as no term: nothing to fill in there
        assert res["prompts"] > 0 and (res["filled_in"] > 0 or task in ("MedDG", "CHIP-CDN"))


def test_sample_counts_and_fallbacks(tmp_path):
    _, ctc = submit("CHIP-CTC", "不知道", tmp_path)
    records = json.loads((tmp_path / "submission" / "CHIP-CTC_test.json").read_text(encoding="utf-8"))
    assert ctc == {"file": "CHIP-CTC_test.json", "prompts": 3, "unparsed": 3, "filled_in": 3, "format_problems": []}
    assert [r["label"] for r in records] == ["Multiple"] * 3 and [r["id"] for r in records] == ["s1", "s2", "s3"]
    _, ner = submit("IMCS-V2-NER", "无", tmp_path)
    tags = json.loads((tmp_path / "submission" / "IMCS-V2-NER_test.json").read_text(encoding="utf-8"))
    assert tags["30000001"]["1"] == "O O O O" and ner["format_problems"] == []
    _, ir = submit("KUAKE-IR", "", tmp_path)
    lines = (tmp_path / "submission" / "KUAKE-IR_test.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and all(len(line.split("\t")[1].split(",")) == 10 for line in lines)


def test_the_checks_reject_what_the_format_checkers_reject(tmp_path):
    tt, _ = submit("CHIP-CTC", "Age", tmp_path)
    path = tmp_path / "submission" / "CHIP-CTC_test.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps([{**records[0], "label": "年龄"}, *records[1:]], ensure_ascii=False), encoding="utf-8")
    assert check_submission("CHIP-CTC", tt.raw_path, path) == ["s1: label '年龄' not in the predefined list"]
    path.write_text(json.dumps(records[1:], ensure_ascii=False), encoding="utf-8")
    assert check_submission("CHIP-CTC", tt.raw_path, path) == ["record number check: 1 raw records have no prediction, e.g. 's1'"]
    renamed = path.rename(tmp_path / "submission" / "CTC_test.json")
    assert check_submission("CHIP-CTC", tt.raw_path, renamed) == ["submission file name should be CHIP-CTC_test.json, got CTC_test.json"]
    tt, _ = submit("Text2DT", "", tmp_path)
    path = tmp_path / "submission" / "Text2DT_test.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    records[0]["tree"] = [{"role": "C", "triples": [["a", "病因", "b"]], "logical_rel": "null"}]
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    problems = check_submission("Text2DT", tt.raw_path, path)
    assert any("relation not in the list" in p for p in problems) and any("pre-order" in p for p in problems)


@pytest.mark.slow
def test_predict_writes_a_complete_submission_for_all_18_tasks(ray_session, tmp_path):
    code = main(["eval", "predict", "--split", "test", "--output", str(tmp_path), "--set", "generation.max_new_tokens=8", "--set", "clinicalqa.enabled=false"])
    assert code in (0, None)
    run_dir = tmp_path / "eval" / EvalConfig().run_name
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert set(summary["tasks"]) == set(CBLUE_TASKS) and all(r["format_problems"] == [] for r in summary["tasks"].values())
    names = {TASKS[t].submission_file for t in CBLUE_TASKS}
    with zipfile.ZipFile(run_dir / "submission" / "submission.zip") as z:
        assert set(z.namelist()) == names
    for t in CBLUE_TASKS:
        tt = submission_task(CFG, t)
        assert check_submission(t, tt.raw_path, run_dir / "submission" / TASKS[t].submission_file, tt.dialogues_path) == []


@pytest.mark.slow
def test_predict_in_promptcblue_format_writes_one_reply_per_prompt_that_the_scorer_accepts(ray_session, tmp_path):
    from medgo.eval.metrics import score_promptcblue
    from medgo.eval.predict import PROMPTCBLUE_FILE

    code = main(["eval", "predict", "--config", "jobs/configs/eval/promptcblue.yaml", "--split", "test", "--format", "promptcblue",
                 "--output", str(tmp_path), "--set", "generation.max_new_tokens=4"])
    assert code == 0
    out = tmp_path / "eval" / "promptcblue" / "submission" / PROMPTCBLUE_FILE
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    gold = tmp_path / "gold.jsonl"
    gold_rows = [r for r in (json.loads(line) for line in open("medgo/assets/promptcblue/dev.json", encoding="utf-8")) if r["sample_id"] in {x["sample_id"] for x in rows}]
    gold.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in gold_rows), encoding="utf-8")
    assert [r["sample_id"] for r in rows] == [r["sample_id"] for r in gold_rows] and all(isinstance(r["target"], str) for r in rows)
    assert {r["task_dataset"] for r in rows} == {r["task_dataset"] for r in gold_rows}
    result = score_promptcblue(str(gold), str(out))  # official mode: a malformed or incomplete file would be rejected
    assert result["mode"] == "official" and 0 <= result["score"] <= 100
