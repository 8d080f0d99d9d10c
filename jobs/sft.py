"""Supervised fine-tuning with LoRA (TRL SFTTrainer) on Ray Train + DeepSpeed ZeRO-3.

    ray job submit --working-dir . -- python jobs/sft.py --config jobs/configs/sft/tiny.yaml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medgo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["sft", *sys.argv[1:]]))
