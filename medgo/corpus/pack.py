"""Tokenizing documents and packing them into fixed-length blocks written as Parquet shards.

Each document is tokenized without special tokens and followed by the end-of-text token; the
token stream of a split, in corpus order, is cut into blocks of ``block_size`` tokens (only
the split's last block may be shorter; nothing is padded).  Blocks are written in row groups
of a fixed number of blocks, so the bytes of a shard depend only on the token stream.

Shard layout: ``shards/<split>/part-<group>-<n>.parquet`` (``part-00000-000.parquet``), one row
per block, column ``input_ids`` of type ``list<int32>``.  Every packing group is packed by its own
worker into shards of its own, so only the last block of each shard may be shorter.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SHARD_SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32()))])
ROW_GROUP_BLOCKS = 1024


def load_hf_tokenizer(ref: str):
    """The Hugging Face tokenizer of ``ref`` (``tiny`` or a directory), loaded in the driver."""
    from medgo.model.tokenizer import load_tokenizer

    return load_tokenizer(None if ref == "tiny" else ref)


def eos_id(tokenizer) -> int:
    """Id of ``<|endoftext|>`` (the tokenizer's eos token when it has no such token)."""
    from medgo.model.tokenizer import ENDOFTEXT

    token_id = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    if token_id is None or token_id == tokenizer.unk_token_id:
        token_id = tokenizer.eos_token_id
    if token_id is None:
        raise ValueError(f"tokenizer has neither {ENDOFTEXT} nor an eos token to separate documents")
    return int(token_id)


@functools.lru_cache(maxsize=4)
def backend_from_json(spec: str):
    """A Rust ``tokenizers.Tokenizer`` from its JSON; workers get the JSON, not a path, so every
    node tokenizes identically without a shared filesystem (and without importing transformers)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(spec)
    backend.no_truncation()
    backend.no_padding()
    return backend


def tokenize(texts: list[str], backend, eos: int) -> list[np.ndarray]:
    """Token ids of each text (no special tokens) with the end-of-text id appended, as int32."""
    if not texts:
        return []
    encoded = backend.encode_batch(texts, add_special_tokens=False)
    return [np.append(np.asarray(e.ids, dtype=np.int32), np.int32(eos)) for e in encoded]


def list_array(arrays: list[np.ndarray]) -> pa.ListArray:
    """A list<int32> Arrow array from int32 numpy arrays, without a Python loop over tokens."""
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int32, count=len(arrays))
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32)
    values = np.concatenate(arrays).astype(np.int32) if arrays else np.empty(0, np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.int32()))


class ShardWriter:
    """Packs one split's token stream into blocks and writes ``part-NNNNN.parquet`` files."""

    def __init__(self, out_dir: Path, block_size: int, blocks_per_shard: int, prefix: str = "part"):
        self.out_dir, self.block_size, self.blocks_per_shard, self.prefix = Path(out_dir), block_size, blocks_per_shard, prefix
        self.pending: list[np.ndarray] = []
        self.pending_tokens = 0
        self.writer: pq.ParquetWriter | None = None
        self.shards: list[Path] = []
        self.shard_blocks = 0
        self.blocks = 0
        self.tokens = 0

    def add(self, ids: np.ndarray) -> None:
        self.pending.append(ids)
        self.pending_tokens += len(ids)
        self.tokens += len(ids)
        if self.pending_tokens >= self.block_size * ROW_GROUP_BLOCKS:
            self._emit(final=False)

    def close(self) -> None:
        self._emit(final=True)
        self._close_shard()

    def _close_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def digests(self) -> list[str]:
        """SHA-256 of every shard written (in shard order), for the corpus content hash."""
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in self.shards]

    def _emit(self, final: bool) -> None:
        if not self.pending:
            return
        stream = np.concatenate(self.pending)
        n_full = len(stream) // self.block_size
        take = len(stream) if final else min(n_full, ROW_GROUP_BLOCKS) * self.block_size
        self.pending = [stream[take:]] if take < len(stream) else []
        self.pending_tokens = len(stream) - take
        body = stream[:take]
        blocks = [body[i : i + self.block_size] for i in range(0, len(body), self.block_size)]
        while blocks:
            room = self.blocks_per_shard - self.shard_blocks
            self._write(blocks[:room])
            blocks = blocks[room:]
        if not final and self.pending_tokens >= self.block_size * ROW_GROUP_BLOCKS:
            self._emit(final=False)

    def _write(self, blocks: list[np.ndarray]) -> None:
        if self.writer is None or self.shard_blocks >= self.blocks_per_shard:
            self._close_shard()
            path = self.out_dir / f"{self.prefix}-{len(self.shards):03d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, SHARD_SCHEMA, compression="zstd", write_statistics=False)
            self.shards.append(path)
            self.shard_blocks = 0
        table = pa.Table.from_arrays([list_array(blocks)], schema=SHARD_SCHEMA)
        self.writer.write_table(table, row_group_size=ROW_GROUP_BLOCKS)
        self.shard_blocks += len(blocks)
        self.blocks += len(blocks)
