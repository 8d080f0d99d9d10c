"""Fixtures for the training tests: the sample corpus packed into the corpus stage's shard layout, a tiny base
model directory with a stand-in SFT adapter, and helpers that score answers with an adapter plain peft loads."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from medgo.assets import iter_sample_corpus
from medgo.model.tokenizer import tokenizer_fingerprint

BLOCK_SIZE = 64


class FakeShard:
    """Stands in for a Ray Train dataset shard: the same rows, in the same order, every epoch."""

    def __init__(self, rows):
        self.rows, self.epochs = rows, 0

    def iter_batches(self, batch_size, batch_format, prefetch_batches):
        assert batch_format == "numpy"
        self.epochs += 1
        for i in range(0, len(self.rows), batch_size):
            yield {"input_ids": np.array(self.rows[i : i + batch_size], dtype=object)}


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


# ----------------------------------------------------------------------------- adapters (DPO, KTO)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """The seeded tiny model saved as a model directory (what ``base_model: tiny`` trains on)."""
    from medgo.config import ModelConfig
    from medgo.model.loading import load_model_and_tokenizer
    from medgo.train.base_model import write_model_dir

    model, tokenizer = load_model_and_tokenizer(ModelConfig(base_model="tiny"))
    return write_model_dir(model, tokenizer, tmp_path_factory.mktemp("tiny-base") / "tiny")


@pytest.fixture(scope="session")
def sft_adapter(tiny_base_dir, tmp_path_factory) -> Path:
    """A stand-in SFT adapter on the tiny base: rank 8 on q/v, B randomised so its policy differs from the base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_base_dir, dtype=torch.float32)
    torch.manual_seed(0)  # A is initialised from the global generator: the same adapter whichever test builds it first
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("sft") / "adapter"
    model.save_pretrained(out)
    return out


def load_adapter(adapter_dir: Path):
    """The adapter as plain peft loads it: base from ``base_model_name_or_path``, then the adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), str(adapter_dir)).eval()


def answer_logps(model, tokenizer, prompts: list[list[dict]], answers: list[list[dict]], max_length: int = 192) -> torch.Tensor:
    """Summed log-probability of each answer's tokens after its prompt (ChatML, as TRL tokenizes it), in one batch."""
    starts, seqs = [], []
    for prompt, answer in zip(prompts, answers):
        starts.append(len(tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]))
        seqs.append(tokenizer.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"][:max_length])
    width = max(map(len, seqs))
    ids = torch.tensor([s + [tokenizer.pad_token_id] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    token_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]
    scored = torch.tensor([[start - 1 <= t < len(s) - 1 for t in range(width - 1)] for start, s in zip(starts, seqs)])
    return (token_logp * scored).sum(-1)
