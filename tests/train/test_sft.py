"""LoRA SFT of the tiny model with 2 ZeRO-3 workers under Ray Train, and the SFT data path.

One Ray run (module fixture) loses a worker after its step-3 checkpoint and resumes from it; the
tests read its artefacts: metrics, adapter, merged model, Parquet data.  The base model is a
saved tiny model directory, so the run takes the production path (``from_pretrained`` under
ZeRO-3); its files are hashed before and after.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from medgo.config import ConfigError, ModelConfig, load_config
from medgo.model.loading import load_model_and_tokenizer
from medgo.train.base_model import materialise_base, write_model_dir
from medgo.train.checkpoint import CHECKPOINT_PREFIX
from medgo.train.metrics import read_metrics
from medgo.train.sft import run
from medgo.train.sft_config import SFTConfig

STEPS, EVERY, FAIL = 8, 3, 4


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    model, tokenizer = load_model_and_tokenizer(ModelConfig(base_model="tiny"))
    return write_model_dir(model, tokenizer, tmp_path_factory.mktemp("base") / "tiny")


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def sft_run(ray_session, base_dir, tmp_path_factory):
    before = digest(base_dir)
    overrides = [
        f"model.base_model={base_dir}", f"output_dir={tmp_path_factory.mktemp('runs')}", "run_name=t",
        "data.sources.0.max_samples=24", "data.sources.1.max_samples=24", "data.sources.4.max_samples=16",
        f"train.max_steps={STEPS}", f"train.save_steps={EVERY}", f"debug.fail_at_step={FAIL}", "export.merged=true",
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
        result = run(load_config(SFTConfig, "jobs/configs/sft/tiny.yaml", overrides))
    return result, before


def test_loss_fell_and_every_step_was_logged_once(sft_run):
    result, _ = sft_run
    rows = read_metrics(result.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert {"loss", "lr", "grad_norm", "epoch"} <= set(rows[0])
    losses = [r["loss"] for r in rows]
    # the seeded tiny model starts near ln(vocab) = 9.01; LoRA moves it towards the data's token statistics
    assert sum(losses[-3:]) / 3 < losses[0] - 0.03, losses
    assert (result.run_dir / "loss_curve.png").stat().st_size > 1000


def test_worker_failure_resumes_from_the_last_reported_checkpoint(sft_run):
    result, _ = sft_run
    assert (result.run_dir / f".fault-injected-step-{FAIL}").exists()
    assert result.start_step == EVERY and result.steps == STEPS
    saved = sorted(p.name for p in result.run_dir.glob(f"{CHECKPOINT_PREFIX}*"))
    assert saved[-1] == f"{CHECKPOINT_PREFIX}{STEPS:08d}"
    assert (result.run_dir / saved[-1] / "checkpoint" / "trainer_state.json").is_file()


def test_base_weights_unchanged_and_lora_weights_trained(sft_run, base_dir):
    result, before = sft_run
    assert digest(base_dir) == before
    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    b_norms = [v.norm().item() for k, v in adapter.items() if "lora_B" in k]
    assert len(b_norms) == 2 * 7 and all(n > 0 for n in b_norms), "lora_B starts at zero; every one must have moved"
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(result.adapter_dir))
    original = load_file(str(base_dir / "model.safetensors"))
    q = peft_model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert torch.equal(q, original["model.layers.0.self_attn.q_proj.weight"])


def test_adapter_loads_with_plain_peft_and_generates(sft_run, base_dir):
    result, _ = sft_run
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == base_dir and config["r"] == 16
    tokenizer = AutoTokenizer.from_pretrained(result.adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"]), str(result.adapter_dir))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "高血压的诊断标准是什么？"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 5
    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    with torch.no_grad():
        assert torch.allclose(merged(out).logits, model(out).logits, atol=1e-4)


def test_data_written_as_parquet_with_counts(sft_run):
    result, _ = sft_run
    table = pq.read_table(result.run_dir / "data" / "train.parquet")
    assert table.num_rows == result.data.records
    counts = json.loads((result.run_dir / "data" / "counts.json").read_text())["sources"]
    assert counts["consultations"]["train"] == 24 and counts["KUAKE-QIC"]["train"] > 0
    first = table.slice(0, 1).to_pylist()[0]["messages"]
    assert first[0]["role"] == "user" and first[-1]["role"] == "assistant"
    assert (result.run_dir / "config.yaml").is_file()


# ----------------------------------------------------------------------------- configs


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigError, match=r"unknown key 'lora\.rnak'"):
        load_config(SFTConfig, None, ["lora.rnak=8"])
    with pytest.raises(ConfigError, match=r"unknown key 'data\.sources\.0\.fromat'"):
        load_config(SFTConfig, "jobs/configs/sft/tiny.yaml", ["data.sources.0.fromat=qa"])
    with pytest.raises(ConfigError, match="'task' is required"):
        load_config(SFTConfig, "jobs/configs/sft/tiny.yaml", ["data.sources.0.format=cblue"])
    with pytest.raises(ConfigError, match="two sources are named qa"):
        load_config(SFTConfig, "jobs/configs/sft/tiny.yaml", ["data.sources.0.path=medgo://assets/sft/qa.jsonl"])
    with pytest.raises(ConfigError, match="no adapter to merge"):
        load_config(SFTConfig, "jobs/configs/sft/tiny.yaml", ["lora=null", "export.merged=true"])
    assert load_config(SFTConfig, "jobs/configs/sft/tiny.yaml", ["lora=null"]).lora is None


def test_72b_config_carries_the_paper_hyper_parameters():
    cfg = load_config(SFTConfig, "jobs/configs/sft/qwen2_72b.yaml")
    assert (cfg.lora.r, cfg.lora.lora_alpha, cfg.lora.lora_dropout) == (16, 8, 0.05)
    assert set(cfg.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    t = cfg.train
    assert (t.num_train_epochs, t.learning_rate, t.lr_scheduler_type, t.warmup_steps, t.gradient_accumulation_steps) == (2, 2e-5, "cosine", 0.01, 4)
    assert cfg.ray.num_workers == 64 and cfg.ray.use_gpu and cfg.deepspeed.zero_stage == 3
    assert cfg.model.dtype == "bfloat16" and cfg.model.attn_implementation == "flash_attention_2"
    assert SFTConfig().lora == cfg.lora and SFTConfig().train.learning_rate == 2e-5  # the defaults are the paper's


def test_tiny_base_is_saved_for_the_adapter_to_point_at(tmp_path):
    base = materialise_base(ModelConfig(base_model="tiny"), tmp_path)
    assert base.base_model == str(tmp_path / "base")
    assert (tmp_path / "base" / "config.json").is_file() and (tmp_path / "base" / "tokenizer.json").is_file()
