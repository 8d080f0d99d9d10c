"""Shared fixtures: one local Ray instance per test session, the embedded tokenizer, a cache dir."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config):
    # Keep the embedded tokenizer cache out of the user's home during tests; Ray workers
    # started later inherit the variable.
    if "MEDGO_CACHE" not in os.environ:
        os.environ["MEDGO_CACHE"] = str(config.rootpath / ".pytest_cache" / "medgo")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    # The libraries' own deprecation warnings that medgo's commands filter stay out of the summary too.
    from medgo.console import LIBRARY_WARNINGS

    for category, message in LIBRARY_WARNINGS:
        config.addinivalue_line("filterwarnings", f"ignore:{message}:{category.__name__}")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every test that needs one (logical CPUs exceed cores)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tokenizer():
    from medgo.model.tokenizer import load_tokenizer

    return load_tokenizer()
