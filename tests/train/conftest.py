"""Fixtures for the training tests: the sample corpus packed into the corpus stage's shard layout."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medgo.assets import iter_sample_corpus
from medgo.model.tokenizer import tokenizer_fingerprint

BLOCK_SIZE = 64


def _blocks(ids: list[int], block_size: int) -> list[list[int]]:
    return [ids[i : i + block_size] for i in range(0, len(ids), block_size)]


def pack_corpus(tokenizer, out: Path, texts, block_size: int = BLOCK_SIZE, validation_fraction: float = 0.02) -> Path:
    """Tokenize, append <|endoftext|>, route documents to validation by text hash, pack into blocks."""
    streams: dict[str, list[int]] = {"train": [], "validation": []}
    for text in texts:
        bucket = int(hashlib.sha256(text.strip().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        split = "validation" if bucket < validation_fraction else "train"
        streams[split] += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(streams["validation"]) < block_size:  # at least one validation block
        streams["validation"] += streams["train"][-block_size:]
        streams["train"] = streams["train"][:-block_size]
    splits = {}
    for split, ids in streams.items():
        blocks = _blocks(ids, block_size)
        path = out / "shards" / split / "part-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"input_ids": pa.array(blocks, type=pa.list_(pa.int32()))}), path)
        splits[split] = {"shards": [str(path.relative_to(out))], "blocks": len(blocks), "tokens": len(ids)}
    manifest = {
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "tokenizer": "tiny",
        "block_size": block_size,
        "splits": splits,
        "content_hash": hashlib.sha256(repr(splits).encode()).hexdigest()[:16],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def packed_corpus(tmp_path_factory, tokenizer) -> Path:
    texts = list(iter_sample_corpus())
    assert sum(map(len, texts)) > 20_000, "the embedded sample corpus is missing or tiny"
    return pack_corpus(tokenizer, tmp_path_factory.mktemp("corpus"), texts)


@pytest.fixture(scope="session")
def reference_job(packed_corpus, tmp_path_factory):
    """Starts the uninterrupted reference run on a two-node cluster in a separate process (it runs
    while the session's own runs go on); ``reference`` waits for it."""
    out = tmp_path_factory.mktemp("reference")
    script = Path(__file__).with_name("pretrain_runs.py")
    env = {**os.environ, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
    proc = subprocess.Popen([sys.executable, str(script), str(packed_corpus), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    yield proc, out
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="session")
def reference(reference_job) -> dict:
    """The uninterrupted run every resumed or restored run must reproduce, made on a two-node cluster."""
    proc, out = reference_job
    stdout, stderr = proc.communicate(timeout=600)
    lines = [line for line in stdout.splitlines() if line.startswith("REFERENCE_RUN ")]
    assert proc.returncode == 0 and lines, stdout[-3000:] + stderr[-3000:]
    report = json.loads(lines[-1][len("REFERENCE_RUN "):])
    report["root"] = str(out)
    return report
