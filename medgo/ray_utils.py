"""Connecting to Ray: ``RAY_ADDRESS`` (or the config's address) when set, else a local instance.

A cluster started with ``ray start --head`` uses token authentication; clients then need
``RAY_AUTH_MODE=token`` and the token in ``~/.ray/auth_token`` (see README).
"""

from __future__ import annotations

import os

import ray

LOCAL_MIN_CPUS = 4


def init_ray(address: str | None = None, **kwargs) -> None:
    """Start or join Ray once per process; a no-op when Ray is already initialised."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        # Logical CPUs, not cores: a 2-worker training job on a 2-core machine must still leave
        # room for the Ray Data tasks that feed it.
        kwargs.setdefault("num_cpus", max(os.cpu_count() or 1, LOCAL_MIN_CPUS))
    ray.init(address=address, log_to_driver=True, **kwargs)
