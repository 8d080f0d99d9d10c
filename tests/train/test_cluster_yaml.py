"""cluster.yaml is a valid Ray cluster-launcher file for an on-premises head plus 8 GPU workers."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from medgo.config import REPO_ROOT


def test_cluster_yaml_passes_rays_own_validation():
    raw = yaml.safe_load(Path(REPO_ROOT, "cluster.yaml").read_text(encoding="utf-8"))
    assert raw["provider"]["type"] == "local" and len(raw["provider"]["worker_ips"]) == 8
    config = prepare_config(raw)  # fills Ray's defaults for the local provider, as `ray up` does
    validate_config(config)
    (node_type,) = config["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == 8
    setup = " && ".join(config["setup_commands"])
    assert "pip install" in setup and '-e ".[gpu]"' in setup
    workers = " ".join(config["worker_start_ray_commands"])
    assert "--num-gpus=8" in workers and "--disable-usage-stats" in workers
    assert "--num-gpus=0" in " ".join(config["head_start_ray_commands"])
