"""Evaluate models on CBLUE and ClinicalQA and write the report.

    ray job submit --working-dir . -- python jobs/eval.py --config jobs/configs/eval/tiny.yaml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medgo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["eval", "run", *sys.argv[1:]]))
