"""Opening a built corpus for training: the manifest and the packed shards as a Ray Dataset.

    from medgo.corpus.dataset import open_shards
    train = open_shards("runs/corpus/tiny", "train", expected_fingerprint=tokenizer_fingerprint(tok))
    TorchTrainer(..., datasets={"train": train})

Rows are packed blocks (column ``input_ids``: ``list<int32>``), read in shard order.  Shards made
with another tokenizer are refused: their token ids would mean different text to the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import ray

from medgo.corpus.config import resolve_path


class ShardMismatchError(ValueError):
    """The corpus was tokenized with a different tokenizer than the model's."""


def read_manifest(path: str | Path) -> dict:
    """The ``manifest.json`` of a corpus directory (FileNotFoundError naming the path)."""
    root = resolve_path(str(path))
    if not root.is_dir():
        raise FileNotFoundError(f"corpus directory not found: {root}")
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"not a built corpus (no manifest.json): {root}")
    return json.loads(manifest.read_text(encoding="utf-8"))


def shard_paths(path: str | Path, split: str = "train") -> list[str]:
    """Absolute paths of a split's shards, in manifest order (ValueError for an unknown split)."""
    manifest = read_manifest(path)
    if split not in manifest["splits"]:
        raise ValueError(f"corpus {path} has no split {split!r}; it has {sorted(manifest['splits'])}")
    root = resolve_path(str(path)).resolve()
    paths = [root / p for p in manifest["splits"][split]["shards"]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"corpus {root} lists shards that are missing: {missing}")
    return [str(p) for p in paths]


def check_fingerprint(manifest: dict, expected: str | None, path) -> None:
    if expected is not None and manifest["tokenizer_fingerprint"] != expected:
        raise ShardMismatchError(
            f"corpus {path} was tokenized with tokenizer fingerprint {manifest['tokenizer_fingerprint']} "
            f"({manifest.get('tokenizer')}), but the model's tokenizer has fingerprint {expected}; rebuild the corpus "
            "with the model's tokenizer"
        )


def open_shards(path: str | Path, split: str = "train", expected_fingerprint: str | None = None) -> ray.data.Dataset:
    """A split's packed blocks as a Ray Dataset in a deterministic order."""
    manifest = read_manifest(path)
    check_fingerprint(manifest, expected_fingerprint, path)
    paths = shard_paths(path, split)
    if not paths:
        raise ValueError(f"corpus {path}: split {split!r} has no shards (0 tokens)")
    ds = ray.data.read_parquet(paths, columns=["input_ids"], shuffle=None)
    ds.context.execution_options.preserve_order = True  # this dataset only
    return ds
