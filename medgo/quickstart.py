"""The whole pipeline on the embedded default, one stage after another (``make quickstart``).

    python -m medgo.quickstart [--runs DIR] [--verbose]

Each step is an ordinary ``medgo`` command with the quickstart configs shipped in
``jobs/configs/*/quickstart.yaml`` (the corpus: ``corpus/tiny.yaml``); the run directory of each
stage feeds the next.  The model is the embedded Qwen2 at the quickstart's size; SFT and DPO
train on the training splits in ``medgo/assets/quickstart``, and the evaluation scores the
pre-trained, SFT and SFT+DPO models on the dev splits only.  The run ends with one table that
says, on held-out items, whether each stage did its job (:mod:`medgo.quickstart_table`), and the
time of each stage.  The terminal shows one progress bar per stage and its summary line;
everything else goes to the log file named first (``<runs>/logs/quickstart-<time>.log``).
``--verbose`` shows everything instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from medgo import console
from medgo import quickstart_table as table
from medgo.cli import main as medgo
from medgo.data.files import records
from medgo.data.paths import resolve_path

CONFIGS = "jobs/configs"
HELD_OUT_PAIRS = "medgo://assets/quickstart/dpo/pairs_dev.jsonl"
"""The doctors' pairs DPO does not train on (``dpo/quickstart.yaml`` trains on ``pairs_train.jsonl``)."""
PROMPTCBLUE_DEV = "medgo://assets/quickstart/promptcblue/dev.json"
"""The held-out CBLUE items in PromptCBLUE's layout (``eval/quickstart.yaml`` scores them)."""
SAMPLE_TASK = "KUAKE-QIC"
"""The task of the held-out item the last step asks the tuned model (greedy), to show one reply."""


def sample_prompt(task: str = SAMPLE_TASK) -> str:
    """The first dev item of ``task`` in the quickstart's PromptCBLUE rows (no stage trains on it)."""
    return next(row["input"] for row in records(resolve_path(PROMPTCBLUE_DEV)) if row["task_dataset"] == task)


def steps(runs: str) -> dict[str, list[str]]:
    """Stage name -> ``medgo`` arguments."""
    corpus, model = f"{runs}/corpus/tiny", f"{runs}/pretrain/quickstart/model"
    sft, dpo = f"{runs}/sft/quickstart", f"{runs}/dpo/quickstart"
    return {
        "corpus": ["corpus", "build", "--config", f"{CONFIGS}/corpus/tiny.yaml", "--output", runs],
        "pretrain": ["pretrain", "--config", f"{CONFIGS}/pretrain/quickstart.yaml", "--output", runs, "--corpus", corpus],
        "sft": ["sft", "--config", f"{CONFIGS}/sft/quickstart.yaml", "--output", runs, "--base", model],
        "dpo": ["dpo", "--config", f"{CONFIGS}/dpo/quickstart.yaml", "--output", runs, "--base", f"{sft}/model"],
        "eval": ["eval", "run", "--config", f"{CONFIGS}/eval/quickstart.yaml", "--output", runs,
                 "--set", f"models.0.model.base_model={model}", "--set", f"models.1.model.base_model={sft}/model",
                 "--set", f"models.2.model.base_model={sft}/model", "--set", f"models.2.model.adapter={dpo}/adapter"],
        "generate": ["generate", "--config", f"{CONFIGS}/generate/tiny.yaml", "--set", f"model.base_model={sft}/model", "--set", f"model.adapter={dpo}/adapter",
                     "--set", f"prompt={json.dumps(sample_prompt(), ensure_ascii=False)}", "--set", "temperature=0", "--set", "max_new_tokens=16"],
    }  # fmt: skip


def learning_table(runs: str) -> table.LearningTable:
    """The closing table: pre-training, SFT and ClinicalQA from the runs, preference accuracy computed here."""
    eval_dir = Path(runs) / "eval" / "quickstart"
    models = table.eval_models(eval_dir)
    out = table.LearningTable(list(models))
    out.rows += table.pretrain_rows(Path(runs) / "corpus" / "tiny", Path(runs) / "pretrain" / "quickstart")
    out.rows += table.cblue_rows(eval_dir, base="pretrained", tuned="sft")
    out.rows.append(table.preference_row({m: models[m] for m in ("sft", "sft+dpo")}, HELD_OUT_PAIRS, sft="sft", dpo="sft+dpo"))
    out.rows.append(table.clinicalqa_row(eval_dir))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medgo.quickstart", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/quickstart", help="parent directory of every stage's run directory")
    parser.add_argument("--verbose", action="store_true", help="show every log line and library warning")
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ[console.VERBOSE_ENV] = "1"
    times: dict[str, float] = {}
    with console.logging_to(Path(args.runs), "quickstart") as con:
        for name, argv_ in steps(args.runs).items():
            print(f"\n==> medgo {' '.join(argv_)}", flush=True)  # the log, or the terminal with --verbose
            start = time.perf_counter()
            rc = medgo(argv_)
            times[name] = time.perf_counter() - start
            if rc:
                con.say(f"quickstart: 'medgo {' '.join(argv_[:2])}' failed with exit code {rc}" + (f"; see {con.log_path}" if con.log_path else ""))
                return rc
        start = time.perf_counter()
        result = learning_table(args.runs)
        times["table"] = time.perf_counter() - start
        con.say("\nquickstart: what each stage did, on held-out items\n\n" + result.text(times))
        con.say(f"\nquickstart: {'every target met' if result.met() else 'a target was missed (NO above)'}; run directories under {args.runs}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
