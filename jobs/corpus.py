"""Build a pre-training corpus (clean, deduplicate, de-identify, decontaminate, pack).

    ray job submit --working-dir . -- python jobs/corpus.py --config jobs/configs/corpus/tiny.yaml --output runs
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medgo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["corpus", "build", *sys.argv[1:]]))
