"""A capacity plan: ZeRO-3 memory per GPU, FLOPs and wall-clock time of a pre-training config.

    ray job submit --working-dir . -- python jobs/plan.py --config jobs/configs/plan/qwen2_72b.yaml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medgo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["plan", *sys.argv[1:]]))
