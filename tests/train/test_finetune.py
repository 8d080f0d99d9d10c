"""What the TRL stages share: LoRA config, the arguments TRL receives and the DeepSpeed dict HF fills in."""

from __future__ import annotations

import pytest
import torch

from medgo.config import ConfigError, load_config
from medgo.train.config import LoraSettings, TrainArguments
from medgo.train.deepspeed_config import deepspeed_config
from medgo.train.sft import run
from medgo.train.sft_config import SFTConfig
from medgo.train.trl_stage import check_steps, total_steps, trainer_kwargs


def test_lora_config_has_the_paper_defaults():
    cfg = LoraSettings().peft()
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, cfg.task_type) == (16, 8, 0.05, "CAUSAL_LM")
    assert cfg.target_modules == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_trainer_kwargs_pass_train_through_and_leave_deepspeed_to_hf_auto_values():
    kw = trainer_kwargs(SFTConfig(), output_dir="x", dtype=torch.bfloat16, use_gpu=True)
    assert (kw["learning_rate"], kw["lr_scheduler_type"], kw["warmup_steps"], kw["gradient_accumulation_steps"], kw["num_train_epochs"]) == (2e-5, "cosine", 0.01, 4, 2.0)
    assert kw["bf16"] and not kw["fp16"] and kw["max_steps"] == -1 and kw["save_steps"] == 50 and kw["max_length"] == 1024
    ds = kw["deepspeed"]
    assert ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    assert ds["train_batch_size"] == ds["optimizer"]["params"]["lr"] == "auto" and "torch_adam" not in ds["optimizer"]["params"]
    assert "scheduler" not in ds, "the HF trainer builds the schedule from the same train keys"
    cpu = deepspeed_config(SFTConfig().deepspeed, SFTConfig().train, dtype=torch.float32, use_gpu=False)
    assert cpu["optimizer"]["params"]["torch_adam"] is True


def test_steps_and_a_batch_the_data_cannot_fill():
    train = TrainArguments(per_device_train_batch_size=2, gradient_accumulation_steps=2, num_train_epochs=2)
    assert check_steps(40, train, 2) == 5 and total_steps(40, train, 2) == 10
    with pytest.raises(ConfigError, match="per optimizer step"):
        check_steps(4, train, 2)


def test_max_length_beyond_the_model_context_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="exceeds the model's context"):
        run(load_config(SFTConfig, None, ["train.max_length=4096", f"output_dir={tmp_path}"]))

