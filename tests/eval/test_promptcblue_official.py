"""PromptCBLUE scores against the official evaluator's numbers on noisy prediction files.

The expected numbers below were produced by the official PromptCBLUE evaluator —
michael-wzhu/PromptCBLUE ``src/evaluation/evaluate.py`` (``calc_scores``) after
``src/evaluation/post_generate_process.py`` on both the gold and the prediction file, commit
b0753a61a7c1f4e1ae171109f8a59037ff0a5543 — run outside this project with scikit-learn 1.9.1,
rouge-chinese 1.0.3 and transformers 5.25.0, on the files ``promptcblue_noise.py`` writes.
Only its output numbers are recorded here (x100, rounded to 6 decimals).  Where a file has
fewer than 18 tasks, ``calc_scores`` ran with the absent tasks filled by placeholders whose
numbers were dropped; the last number is then the mean over the tasks present.
"""

from __future__ import annotations

import json

import pytest
from promptcblue_noise import alias_rows, crash_pair, load, missing_pair, variant

from medgo.data.files import TaskFileError
from medgo.eval.metrics.promptcblue import TASKS, score_promptcblue_rows
from medgo.eval.score_cli import main

# fmt: off
# Task order: the official calc_scores order (TASKS); the last number is the overall.
OFFICIAL = {
    "noisy-1": (100.0, 100.0, 66.666667, 66.666667, 80.0, 100.0, 40.0, 13.333333, 64.007936, 14.285714, 0.0, 25.0, 16.666667, 22.222222, 100.0, 55.555555, 64.516129, 75.0, 55.773383),
    "noisy-2": (83.333333, 93.333333, 85.714286, 54.545455, 0, 72.727273, 85.714286, 33.333333, 60.499438, 33.333333, 53.333333, 83.333333, 33.333333, 77.777778, 44.444444, 94.308943, 100.0, 88.888889, 65.441896),
    "noisy-3": (100.0, 71.428571, 40.0, 83.333333, 50.0, 85.714286, 40.0, 25.0, 24.507375, 0.0, 33.333333, 58.333333, 16.666667, 22.222222, 44.444444, 44.444444, 100.0, 100.0, 52.190445),
    "noisy-4": (72.727273, 54.545455, 66.666667, 66.666667, 50.0, 85.714286, 66.666667, 0.0, 24.507375, 33.333333, 0.0, 33.333333, 14.285714, 77.777778, 0.0, 60.0, 64.516129, 88.888889, 47.757198),
    "noisy-5": (83.333333, 66.666667, 0, 28.571429, 50.0, 54.545455, 66.666667, 55.555556, 24.507375, 16.666667, 0.0, 83.333333, 14.285714, 77.777778, 0.0, 85.380116, 100.0, 66.666667, 48.553153),
    # missing.official.jsonl: the missing predictions given as empty replies
    "missing": (100.0, 40.0, 40.0, 72.727273, 50.0, 85.714286, 40.0, 25.0, 24.507375, 0.0, 0.0, 73.333333, 16.666667, 22.222222, 44.444444, 44.444444, 64.516129, 100.0, 46.865343),
    # crash.official.jsonl: the replies without the line the post-processing stops on
    "crash": (72.727273, 54.545455, 66.666667, 66.666667, 50.0, 85.714286, 66.666667, 0.0, 24.507375, 33.333333, 0.0, 33.333333, 14.285714, 77.777778, 0.0, 60.0, 64.516129, 88.888889, 47.757198),
    # the embedded dev_predictions.json with its one unanswered KUAKE-QTR sample given as an empty reply
    "sample": (88.888889, 87.5, 88.888889, 83.333333, 100.0, 85.714286, 75.0, 73.333333, 94.791666, 33.333333, 53.333333, 73.333333, 60.0, 66.666667, 77.777778, 86.419753, 97.727273, 88.888889, 78.607264),
    # alias.official*.jsonl: 16 tasks, CMeIE-V2 under its official name; the last number is the mean over the 16
    "alias": (83.333333, 93.333333, 85.714286, 54.545455, 0, 72.727273, 85.714286, 33.333333, 60.499438, 33.333333, 53.333333, 83.333333, 33.333333, 77.777778, 44.444444, 94.308943, None, None, 61.816577),
}
# fmt: on


def rows_of(name: str) -> list[dict]:
    return [json.loads(line) for line in variant(name)]


def assert_official(result: dict, name: str) -> None:
    *per_task, overall = OFFICIAL[name]
    expected = {t: v for t, v in zip(TASKS, per_task) if v is not None}
    got = {t: r["score"] for t, r in result["tasks"].items()}
    assert got == pytest.approx(expected, abs=1e-4)
    assert result["score"] == pytest.approx(overall, abs=1e-4)


@pytest.mark.parametrize("name", ["noisy-1", "noisy-2", "noisy-3", "noisy-4", "noisy-5"])
def test_noisy_files_score_as_the_official_evaluator(name):
    res = score_promptcblue_rows(load("dev.json"), rows_of(name))
    assert_official(res, name)
    assert res["mode"] == "official" and res["overall_scope"] == "mean over all 18 tasks (the official overall)" and not res["missing_tasks"]


