"""DPO from doctors' feedback (TRL DPOTrainer + LoRA) on Ray Train + DeepSpeed ZeRO-3.

    ray job submit --working-dir . -- python jobs/dpo.py --config jobs/configs/dpo/tiny.yaml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medgo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["dpo", *sys.argv[1:]]))
