"""Report layout: Table 1 (task, description, metric, one column per model), Table 2, JSON and PNG."""

from __future__ import annotations

import json

from medgo.eval.report import markdown, write_report

RESULTS = {
    "run_name": "demo",
    "metric_set": "native",
    "models": ["base", "tuned"],
    "rows": [
        {"task": "CMeEE-V2", "description": "医学实体识别", "metric": "Micro-F1", "scores": {"base": 10.0, "tuned": 62.5}, "parsed": {"base": [3, 4], "tuned": [4, 4]}},
        {"task": "CHIP-CTC", "description": "临床试验筛选标准短文本分类", "metric": "Macro-F1", "scores": {"base": 0.0, "tuned": 50.0}, "parsed": {"base": [0, 4], "tuned": [4, 4]}},
    ],
    "average": {"base": 5.0, "tuned": 56.25},
    "skipped": {"MedDG": "missing file MedDG/MedDG_dev.json"},
    "clinicalqa": {"base": {"n": 8, "accuracy": 25.0, "accuracy_loglik": 37.5, "unparsed_rate": 50.0, "consistency": 12.5, "consistency_loglik": 50.0}, "tuned": {"n": 8, "accuracy": 75.0, "accuracy_loglik": 62.5, "unparsed_rate": 0.0, "consistency": 87.5, "consistency_loglik": 75.0}},
}


def test_table1_and_table2_layout():
    md = markdown(RESULTS)
    lines = md.splitlines()
    assert "| Task | Description | Metric | base | tuned |" in lines
    assert "| CMeEE-V2 | 医学实体识别 | Micro-F1 | 10.00 | 62.50 |" in lines
    assert "| **Average** |  |  | **5.00** | **56.25** |" in lines
    assert "| Model | Accuracy | Accuracy (log-lik) | Unparsed % | Consistency | Consistency (log-lik) | Questions |" in lines
    assert "| tuned | 75.00 | 62.50 | 0.00 | 87.50 | 75.00 | 8 |" in lines
    assert "| CHIP-CTC | 0/4 | 4/4 |" in lines
    assert "- MedDG: missing file MedDG/MedDG_dev.json" in lines


def test_write_report_files(tmp_path):
    paths = write_report(tmp_path, RESULTS)
    assert json.loads(paths["results"].read_text(encoding="utf-8")) == RESULTS
    png = paths["chart"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert paths["report"].read_text(encoding="utf-8").startswith("# Evaluation: demo")