def test_out_of_list_labels_are_classes_with_f1_zero():
    # noisy-1 CHIP-CTC: the gold has 4 labels, the replies add out-of-list ones that enter the macro average
    res = score_promptcblue_rows(load("dev.json"), rows_of("noisy-1"))["tasks"]["CHIP-CTC"]
    assert res["out_of_label_set"] > 0 and res["score"] == pytest.approx(14.285714, abs=1e-4)


def test_sample_predictions_need_lenient_for_the_unanswered_sample():
    with pytest.raises(TaskFileError, match=r"KUAKE-QTR: 1 gold samples have no prediction.*KUAKE-QTR-dev-003"):
        score_promptcblue_rows(load("dev.json"), load("dev_predictions.json"))
    res = score_promptcblue_rows(load("dev.json"), load("dev_predictions.json"), lenient=True)
    assert_official(res, "sample")
    assert res["mode"] == "lenient" and res["tasks"]["KUAKE-QTR"]["n_missing"] == 1
    assert res["overall_scope"] == "mean over all 18 tasks (lenient, not the official overall)"


def test_missing_predictions_are_rejected_then_empty_replies_when_lenient():
    ours, official = missing_pair()
    with pytest.raises(TaskFileError, match="have no prediction"):
        score_promptcblue_rows(load("dev.json"), ours)
    assert_official(score_promptcblue_rows(load("dev.json"), official), "missing")
    res = score_promptcblue_rows(load("dev.json"), ours, lenient=True)
    assert_official(res, "missing")
    assert sum(r["n_missing"] for r in res["tasks"].values()) == len(official) - len(ours) == 8


def test_replies_the_post_processing_stops_on():
    ours, official = crash_pair()
    with pytest.raises(TaskFileError, match=r"prediction for sample 'Text2DT-dev-001': Text2DT reply line ' ': no '：role='.*--lenient"):
        score_promptcblue_rows(load("dev.json"), ours)
    causal = [r for r in ours if r["task_dataset"] != "Text2DT"]
    with pytest.raises(TaskFileError, match=r"prediction for sample 'CMedCausal-dev-001'.*'这一行没有头实体'.*--lenient"):
        score_promptcblue_rows([r for r in load("dev.json") if r["task_dataset"] != "Text2DT"], causal)
    assert_official(score_promptcblue_rows(load("dev.json"), official), "crash")
    assert_official(score_promptcblue_rows(load("dev.json"), ours, lenient=True), "crash")


def test_cmeie_is_cmeie_v2_and_fewer_tasks_are_labelled():
    res = score_promptcblue_rows(alias_rows(load("dev.json"), "CMeIE"), alias_rows(rows_of("noisy-2"), "CMeIE"))
    assert_official(res, "alias")
    assert res["n_tasks"] == 16 and res["missing_tasks"] == ["Text2DT", "CMedCausal"]
    assert res["overall_scope"] == "mean over the 16 tasks present, not the official overall"


def test_duplicates_and_extra_predictions():
    gold = load("dev.json")
    rows = gold + gold[:3] + [{"sample_id": "nope", "target": "x"}]
    with pytest.raises(TaskFileError, match="3 duplicated predictions"):
        score_promptcblue_rows(gold, rows)
    with pytest.raises(TaskFileError, match="1 predictions for no gold sample.*'nope'"):
        score_promptcblue_rows(gold, gold + [{"sample_id": "nope", "target": "x"}])
    res = score_promptcblue_rows(gold, rows, lenient=True)
    assert res["score"] == 100.0 and res["n_duplicates"] == 3 and res["n_extra"] == 1


def _dump(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_cli_names_unknown_tasks_and_strict_rejects_them(tmp_path, capsys):
    gold = load("dev.json") + [{"sample_id": f"x{i}", "task_dataset": "CMeIE-V3", "target": "a"} for i in range(2)]
    g = _dump(tmp_path / "gold.jsonl", gold)
    assert main(["--format", "promptcblue", "--gold", g, "--pred", g]) == 0
    out = capsys.readouterr().out
    assert "PromptCBLUE, official mode" in out and "CMeIE-V3 (2 records, not scored)" in out
    assert "100.00  (mean over all 18 tasks (the official overall))" in out
    assert main(["--format", "promptcblue", "--gold", g, "--pred", g, "--strict"]) == 2
    assert "records of unknown tasks: CMeIE-V3 (2)" in capsys.readouterr().err


def test_cli_fewer_tasks_and_lenient(tmp_path, capsys):
    g = _dump(tmp_path / "gold.jsonl", alias_rows(load("dev.json"), "CMeIE"))
    p = _dump(tmp_path / "pred.jsonl", alias_rows(rows_of("noisy-2"), "CMeIE")[1:])
    assert main(["--format", "promptcblue", "--gold", g, "--pred", p]) == 2
    assert "CMeEE-V2: 1 gold samples have no prediction" in capsys.readouterr().err
    assert main(["--format", "promptcblue", "--gold", g, "--pred", p, "--lenient"]) == 0
    out = capsys.readouterr().out
    assert "PromptCBLUE, lenient mode" in out and "mean over the 16 tasks present, not the official overall" in out
    assert "missing tasks  Text2DT, CMedCausal" in out and "CMeEE-V2 missing 1" in out


def test_every_task_is_covered_by_the_noisy_files():
    assert {r["task_dataset"] for r in rows_of("noisy-1")} == set(TASKS)
