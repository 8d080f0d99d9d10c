"""The launcher's parts without Ray: DeepSpeed config, block stream, metrics sinks, export writer, FLOPs, TRL's fused head on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import FakeShard
from safetensors.torch import load_file

from medgo.config import ConfigError, ModelConfig, build_config, load_config
from medgo.model import load_model
from medgo.train.checkpoint import SafetensorsWriter
from medgo.train.data import IGNORE_INDEX, BlockStream, collate_blocks
from medgo.train.deepspeed_config import deepspeed_config
from medgo.train.flops import Architecture, peak_flops
from medgo.train.metrics import MetricsSink, plot_loss_curve, read_metrics
from medgo.train.config import DeepSpeedSettings
from medgo.train.pretrain_config import PretrainConfig, PretrainArguments


def test_deepspeed_config_follows_settings():
    cfg = load_config(PretrainConfig, "jobs/configs/pretrain/tiny.yaml", ["train.gradient_accumulation_steps=3", "train.warmup_steps=7"])
    ds = deepspeed_config(cfg.deepspeed, cfg.train, world_size=2, total_steps=50, dtype=torch.float32, use_gpu=False)
    assert ds["train_batch_size"] == cfg.train.per_device_train_batch_size * 3 * 2
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"] is False
    assert ds["optimizer"]["type"] == "AdamW" and ds["optimizer"]["params"]["torch_adam"] is True
    assert ds["optimizer"]["params"]["lr"] == cfg.train.learning_rate and ds["gradient_clipping"] == cfg.train.max_grad_norm
    sched = ds["scheduler"]["params"]
    assert ds["scheduler"]["type"] == "WarmupCosineLR" and sched["warmup_num_steps"] == 7 and sched["total_num_steps"] == 50
    gpu = deepspeed_config(cfg.deepspeed, cfg.train, world_size=64, total_steps=50, dtype=torch.bfloat16, use_gpu=True)
    assert gpu["bf16"]["enabled"] is True and "torch_adam" not in gpu["optimizer"]["params"]


def test_the_72b_config_asks_for_what_the_paper_used():
    cfg = load_config(PretrainConfig, "jobs/configs/pretrain/qwen2_72b.yaml")
    assert cfg.ray.num_workers == 64 and cfg.ray.use_gpu and cfg.deepspeed.zero_stage == 3
    assert cfg.model.dtype == "bfloat16" and cfg.model.attn_implementation == "flash_attention_2"
    assert cfg.train.activation_checkpointing


def test_settings_reject_impossible_values():
    with pytest.raises(ConfigError, match="offload_params needs zero_stage 3"):
        build_config(PretrainConfig, {"deepspeed": {"zero_stage": 2, "offload_params": True}})
    with pytest.raises(ConfigError, match=r"key 'deepspeed\.zero_stage'"):
        build_config(PretrainConfig, {"deepspeed": {"zero_stage": 4}})
    with pytest.raises(ConfigError, match=r"key 'train\.adam_beta2'"):
        build_config(PretrainConfig, {"train": {"adam_beta2": 1.5}})
    with pytest.raises(ConfigError, match=r"unknown key 'train\.micro_batch'"):
        build_config(PretrainConfig, {"train": {"micro_batch": 2}})
    with pytest.raises(ConfigError, match=r"key 'train\.lr_scheduler_type'"):
        build_config(PretrainConfig, {"train": {"lr_scheduler_type": "cosine_with_restarts"}})  # DeepSpeed runs three schedules
    with pytest.raises(ConfigError, match="whole number of steps"):
        build_config(PretrainConfig, {"train": {"warmup_steps": 2.5}})
    assert PretrainArguments(warmup_steps=0.1).warmup_for(45) == 5 and DeepSpeedSettings().zero_stage == 3


def test_collate_pads_a_short_last_block():
    batch = collate_blocks({"input_ids": np.array([np.arange(4), np.arange(2)], dtype=object)}, pad_id=0)
    assert batch["input_ids"].tolist() == [[0, 1, 2, 3], [0, 1, 0, 0]]
    assert batch["labels"].tolist() == [[0, 1, 2, 3], [0, 1, IGNORE_INDEX, IGNORE_INDEX]]


def test_block_stream_resumes_at_the_next_unseen_block():
    rows = [np.full(3, i) for i in range(10)]  # 10 blocks, micro-batch 2: 5 batches per epoch
    first = BlockStream(FakeShard(rows), micro_batch_size=2, pad_id=0)
    seen = [next(first)["input_ids"][:, 0].tolist() for _ in range(7)]
    assert seen[:5] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]] and seen[5:] == [[0, 1], [2, 3]]
    assert first.position() == (1, 4)
    resumed = BlockStream(FakeShard(rows), micro_batch_size=2, pad_id=0, epoch=0, consumed=6)
    assert [next(resumed)["input_ids"][:, 0].tolist() for _ in range(4)] == seen[3:7]
    assert resumed.position() == (1, 4) and resumed.first_digest == first.first_digest


def test_block_stream_shuffles_each_epoch_within_windows_and_resumes_in_the_same_order():
    rows = [np.full(3, i) for i in range(12)]  # micro-batch 2, windows of 6 blocks: 6 batches per epoch
    stream = BlockStream(FakeShard(rows), micro_batch_size=2, pad_id=0, shuffle_window=6, seed=3)
    epochs = [[b for _ in range(6) for b in next(stream)["input_ids"][:, 0].tolist()] for _ in range(2)]
    for order in epochs:
        assert sorted(order[:6]) == list(range(6)) and sorted(order[6:]) == list(range(6, 12))  # each window whole, in place
    assert epochs[0] != list(range(12)) and epochs[1] != epochs[0]  # shuffled, differently each epoch
    resumed = BlockStream(FakeShard(rows), micro_batch_size=2, pad_id=0, epoch=1, consumed=4, shuffle_window=6, seed=3)
    assert [b for _ in range(4) for b in next(resumed)["input_ids"][:, 0].tolist()] == epochs[1][4:]
    again = BlockStream(FakeShard(rows), micro_batch_size=2, pad_id=0, shuffle_window=6, seed=3)
    assert [b for _ in range(6) for b in next(again)["input_ids"][:, 0].tolist()] == epochs[0]


def test_metrics_sink_drops_steps_after_the_restored_checkpoint(tmp_path):
    sink = MetricsSink(tmp_path, "pretrain", "t", start_step=0, tensorboard=True, ray_metrics=False)
    for step in range(1, 6):
        sink.log(step, {"loss": 10.0 - step, "lr": 0.1})
    sink.close()
    resumed = MetricsSink(tmp_path, "pretrain", "t", start_step=3, tensorboard=True, ray_metrics=False)
    resumed.log(4, {"loss": 5.5, "eval_loss": 5.0})
    resumed.close()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["loss"] == 5.5
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    png = plot_loss_curve(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shard_writer_splits_and_indexes(tmp_path):
    tensors = {f"w{i}": torch.full((256,), float(i)) for i in range(5)}  # 1 KiB each
    writer = SafetensorsWriter(tmp_path, max_bytes=2048)
    for name, t in tensors.items():
        writer.add(name, t)
    files = writer.close()
    assert [f.name for f in files] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 5 * 1024 and set(index["weight_map"]) == set(tensors)
    loaded = {k: v for f in files for k, v in load_file(str(f)).items()}
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def test_parameter_count_matches_the_model_and_deepspeed(tokenizer):
    from deepspeed.runtime.zero.stage3 import model_to_params

    model = load_model(ModelConfig(), tokenizer)
    arch = Architecture.from_hf(model.config)
    total, largest = model_to_params(model)
    assert arch.total_params() == total == sum(p.numel() for p in model.parameters())
    assert arch.largest_module_params() == largest
    # tied head: the embedding matrix is multiplied once (as the head); norms are not matmuls
    matmuls = total - arch.hidden - 2 * arch.hidden * arch.layers
    assert arch.train_flops_per_token(64) == 6 * matmuls + 12 * arch.layers * arch.hidden * 64


def test_peak_flops_lookup():
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12 and peak_flops(None) is None and peak_flops(None, 5e11) == 5e11


class _FakeEngine:
    def __init__(self):
        self.loaded = None

    def load_checkpoint(self, directory, tag=None):
        self.loaded = json.loads((__import__("pathlib").Path(directory) / "train_state.json").read_text())["step"]
        return directory, {}


def _checkpoint(root, step, ranks):
    from medgo.train.checkpoint import CHECKPOINT_PREFIX, TrainState, mark_complete

    d = root / f"{CHECKPOINT_PREFIX}{step:08d}"
    d.mkdir(parents=True)
    TrainState(step=step, world_size=2).write(d)
    for rank in ranks:
        mark_complete(str(root), d.name, rank)
    return d


def test_restore_prefers_a_newer_complete_checkpoint_than_the_one_ray_registered(tmp_path, monkeypatch):
    """A worker that dies right after a report takes it with it; storage still has every rank's files."""
    import ray.train

    from medgo.train.checkpoint import newest_complete_checkpoint, restore

    registered = _checkpoint(tmp_path, 12, [0, 1])
    _checkpoint(tmp_path, 16, [0, 1])
    _checkpoint(tmp_path, 20, [0])  # rank 1 died before its upload returned
    assert newest_complete_checkpoint(str(tmp_path), world_size=2).endswith("checkpoint_step_00000016")
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: ray.train.Checkpoint.from_directory(str(registered)))
    engine = _FakeEngine()
    assert restore(engine, str(tmp_path), rank=0, world_size=2).step == 16 and engine.loaded == 16

    newer = _checkpoint(tmp_path / "other", 24, [0])  # Ray registered it, but a marker is missing
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: ray.train.Checkpoint.from_directory(str(newer)))
    assert restore(_FakeEngine(), str(tmp_path), rank=0, world_size=2).step == 24

    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: None)
    assert restore(_FakeEngine(), str(tmp_path / "elsewhere"), rank=0, world_size=2) is None


