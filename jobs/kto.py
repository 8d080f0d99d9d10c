"""KTO from doctors' judgements, paired or not (TRL KTOTrainer + LoRA), on Ray Train + DeepSpeed ZeRO-3.

    ray job submit --working-dir . -- python jobs/kto.py --config jobs/configs/kto/tiny.yaml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medgo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["kto", *sys.argv[1:]]))
