"""Reply to one chat prompt.

    ray job submit --working-dir . -- python jobs/generate.py --config jobs/configs/generate/tiny.yaml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medgo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