def test_a_marker_can_come_before_the_checkpoint_directory(tmp_path):
    """A rank that reported no files may return from ``report`` before the others' uploads."""
    from medgo.train.checkpoint import mark_complete, newest_complete_checkpoint

    mark_complete(str(tmp_path), "checkpoint_step_00000003", 1)
    assert newest_complete_checkpoint(str(tmp_path), world_size=2) is None
    mark_complete(str(tmp_path), "checkpoint_step_00000003", 0)
    assert newest_complete_checkpoint(str(tmp_path), world_size=2) == f"{tmp_path}/checkpoint_step_00000003"


def test_the_fused_head_scores_only_labelled_positions_on_the_cpu_with_the_same_numbers(monkeypatch):
    import trl.trainer.utils as trl_utils
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from medgo.train.trl_stage import score_labelled_positions_only

    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)  # undone after the test
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    input_ids = torch.randint(0, 300, (2, 12))
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[0, 8:], labels[1, 5:9] = input_ids[0, 8:], input_ids[1, 5:9]  # a long prompt, a short answer; padding after row 1's
    rows_projected = []
    function = trl_utils._ChunkedLogProbFunction

    class Counted:
        @staticmethod
        def apply(hidden, *args):
            rows_projected.append(hidden.shape[0])
            return function.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counted)

    model = Qwen2ForCausalLM(config).eval()
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits[:, :-1]
        every = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
        assert score_labelled_positions_only() and score_labelled_positions_only()  # idempotent
        compact = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    assert rows_projected == [2 * 11, 4 + 4]  # every position, then the labelled ones only
    mask = labels[:, 1:] != IGNORE_INDEX
    want = torch.log_softmax(logits, -1).gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    for out in (every, compact):
        torch.testing.assert_close(out.log_probs, want, rtol=1e-5, atol=1e-5)
        assert torch.equal(out.is_top1.bool(), (logits.argmax(-1) == labels[:, 1:]) & mask)
    torch.testing.assert_close(compact.loss, every.loss)
    torch.testing.assert_close(compact.entropy, every.entropy)
