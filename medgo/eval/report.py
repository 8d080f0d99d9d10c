"""Evaluation reports: ``results.json``, ``report.md`` (the paper's Tables 1 and 2) and ``scores.png``.

    from medgo.eval.report import write_report
    write_report(run_dir, results)       # results: the dict ``medgo.eval.run.run`` builds

``results`` holds ``models`` (column order), ``rows`` (Table 1: one per task or task level, each
``{task, description, metric, scores: {model: score}, parsed: {model: [ok, n]}}``),
``average`` (macro-average per model over the rows), ``skipped`` (task -> reason),
``clinicalqa`` (model -> scores) and optionally ``promptcblue`` (model -> scores).
"""

from __future__ import annotations

import json
from pathlib import Path

CLINICALQA_COLUMNS = (
    ("accuracy", "Accuracy"),
    ("accuracy_loglik", "Accuracy (log-lik)"),
    ("unparsed_rate", "Unparsed %"),
    ("consistency", "Consistency"),
    ("consistency_loglik", "Consistency (log-lik)"),
)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def table1(results: dict) -> list[str]:
    """Task, description, metric, then one score column per model; the macro-average last."""
    models = results["models"]
    rows = [[r["task"], r["description"], r["metric"], *(_fmt(r["scores"].get(m)) for m in models)] for r in results["rows"]]
    rows.append(["**Average**", "", "", *(f"**{_fmt(results['average'].get(m))}**" for m in models)])
    return _table(["Task", "Description", "Metric", *models], rows)


def parse_table(results: dict) -> list[str]:
    """Generations parsed into the task's structure (the rest were scored wrong)."""
    models = results["models"]
    rows = [[r["task"], *("–" if (p := r.get("parsed", {}).get(m)) is None else f"{p[0]}/{p[1]}" for m in models)] for r in results["rows"]]
    return _table(["Task", *models], rows)


def table2(results: dict) -> list[str]:
    """Model, ClinicalQA accuracy and the robustness figures."""
    qa = results.get("clinicalqa") or {}
    cols = [(k, label) for k, label in CLINICALQA_COLUMNS if any(k in s for s in qa.values())]
    rows = [[m, *(_fmt(qa[m].get(k)) for k, _ in cols), str(qa[m]["n"])] for m in results["models"] if m in qa]
    return _table(["Model", *(label for _, label in cols), "Questions"], rows)


def markdown(results: dict) -> str:
    lines = [f"# Evaluation: {results['run_name']}", ""]
    if results["rows"]:
        lines += [f"## Table 1. CBLUE ({results['metric_set']} metrics, scores 0–100)", "", *table1(results), ""]
        lines += ["Generations parsed into the task's answer structure (unparsed ones are scored wrong):", "", *parse_table(results), ""]
    cut = {m: n for m, n in (results.get("truncated_prompts") or {}).items() if n}
    if cut:
        lines += ["Prompts longer than the context lost their middle: " + ", ".join(f"{m}: {n}" for m, n in cut.items()), ""]
    if results.get("skipped"):
        lines += ["Skipped tasks:", "", *(f"- {task}: {why}" for task, why in results["skipped"].items()), ""]
    if results.get("clinicalqa"):
        lines += ["## Table 2. ClinicalQA", "", *table2(results), ""]
    if results.get("promptcblue"):
        pc = results["promptcblue"]
        lines += ["## PromptCBLUE", "", *_table(["Model", "Score", "Samples"], [[m, _fmt(pc[m]["score"]), str(pc[m].get("n", ""))] for m in results["models"] if m in pc]), ""]
    return "\n".join(lines)


def bar_chart(results: dict, path: Path) -> Path | None:
    """Grouped bars: every Table 1 row and ClinicalQA accuracy, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [r["task"] for r in results["rows"]]
    series = {m: [r["scores"].get(m) or 0.0 for r in results["rows"]] for m in results["models"]}
    if results.get("clinicalqa"):
        labels.append("ClinicalQA")
        for m in results["models"]:
            series[m].append(results["clinicalqa"].get(m, {}).get("accuracy", 0.0))
    if not labels:
        return None
    x, width = np.arange(len(labels)), 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(labels) * max(1, len(series)) ** 0.5 + 2), 4.5))
    for i, (model, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=model)
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("score (0–100)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title(f"{results['run_name']} ({results['metric_set']} metrics)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Per-sample predictions, one JSON object per line (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_report(run_dir: str | Path, results: dict, chart: bool = True) -> dict[str, Path]:
    """Write ``results.json``, ``report.md`` and (``chart``) ``scores.png``; returns their paths."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"results": run_dir / "results.json", "report": run_dir / "report.md"}
    paths["results"].write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    paths["report"].write_text(markdown(results), encoding="utf-8")
    if chart and bar_chart(results, run_dir / "scores.png"):
        paths["chart"] = run_dir / "scores.png"
    return paths
