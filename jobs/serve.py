"""Serve MedGo on a cluster from a job (the job's driver keeps the application running).

    ray job submit --working-dir . -- python jobs/serve.py serve_configs/qwen2_72b.yaml

``serve deploy serve_configs/qwen2_72b.yaml`` is the usual way; this wrapper checks the config
first.  A cluster started with ``ray start --head`` uses token authentication: submit with
``RAY_AUTH_MODE=token`` and the token in ``~/.ray/auth_token``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medgo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
