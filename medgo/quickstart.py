"""The whole pipeline on the embedded default, one stage after another (``make quickstart``).

    python -m medgo.quickstart [--runs DIR] [--verbose]

Each step is an ordinary ``medgo`` command with the tiny configs shipped in ``jobs/configs``;
the run directory of each stage feeds the next.  The terminal shows one progress bar per stage
and its summary line; everything else goes to the log file named first
(``<runs>/logs/quickstart-<time>.log``).  ``--verbose`` shows everything instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from medgo import console
from medgo.cli import main as medgo


def steps(runs: str) -> list[list[str]]:
    corpus, model = f"{runs}/corpus/tiny", f"{runs}/pretrain/tiny/model"
    sft, dpo = f"{runs}/sft/tiny/adapter", f"{runs}/dpo/tiny/adapter"
    return [
        ["corpus", "build", "--config", "jobs/configs/corpus/tiny.yaml", "--output", runs],
        ["pretrain", "--config", "jobs/configs/pretrain/tiny.yaml", "--output", runs, "--corpus", corpus],
        ["sft", "--config", "jobs/configs/sft/tiny.yaml", "--output", runs, "--base", model],
        ["dpo", "--config", "jobs/configs/dpo/tiny.yaml", "--output", runs, "--base", model, "--adapter", sft],
        ["eval", "run", "--config", "jobs/configs/eval/compare.yaml", "--output", runs, "--set", "run_name=quickstart",
         "--set", "models.0.name=pretrained", "--set", f"models.0.model.base_model={model}",
         "--set", "models.1.name=sft+dpo", "--set", f"models.1.model.base_model={model}", "--set", f"models.1.model.adapter={dpo}"],
        ["generate", "--config", "jobs/configs/generate/tiny.yaml", "--set", f"model.base_model={model}", "--set", f"model.adapter={dpo}"],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medgo.quickstart", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/quickstart", help="parent directory of every stage's run directory")
    parser.add_argument("--verbose", action="store_true", help="show every log line and library warning")
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ[console.VERBOSE_ENV] = "1"
    log = None if console.verbose() else console.log_path_for(Path(args.runs), "quickstart")
    start = time.perf_counter()
    with console.Console(log) as con:
        for argv_ in steps(args.runs):
            print(f"\n==> medgo {' '.join(argv_)}", flush=True)  # the log, or the terminal with --verbose
            rc = medgo(argv_)
            if rc:
                con.say(f"quickstart: 'medgo {' '.join(argv_[:2])}' failed with exit code {rc}" + (f"; see {log}" if log else ""))
                return rc
        con.say(f"quickstart: done in {time.perf_counter() - start:.0f} s; run directories under {args.runs}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
