"""The locked install: the environment is the lock, and the lock covers what pyproject.toml declares."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.M)


def pins(lock: str) -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in PIN.findall((ROOT / "locks" / lock).read_text())}


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_declared_dependency_is_locked_within_its_bounds():
    for lock in ("cpu.txt", "gpu.txt"):
        locked = pins(lock)
        for req in declared():
            name = canonicalize_name(req.name)
            assert name in locked, f"{req.name} is declared in pyproject.toml but not in locks/{lock}: run make lock"
            assert req.specifier.contains(locked[name], prereleases=True), f"locks/{lock} has {req.name}=={locked[name]}, outside {req}: run make lock"


def test_the_locks_differ_only_in_the_torch_build():
    cpu, gpu = pins("cpu.txt"), pins("gpu.txt")
    assert cpu["torch"].endswith("+cpu") and not gpu["torch"].endswith("+cpu")
    assert not any(n.startswith("nvidia-") for n in cpu)
    assert {n: v for n, v in gpu.items() if n in cpu and n != "torch"} == {n: v for n, v in cpu.items() if n != "torch"}


def test_the_installed_packages_are_the_locked_versions():
    locked = pins("cpu.txt" if torch.__version__.endswith("+cpu") else "gpu.txt")
    wrong = {}
    for name, pinned in locked.items():
        try:
            installed = version(name)
        except PackageNotFoundError:  # an extra this environment did not install
            continue
        if installed != pinned:
            wrong[name] = f"{installed} installed, {pinned} locked"
    assert not wrong, f"the environment is not the lock (make install re-installs from it): {wrong}"
