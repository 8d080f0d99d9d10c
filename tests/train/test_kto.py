"""KTO stage: typed config, and one real tiny run on Ray Train + ZeRO-3 with 2 gloo workers.

The run is what a feedback round does: it continues an adapter (the stand-in SFT adapter, reference =
that adapter's policy) on every sample judgement, loses a worker after its step-3 checkpoint and
resumes from it; the tests read its artefacts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medgo.config import ConfigError, build_config, load_config
from medgo.train.checkpoint import CHECKPOINT_PREFIX
from medgo.train.config import QWEN2_LORA_TARGETS
from medgo.train.kto import run
from medgo.train.kto_config import KTOConfig
from medgo.train.kto_data import load_rows

from conftest import answer_logps, load_adapter

STEPS, EVERY, FAIL = 6, 3, 4


# ----------------------------------------------------------------------------- config


def test_unknown_and_bad_keys_are_rejected_by_name():
    with pytest.raises(ConfigError, match=r"unknown key 'train\.desirable_wieght'"):
        build_config(KTOConfig, {"train": {"desirable_wieght": 1.0}})
    with pytest.raises(ConfigError, match=r"key 'train\.loss_type'"):
        build_config(KTOConfig, {"train": {"loss_type": "sigmoid"}})
    with pytest.raises(ConfigError, match="per_device_train_batch_size must be at least 2"):
        load_config(KTOConfig, "jobs/configs/kto/tiny.yaml", ["train.per_device_train_batch_size=1"])
    assert load_config(KTOConfig, "jobs/configs/kto/tiny.yaml", ["train.per_device_train_batch_size=1", "train.loss_type=apo_zero_unpaired"])


def test_the_72b_config_carries_the_intended_settings():
    cfg = load_config(KTOConfig, "jobs/configs/kto/qwen2_72b.yaml")
    assert cfg.ray.num_workers == 64 and cfg.ray.use_gpu and cfg.ray.gpus_per_worker == 1
    assert cfg.model.dtype == "bfloat16" and cfg.model.attn_implementation == "flash_attention_2"
    assert cfg.deepspeed.zero_stage == 3 and cfg.train.beta == 0.1 and cfg.train.loss_type == "kto"
    assert (cfg.lora.r, cfg.lora.lora_alpha, cfg.lora.lora_dropout) == (16, 8, 0.05) and cfg.lora.target_modules == QWEN2_LORA_TARGETS
    assert cfg.model.adapter and cfg.data.feedback and cfg.train.per_device_train_batch_size >= 2


def test_bad_inputs_stop_the_run_before_any_worker_starts(tmp_path):
    base = [f"output_dir={tmp_path}"]
    with pytest.raises(ConfigError, match="model.adapter: .*no-adapter"):
        run(load_config(KTOConfig, "jobs/configs/kto/tiny.yaml", [*base, f"model.adapter={tmp_path / 'no-adapter'}"]))
    with pytest.raises(ConfigError, match="missing.jsonl"):
        run(load_config(KTOConfig, "jobs/configs/kto/tiny.yaml", [*base, f"data.feedback={tmp_path / 'missing.jsonl'}"]))
    with pytest.raises(ConfigError, match="no KTO rows"):  # every prompt fills 16 tokens
        run(load_config(KTOConfig, "jobs/configs/kto/tiny.yaml", [*base, "train.max_length=16"]))
    summary = json.loads((tmp_path / "kto" / "tiny" / "data" / "summary.json").read_text(encoding="utf-8"))
    assert summary["rows"] == 0 and summary["skipped"]["prompt_too_long"] == 168 and summary["judgements"]["kto"] == 0


# ----------------------------------------------------------------------------- end to end on Ray Train


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def kto_run(ray_session, tiny_base_dir, sft_adapter, tmp_path_factory):
    before = digest(tiny_base_dir)
    overrides = [f"output_dir={tmp_path_factory.mktemp('kto')}", "run_name=t", f"model.base_model={tiny_base_dir}", f"model.adapter={sft_adapter}",
                 "train.per_device_train_batch_size=4", "train.desirable_weight=1.0", "train.warmup_steps=0",
                 f"train.max_steps={STEPS}", f"train.save_steps={EVERY}", f"debug.fail_at_step={FAIL}"]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
        result = run(load_config(KTOConfig, "jobs/configs/kto/tiny.yaml", overrides))
    return result, before


def test_kto_starts_at_the_adapters_policy_and_its_loss_falls(kto_run, sft_adapter):
    result, _ = kto_run
    rows = result.metrics
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert {"loss", "lr", "kl", "rewards/chosen", "rewards/rejected", "rewards/margins"} <= set(rows[0])
    first = rows[0]  # policy = the continued adapter = reference before the first update
    assert result.reference == f"adapter {sft_adapter.resolve()}"
    assert first["kl"] == 0 and first["rewards/chosen"] == 0 and first["rewards/rejected"] == 0 and abs(first["loss"] - 0.5) < 1e-4
    losses = [r["loss"] for r in rows]
    assert sum(losses[-3:]) / 3 < 0.5 - 0.02, losses
    assert sum(r["rewards/margins"] for r in rows[-3:]) / 3 > 0.1
    for name in ("config.yaml", "data/rows.parquet", "data/summary.json", "data/skipped.jsonl", "metrics.jsonl", "loss_curve.png", "rewards_curve.png"):
        assert (result.run_dir / name).is_file(), name
    assert result.rows == result.data["rows"] == 168 and result.data["judgements"]["kto"] == result.data["judgements"]["judgements"] == 64


def test_worker_failure_resumes_from_the_last_reported_checkpoint(kto_run):
    result, _ = kto_run
    assert (result.run_dir / f".fault-injected-step-{FAIL}").exists()
    assert result.start_step == EVERY and result.steps == STEPS and result.adapter_dir is not None
    saved = sorted(p.name for p in result.run_dir.glob(f"{CHECKPOINT_PREFIX}*"))
    assert saved[-1] == f"{CHECKPOINT_PREFIX}{STEPS:08d}"


def test_the_adapter_is_the_continued_one_trained_and_the_base_is_unchanged(kto_run, tiny_base_dir, sft_adapter):
    result, before = kto_run
    assert digest(tiny_base_dir) == before
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == 8 and set(config["target_modules"]) == {"q_proj", "v_proj"}  # the continued adapter's shape
    assert Path(config["base_model_name_or_path"]).resolve() == result.base_dir.resolve() == tiny_base_dir.resolve()
    start, trained = load_file(sft_adapter / "adapter_model.safetensors"), load_file(result.adapter_dir / "adapter_model.safetensors")
    assert start.keys() == trained.keys() and all(not torch.equal(start[k], trained[k]) for k in start if "lora_B" in k)
    assert not (result.adapter_dir / "ref").exists()


def test_plain_peft_loads_the_adapter_and_it_prefers_the_desirable_rows(kto_run, sft_adapter, tokenizer):
    """Implicit reward = log-ratio of the trained adapter to the one it continued; desirable rows must gain more."""
    result, _ = kto_run
    rows = list(load_rows(result.run_dir / "data" / "rows.parquet", seed=0))
    prompts, completions = [r["prompt"] for r in rows], [r["completion"] for r in rows]
    reward = answer_logps(load_adapter(result.adapter_dir), tokenizer, prompts, completions)
    reward -= answer_logps(load_adapter(sft_adapter), tokenizer, prompts, completions)
    labels = torch.tensor([r["label"] for r in rows])
    assert float(reward[labels].mean()) > float(reward[~labels].mean()), (float(reward[labels].mean()), float(reward[~labels].mean()))
