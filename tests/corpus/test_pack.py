"""Packing: the concatenated blocks equal the concatenated tokenized documents with separators."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medgo.corpus.pack import ROW_GROUP_BLOCKS, ShardWriter, backend_from_json, eos_id, list_array, tokenize
from medgo.model.tokenizer import ENDOFTEXT

DOCS = [
    "高血压是以体循环动脉压升高为主要特征的临床综合征。",
    "2型糖尿病患者应规律监测血糖，HbA1c控制在7%以下。",
    "阿司匹林100mg每日一次口服。",
    "慢性阻塞性肺疾病的特征是持续存在的气流受限。",
] * 7


@pytest.fixture(scope="module")
def backend(tokenizer):
    return backend_from_json(tokenizer.backend_tokenizer.to_str())


def read_blocks(paths) -> list[list[int]]:
    return [row for p in paths for row in pq.read_table(p).column("input_ids").to_pylist()]


def test_tokenize_matches_the_hf_tokenizer(tokenizer, backend):
    eos = eos_id(tokenizer)
    assert tokenizer.convert_ids_to_tokens(eos) == ENDOFTEXT
    ids = tokenize(DOCS[:4], backend, eos)
    for doc, arr in zip(DOCS, ids):
        assert arr.dtype == np.int32
        assert arr.tolist() == tokenizer(doc, add_special_tokens=False)["input_ids"] + [eos]


@pytest.mark.parametrize("block_size", [8, 37, 4096])
def test_blocks_concatenate_to_the_documents(tmp_path, tokenizer, backend, block_size):
    eos = eos_id(tokenizer)
    ids = tokenize(DOCS, backend, eos)
    writer = ShardWriter(tmp_path, block_size, blocks_per_shard=10)
    for arr in ids:
        writer.add(arr)
    writer.close()
    blocks = read_blocks(writer.shards)
    stream = [t for arr in ids for t in arr.tolist()]
    assert [t for b in blocks for t in b] == stream
    assert all(len(b) == block_size for b in blocks[:-1]) and 0 < len(blocks[-1]) <= block_size
    assert writer.blocks == len(blocks) == -(-len(stream) // block_size)
    assert writer.tokens == len(stream)
    assert len(writer.shards) == -(-len(blocks) // 10)
    assert pq.read_schema(writer.shards[0]).field("input_ids").type == pa.list_(pa.int32())
    assert sum(t == eos for t in stream) == len(DOCS)


def test_shard_bytes_depend_only_on_the_token_stream(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 8000, rng.integers(1, 700), dtype=np.int32) for _ in range(400)]

    def write(out, chunks):
        w = ShardWriter(out, 16, blocks_per_shard=ROW_GROUP_BLOCKS + 100)
        for c in chunks:
            w.add(c)
        w.close()
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in w.shards]

    whole = write(tmp_path / "a", docs)
    rechunked = write(tmp_path / "b", np.array_split(np.concatenate(docs), 37))
    assert whole == rechunked and len(whole) >= 2


def test_empty_split_writes_nothing(tmp_path):
    w = ShardWriter(tmp_path, 8, 10)
    w.close()
    assert w.shards == [] and w.blocks == 0


def test_list_array():
    arr = list_array([np.array([1, 2], np.int32), np.empty(0, np.int32), np.array([3], np.int32)])
    assert arr.to_pylist() == [[1, 2], [], [3]] and arr.type == pa.list_(pa.int32())
