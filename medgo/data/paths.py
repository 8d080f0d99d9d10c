"""One resolver for paths in configs: ``medgo://<path>`` names a file inside the installed package.

    resolve_path("medgo://assets/sft/qa.jsonl")   # <site-packages or checkout>/medgo/assets/sft/qa.jsonl
    resolve_path("data/train.jsonl")             # relative to the working directory

So the embedded samples are found from any working directory (and in a ``ray job submit`` working
dir); every other relative path is relative to the working directory.
"""

from __future__ import annotations

import glob
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PACKAGE_PREFIX = "medgo://"


def resolve_path(path: str | Path) -> Path:
    """``medgo://x`` -> ``<medgo package>/x``; anything else as given (``~`` expanded)."""
    text = str(path)
    if text.startswith(PACKAGE_PREFIX):
        return PACKAGE_DIR / text[len(PACKAGE_PREFIX):]
    return Path(text).expanduser()


def asset_uri(*parts: str) -> str:
    """The ``medgo://`` spelling of an embedded asset, e.g. ``asset_uri("sft", "qa.jsonl")``."""
    return PACKAGE_PREFIX + "/".join(("assets", *parts))


def expand(pattern: str) -> list[Path]:
    """Files matching ``pattern`` (a path or a glob, ``**`` allowed, ``medgo://`` resolved), sorted by path."""
    path = resolve_path(pattern)
    if glob.has_magic(str(path)):
        return sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    return [path] if path.is_file() else []
