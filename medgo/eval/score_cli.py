"""``medgo eval score``: score predictions that already exist (other systems' outputs, old runs).

    medgo eval score --task CMeEE-V2 --gold CMeEE-V2_dev.json --pred CMeEE-V2_test.json
    medgo eval score --task CHIP-CTC --gold dev.json --pred pred.json --metric-set promptcblue
    medgo eval score --format promptcblue --gold dev.json --pred predictions.json [--json] [--lenient] [--strict]

``--task`` reads the task's native gold file and official submission layout (``native``), or, with
``--metric-set promptcblue``, PromptCBLUE JSONL files restricted to that task.  ``--format
promptcblue`` scores every task of a PromptCBLUE file and their mean, as the official evaluator
does: a file it rejects is an error unless ``--lenient`` (a forgiving mode whose numbers are not
the leaderboard's; the output names the mode).  Records of unknown tasks are listed with their
count; ``--strict`` makes them an error.  Prints a table (or the full JSON with ``--json``); exit
status 2 on a missing, unreadable or rejected file, naming it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medgo.data.files import TaskFileError
from medgo.eval.metrics import METRIC_SETS, TASKS, get_task, score_promptcblue, score_task

HEADLINE = ("score", "metric", "n_gold", "n_pred", "n_missing", "out_of_label_set")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medgo eval score", description="score existing predictions against a gold file")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", help=f"CBLUE task: {', '.join(TASKS)}")
    what.add_argument("--format", choices=["promptcblue"], help="score a whole PromptCBLUE prediction file")
    p.add_argument("--gold", required=True, help="gold file (the task's dev file, or PromptCBLUE JSONL with targets)")
    p.add_argument("--pred", required=True, help="predictions (official submission layout, or PromptCBLUE JSONL)")
    p.add_argument("--metric-set", choices=METRIC_SETS, default="native", help="with --task: native (default) or promptcblue")
    p.add_argument("--lenient", action="store_true", help="PromptCBLUE: score files the official evaluator rejects (not the leaderboard number)")
    p.add_argument("--strict", action="store_true", help="--format promptcblue: records of unknown tasks are an error")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    return p


def _rows(result: dict) -> list[tuple[str, str]]:
    if "tasks" in result:
        rows = [(t, f"{r['score']:.2f}  ({r.get('metric', '')}, {r.get('n_gold', '')} samples)") for t, r in result["tasks"].items()]
        rows.append(("overall", f"{result['score']:.2f}  ({result['overall_scope']})"))
        if result["missing_tasks"]:
            rows.append(("missing tasks", ", ".join(result["missing_tasks"])))
        if result["unknown_tasks"]:
            rows.append(("unknown tasks", ", ".join(f"{t} ({n} records, not scored)" for t, n in result["unknown_tasks"].items())))
        forgiven = [f"{k[2:]} {result[k]}" for k in ("n_duplicates", "n_extra") if result.get(k)]
        forgiven += [f"{t} missing {r['n_missing']}" for t, r in result["tasks"].items() if r.get("n_missing")]
        return rows + ([("forgiven", "; ".join(forgiven))] if forgiven else [])
    rows = [(k, f"{result[k]:.2f}" if isinstance(result[k], float) else str(result[k])) for k in HEADLINE if k in result]
    extra = [(k, f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in result.items() if k not in HEADLINE and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return rows + extra


def score(args: argparse.Namespace) -> dict:
    task = get_task(args.task).name if args.task else None  # an unknown task is named before any file is read
    for path in (args.gold, args.pred):
        if not Path(path).is_file():
            raise TaskFileError(f"{path}: no such file")
    if args.format == "promptcblue":
        return score_promptcblue(args.gold, args.pred, lenient=args.lenient, strict=args.strict)
    return score_task(task, args.gold, args.pred, args.metric_set, lenient=args.lenient)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = score(args)
    except (TaskFileError, KeyError) as exc:
        print(f"medgo eval score: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return 0
    mode = f", {result['mode']} mode" if "mode" in result else ""
    title = f"PromptCBLUE{mode}" if args.format else f"{get_task(args.task).name} ({args.metric_set}{mode})"
    rows = _rows(result)
    width = max(len(k) for k, _ in rows)
    print(title)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
