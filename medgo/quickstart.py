"""The whole pipeline on the embedded default, one stage after another (``make quickstart``).

    python -m medgo.quickstart [--runs DIR]

Each step is an ordinary ``medgo`` command with the tiny configs shipped in ``jobs/configs``;
the run directory of each stage feeds the next.
"""

from __future__ import annotations

import argparse
import sys
import time

from medgo.cli import main as medgo


def steps(runs: str) -> list[list[str]]:
    corpus, model = f"{runs}/corpus/tiny", f"{runs}/pretrain/tiny/model"
    sft, dpo = f"{runs}/sft/tiny/adapter", f"{runs}/dpo/tiny/adapter"
    return [
        ["corpus", "build", "--config", "jobs/configs/corpus/tiny.yaml", "--output", corpus],
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
    args = parser.parse_args(argv)
    for argv_ in steps(args.runs):
        print(f"\n==> medgo {' '.join(argv_)}", flush=True)
        start = time.perf_counter()
        rc = medgo(argv_)
        if rc:
            print(f"quickstart: step failed with exit code {rc}", file=sys.stderr)
            return rc
        print(f"    done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
