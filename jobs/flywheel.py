"""The feedback flywheel's round (judgements -> candidate -> gate -> registry), for a daily Ray job or cron.

    ray job submit --working-dir . -- python jobs/flywheel.py round --config jobs/configs/flywheel/qwen2_72b.yaml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medgo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["flywheel", *sys.argv[1:]]))
