"""``medgo eval score``: every task in both metric sets, through the real command line."""

from __future__ import annotations

import json
import shutil

import pytest

from medgo.assets import asset_path
from medgo.cli import main
from medgo.eval.config import CBLUE_TASKS
from medgo.eval.metrics import TASKS
from medgo.data.files import read_json

PCB = asset_path("promptcblue", "dev.json")


def submission(task: str, tmp_path):
    """A prediction file in the task's official submission layout holding the gold answers."""
    spec = TASKS[task]
    out = tmp_path / spec.submission_file
    if not task.startswith("IMCS-V2"):
        shutil.copy(spec.gold_path, out)  # these layouts equal the labelled dev files
        return out
    dialogues = read_json(spec.gold_path)
    field = {"IMCS-V2-NER": "BIO_label", "IMCS-V2-DAC": "dialogue_act", "IMCS-V2-SR": "local_implicit_info"}.get(task)
    if task == "IMCS-V2-MRG":
        data = {did: d["report"][0] for did, d in dialogues.items()}
    else:
        data = {did: {s["sentence_id"]: s[field] for s in d["dialogue"]} for did, d in dialogues.items()}
    if task == "IMCS-V2-SR":
        for did, d in dialogues.items():
            data[did]["global"] = d["implicit_info"]["Symptom"]
    out.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out


def run_cli(capsys, *argv):
    code = main(["eval", "score", *argv, "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else captured.err)


@pytest.mark.parametrize("task", CBLUE_TASKS)
def test_native_gold_as_prediction(task, tmp_path, capsys):
    code, res = run_cli(capsys, "--task", task, "--gold", str(TASKS[task].gold_path), "--pred", str(submission(task, tmp_path)))
    assert code == 0 and res["task"] == task and res["metric_set"] == "native"
    expected = 100.0
    if task == "IMCS-V2-MRG":  # two references per dialogue
        gold = TASKS[task].read_gold(TASKS[task].gold_path)
        expected = TASKS[task].score(gold, {k: v[0] for k, v in gold.items()})["score"]
    assert res["score"] == pytest.approx(expected) and res["n_missing"] == 0


@pytest.mark.parametrize("task", CBLUE_TASKS)
def test_promptcblue_metric_set_per_task(task, tmp_path, capsys):
    code, res = run_cli(capsys, "--task", task, "--metric-set", "promptcblue", "--gold", str(PCB), "--pred", str(PCB))
    assert code == 0 and res["score"] == pytest.approx(100.0) and res["n_gold"] > 0


def test_wrong_predictions_lower_the_score(tmp_path, capsys):
    spec = TASKS["KUAKE-QIC"]
    records = read_json(spec.gold_path)
    records[0]["label"] = "医疗费用" if records[0]["label"] != "医疗费用" else "其他"
    records[1]["label"] = "不是标签"
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    code, res = run_cli(capsys, "--task", "KUAKE-QIC", "--gold", str(spec.gold_path), "--pred", str(pred))
    n = len(records)
    assert code == 0 and res["score"] == pytest.approx(100 * (n - 2) / n, abs=1e-3) and res["out_of_label_set"] == 1


def test_promptcblue_format_scores_every_task(tmp_path, capsys):
    rows = [json.loads(line) for line in PCB.read_text(encoding="utf-8").splitlines() if line.strip()]
    preds = [{"sample_id": r["sample_id"], "target": r["target"] if i % 2 else ""} for i, r in enumerate(rows)]
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in preds), encoding="utf-8")
    code, full = run_cli(capsys, "--format", "promptcblue", "--gold", str(PCB), "--pred", str(PCB))
    assert code == 0 and full["score"] == pytest.approx(100.0) and full["n_tasks"] == 18
    code, half = run_cli(capsys, "--format", "promptcblue", "--gold", str(PCB), "--pred", str(pred))
    assert code == 0 and 0 < half["score"] < 100


def test_table_output_and_errors(tmp_path, capsys):
    spec = TASKS["CHIP-STS"]
    assert main(["eval", "score", "--task", "CHIP-STS", "--gold", str(spec.gold_path), "--pred", str(spec.gold_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CHIP-STS (native)") and "score" in out and "100.00" in out
    assert main(["eval", "score", "--task", "CHIP-STS", "--gold", str(spec.gold_path), "--pred", str(tmp_path / "none.json")]) == 2
    assert "none.json: no such file" in capsys.readouterr().err
    assert main(["eval", "score", "--task", "NOPE", "--gold", "a", "--pred", "b"]) == 2
    assert "unknown task 'NOPE'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[{oops", encoding="utf-8")
    assert main(["eval", "score", "--task", "CHIP-STS", "--gold", str(spec.gold_path), "--pred", str(bad)]) == 2
    assert "bad.json" in capsys.readouterr().err
