"""`medgo plan`: Qwen2-72B's figures, checked against transformers' model and DeepSpeed's ZeRO-3 estimator."""

from __future__ import annotations

import json

import pytest
import torch
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs, model_to_params
from transformers import Qwen2Config, Qwen2ForCausalLM

from medgo.cli import main
from medgo.config import ConfigError, load_config
from medgo.plan import GiB, PlanConfig, architecture, make_plan
from medgo.train.pretrain_config import PretrainConfig

YAML = "jobs/configs/plan/qwen2_72b.yaml"
PRETRAIN = "jobs/configs/pretrain/qwen2_72b.yaml"


def pretrain(*overrides: str) -> PretrainConfig:
    return load_config(PretrainConfig, PRETRAIN, list(overrides))


@pytest.fixture(scope="module")
def cfg() -> PlanConfig:
    return load_config(PlanConfig, YAML)


@pytest.fixture(scope="module")
def meta_72b(cfg):
    a = architecture(cfg.architecture)
    config = Qwen2Config(
        num_hidden_layers=a.layers, hidden_size=a.hidden, intermediate_size=a.intermediate, num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads, vocab_size=a.vocab, tie_word_embeddings=a.tie_embeddings,
    )
    with torch.device("meta"):
        return Qwen2ForCausalLM(config)


def test_parameter_counts_match_the_real_architecture(cfg, meta_72b):
    plan = make_plan(cfg)
    assert plan.total_params == sum(p.numel() for p in meta_72b.parameters())
    assert 72.0e9 < plan.total_params < 73.0e9
    _, largest = model_to_params(meta_72b)  # its total dedups by data_ptr, which meta tensors lack
    assert plan.largest_layer_params == largest == 152064 * 8192


def test_model_states_equal_deepspeeds_zero3_estimate(cfg):
    plan = make_plan(cfg)
    _, gpu_bytes, largest_bytes = estimate_zero3_model_states_mem_needs(
        plan.total_params, plan.largest_layer_params, num_gpus_per_node=8, num_nodes=8,
        cpu_offload=False, cpu_offload_params=False, zero_init=True,
    )
    assert plan.gathered_layer_bytes == largest_bytes
    assert plan.model_states_bytes == pytest.approx(gpu_bytes, abs=1)
    assert plan.params_bytes + plan.grads_bytes + plan.optimizer_bytes == pytest.approx(18 * plan.total_params / 64)


def test_72b_on_64_a100s_fits_and_takes_days(cfg):
    plan = make_plan(cfg)
    assert plan.fits and plan.total_bytes < 80 * GiB
    # hand check: 6 x matmul weights + 12 x L x h x s per token, times 14B tokens
    a = architecture(cfg.architecture)
    kv = a.hidden // a.heads * a.kv_heads
    per_layer = 2 * a.hidden * a.hidden + 2 * a.hidden * kv + 3 * a.hidden * a.intermediate + a.hidden + 2 * kv
    fpt = 6 * (a.layers * per_layer + a.vocab * a.hidden) + 12 * a.layers * a.hidden * 4096
    assert plan.flops_per_token == fpt
    assert plan.wall_clock_s == pytest.approx(fpt * 14e9 / (64 * 312e12 * 0.40))
    assert 5 * 86400 < plan.wall_clock_s < 15 * 86400
    assert plan.tokens_per_step == 64 * 4 * 4096


def test_without_checkpointing_or_flash_attention_it_does_not_fit(cfg):
    off = pretrain("train.activation_checkpointing=false", "model.attn_implementation=eager")
    plan, base = make_plan(cfg, off), make_plan(cfg)
    assert not plan.fits and plan.activations_bytes > 20 * base.activations_bytes
    bigger = make_plan(cfg, pretrain("train.per_device_train_batch_size=2"))
    assert bigger.activations_bytes == pytest.approx(2 * base.activations_bytes)
    one_node = make_plan(cfg, pretrain("ray.num_workers=8"))
    assert one_node.model_states_bytes == pytest.approx(18 * base.total_params / 8 + 4 * base.largest_layer_params)
    assert not one_node.fits


def test_cli_prints_and_writes_the_plan(tmp_path, capsys):
    assert main(["plan", "--config", YAML, "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "64 GPUs" in out and "FITS" in out and "days" in out
    saved = json.loads((tmp_path / "plan" / "qwen2_72b" / "plan.json").read_text())
    assert saved["plan"]["fits"] is True and saved["plan"]["shape"]["tokens"] == 14e9 and saved["config"]["pretrain"] == PRETRAIN
    with pytest.raises(ValueError, match="cluster.peak_flops"):
        make_plan(load_config(PlanConfig, YAML, ["cluster.gpu=T4"]))


def test_presets_and_a_config_json_are_read_and_old_keys_named(cfg, tmp_path):
    small = make_plan(load_config(PlanConfig, YAML, ["architecture=qwen2_7b"]))
    assert 7.0e9 < small.total_params < 8.0e9  # Qwen2-7B: 7.6 B parameters
    config_json = tmp_path / "config.json"
    config_json.write_text(json.dumps({"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                                       "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}))  # fmt: skip
    tiny = make_plan(load_config(PlanConfig, YAML, [f"architecture={config_json}"]))
    assert tiny.total_params == make_plan(load_config(PlanConfig, YAML, ["architecture=qwen2_0_5b"])).total_params
    with pytest.raises(ConfigError, match="no such preset"):
        make_plan(load_config(PlanConfig, YAML, ["architecture=qwen9"]))
    with pytest.raises(ConfigError, match=r"key 'training\.micro_batch_size' is now 'pretrain's train\.per_device_train_batch_size'"):
        load_config(PlanConfig, YAML, ["training.micro_batch_size=2"])
    with pytest.raises(ConfigError, match="ZeRO-3 without offload"):
        make_plan(cfg, pretrain("deepspeed.zero_stage=2"))
