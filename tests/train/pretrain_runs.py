"""The pre-training runs the tests share, and the two-node reference run (a script).

    python tests/train/pretrain_runs.py CORPUS_DIR OUT_DIR

The uninterrupted reference run needs its own two-node cluster (``ray.cluster_utils.Cluster``),
so it runs in a separate process from the test session's Ray: the head has 3 CPUs and the
second node 2, the workers are placed one per node (``STRICT_SPREAD``) and the head keeps CPUs
for Ray Data.  Each worker asks for 1 CPU, as in the session's runs: Ray gives a worker as many
torch threads as CPUs, and a different thread count sums the matrix products in a different
order, so the weights would no longer be bit-identical.  It prints one JSON line describing the run.
"""

from __future__ import annotations

import json
import os
import sys

from medgo.config import load_config
from medgo.train.pretrain import run
from medgo.train.pretrain_config import PretrainConfig

STEPS, EVERY, STOP, FAIL, WORKERS, MICRO, BLOCK = 24, 4, 10, 18, 2, 4, 64
PEAK = 1e11
REFERENCE = "reference"


def run_config(corpus, root, name: str, *overrides: str) -> PretrainConfig:
    """The tiny shipped config, shortened: 24 steps of 2 workers x 4 blocks, a checkpoint every 4 steps."""
    return load_config(PretrainConfig, "jobs/configs/pretrain/tiny.yaml", [
        f"run_name={name}", f"data.corpus={corpus}", f"output_dir={root}",
        f"ray.num_workers={WORKERS}", f"train.per_device_train_batch_size={MICRO}", f"train.max_steps={STEPS}",
        "train.learning_rate=1e-2", "train.warmup_steps=3", f"train.save_steps={EVERY}", "train.save_total_limit=2",
        "train.eval_steps=8", "data.eval_blocks=8", f"metrics.peak_flops_per_device={PEAK}", *overrides,
    ])


def private_cluster_address() -> None:
    """``Cluster`` records its head in /tmp/ray/ray_current_cluster (and deletes that file when it
    shuts down), which makes every address-less ``ray.init()`` on the machine join it; keep this
    test cluster out of that file."""
    import ray._common.utils
    import ray._private.utils

    ray._private.utils.write_ray_address = lambda *args, **kwargs: None
    ray._common.utils.reset_ray_address = lambda *args, **kwargs: None


def two_node_reference(corpus: str, out: str) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    private_cluster_address()
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        result = run(run_config(corpus, out, REFERENCE, "ray.placement_strategy=STRICT_SPREAD"))
        alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        return {"worker_nodes": result.nodes, "cluster_nodes": alive, "steps": result.steps,
                "run_dir": str(result.run_dir), "model_dir": str(result.model_dir)}
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    print("REFERENCE_RUN " + json.dumps(two_node_reference(sys.argv[1], sys.argv[2])), flush=True)
