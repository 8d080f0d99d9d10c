"""Packed-block data for training: open the corpus stage's shards, batch them, resume mid-stream.

Layout (the corpus stage's contract): ``<corpus>/manifest.json`` and Parquet shards under
``shards/<split>/part-*.parquet``, one packed block of ``block_size`` token ids per row in the
``input_ids`` column (only a split's last block may be shorter).  The corpus stage opens them
(``medgo.corpus.dataset.open_shards``); this module checks a manifest before workers start.

Each worker streams its share of the training split in a fixed order (``preserve_order``), and a
checkpoint records how many blocks of the current epoch each worker has consumed, so a resumed run
skips exactly those and continues at the next unseen block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medgo.corpus.dataset import ShardMismatchError, open_shards, read_manifest

IGNORE_INDEX = -100
__all__ = ["BlockStream", "CorpusInfo", "ShardMismatchError", "collate_blocks", "corpus_info", "open_shards", "validation_blocks"]

@dataclass(frozen=True)
class CorpusInfo:
    """What the driver needs to know about a built corpus before it starts workers."""

    path: str
    block_size: int
    train_blocks: int
    validation_blocks: int
    fingerprint: str | None


def corpus_info(path: str | Path, expected_fingerprint: str | None = None) -> CorpusInfo:
    """Read and check a corpus manifest without Ray: keys present, shard files there, same tokenizer."""
    manifest = read_manifest(path)
    for key in ("block_size", "splits", "tokenizer_fingerprint"):
        if key not in manifest:
            raise ValueError(f"{Path(path) / 'manifest.json'}: key '{key}' missing")
    found = manifest["tokenizer_fingerprint"]
    if expected_fingerprint is not None and found != expected_fingerprint:
        raise ShardMismatchError(
            f"shards in {path} were built with tokenizer {found} but the model's tokenizer is {expected_fingerprint}: "
            "rebuild the corpus with the model's tokenizer (or point model.tokenizer at the one the corpus used)"
        )
    splits = manifest["splits"]
    if not splits.get("train", {}).get("shards"):
        raise FileNotFoundError(f"corpus {path} has no training shards")
    for split in splits.values():
        for rel in split.get("shards", []):
            if "://" not in str(path) and not (Path(path) / rel).is_file():
                raise FileNotFoundError(f"corpus {path}: shard file missing: {Path(path) / rel}")
    return CorpusInfo(
        path=str(path),
        block_size=int(manifest["block_size"]),
        train_blocks=int(splits["train"].get("blocks", 0)),
        validation_blocks=int(splits.get("validation", {}).get("blocks", 0)),
        fingerprint=found,
    )


def collate_blocks(batch: dict[str, np.ndarray], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows of token ids -> ``input_ids`` and ``labels`` (a short last block is padded, its pad ignored)."""
    rows = [np.asarray(r, dtype=np.int64) for r in batch["input_ids"]]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        labels[i, : len(r)] = r
    return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels)}


def row_digest(input_ids: torch.Tensor) -> str:
    """Short hash of one block, recorded to detect a changed data order on resume."""
    return hashlib.sha256(input_ids.numpy().astype(np.int64).tobytes()).hexdigest()[:16]


class BlockStream:
    """Endless micro-batches from a Ray Train dataset shard, epoch after epoch, resumable.

    With ``shuffle_window`` > 0 the blocks are shuffled within consecutive windows of that many
    blocks, in a new order every epoch (seeded by ``seed`` and the epoch), so a corpus packed
    source by source is not learnt one source at a time; the order is the same on every run, so
    a resumed run sees the blocks it would have seen.  ``position()`` is ``(epoch, blocks consumed
    in that epoch)``; a stream built with the same position skips that many blocks of the epoch first.
    """

    def __init__(self, shard, micro_batch_size: int, pad_id: int, epoch: int = 0, consumed: int = 0, prefetch: int = 2,
                 shuffle_window: int = 0, seed: int = 0):  # fmt: skip
        self.shard, self.micro, self.pad_id, self.prefetch = shard, micro_batch_size, pad_id, prefetch
        self.window, self.seed = shuffle_window, seed
        self.epoch, self.consumed = epoch, consumed
        self.first_digest: str | None = None
        self._it = self._open(skip=consumed)

    def _rows(self) -> Iterator[np.ndarray]:
        """This epoch's blocks in training order."""
        if not self.window:
            for batch in self.shard.iter_batches(batch_size=self.micro, batch_format="numpy", prefetch_batches=self.prefetch):
                yield from batch["input_ids"]
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        for batch in self.shard.iter_batches(batch_size=self.window, batch_format="numpy", prefetch_batches=1):
            rows = batch["input_ids"]
            yield from (rows[i] for i in rng.permutation(len(rows)))

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Micro-batches of this epoch (an incomplete last one is dropped)."""
        rows = []
        for row in self._rows():
            rows.append(row)
            if len(rows) == self.micro:
                yield collate_blocks({"input_ids": rows}, self.pad_id)
                rows = []

    def _open(self, skip: int) -> Iterator[dict]:
        it = self._batches()
        for i in range(skip // self.micro):
            batch = next(it)
            if i == 0:
                self.first_digest = row_digest(batch["input_ids"][0])
        return it

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch, self.consumed, self.first_digest = self.epoch + 1, 0, None
            self._it = self._open(skip=0)
            batch = next(self._it)  # an empty shard raises StopIteration here: a config error caught earlier
        if self.consumed == 0:
            self.first_digest = row_digest(batch["input_ids"][0])
        self.consumed += len(batch["input_ids"])
        return batch

    def position(self) -> tuple[int, int]:
        return self.epoch, self.consumed


def validation_blocks(corpus: str | Path, limit: int) -> list[np.ndarray]:
    """The first ``limit`` blocks of the validation split, read on the driver with pyarrow.

    Every worker evaluates on this same short list, so it is read once, not streamed; empty
    when the corpus has no validation split.
    """
    import pyarrow.parquet as pq

    split = read_manifest(corpus).get("splits", {}).get("validation", {})
    blocks: list[np.ndarray] = []
    for rel in split.get("shards", []):
        for batch in pq.ParquetFile(Path(corpus) / rel).iter_batches(batch_size=max(limit, 1), columns=["input_ids"]):
            blocks.extend(np.asarray(r, dtype=np.int32) for r in batch.column(0).to_pylist())
            if len(blocks) >= limit:
                return blocks[:limit]
    return blocks
