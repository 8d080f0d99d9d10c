"""Multi-node launch: on a two-node local Ray cluster the two workers land on different nodes and finish."""

from __future__ import annotations

from pretrain_runs import STEPS


def test_workers_land_on_both_nodes_and_the_run_finishes(reference):
    assert len(reference["cluster_nodes"]) == 2
    assert sorted(reference["worker_nodes"]) == reference["cluster_nodes"], "one worker on each node"
    assert reference["steps"] == STEPS and reference["model_dir"].endswith("model")
