"""The one DeepSpeed config builder, from the ``deepspeed`` and ``train`` sections (never hand-written JSON).

    ds = deepspeed_config(cfg.deepspeed, cfg.train, dtype=torch.bfloat16, use_gpu=True,
                          world_size=64, total_steps=20_000)        # pre-training: deepspeed.initialize
    ds = deepspeed_config(cfg.deepspeed, cfg.train, dtype=torch.bfloat16, use_gpu=True)
                                                                     # TRL stages: TrainingArguments(deepspeed=ds)

Without ``world_size`` the batch sizes, clipping, AdamW hyper-parameters and precision are
Hugging Face's ``"auto"`` values: the trainer fills them from the same ``train`` keys, and builds
its own schedule.  ZeRO-3 then also gathers 16-bit weights when a model is saved, so an adapter
file is complete.
"""

from __future__ import annotations

import torch

from medgo.train.config import DeepSpeedSettings, TrainArguments

SCHEDULES = {"cosine": "WarmupCosineLR", "linear": "WarmupDecayLR", "constant_with_warmup": "WarmupLR"}
"""``train.lr_scheduler_type`` -> the DeepSpeed scheduler that runs it (pre-training)."""


def zero_section(ds: DeepSpeedSettings) -> dict:
    zero: dict = {"stage": ds.zero_stage}
    if ds.zero_stage == 0:
        return zero
    zero.update(overlap_comm=ds.overlap_comm, reduce_bucket_size=ds.reduce_bucket_size, contiguous_gradients=True)
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.zero_stage == 3:
        zero.update(
            stage3_prefetch_bucket_size=ds.stage3_prefetch_bucket_size,
            stage3_max_live_parameters=ds.stage3_max_live_parameters,
            stage3_param_persistence_threshold=10_000,
        )
        if ds.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return zero


def optimizer_section(train: TrainArguments | None, ds: DeepSpeedSettings, use_gpu: bool) -> dict:
    """AdamW; ``train=None``: Hugging Face fills the hyper-parameters."""
    if train is None:
        params: dict = {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}
    else:
        params = {"lr": train.learning_rate, "betas": [train.adam_beta1, train.adam_beta2], "eps": train.adam_epsilon, "weight_decay": train.weight_decay}
    if not use_gpu and not ds.offload_optimizer:
        params["torch_adam"] = True  # FusedAdam needs CUDA; torch's AdamW runs anywhere
    return {"type": "AdamW", "params": params}


def scheduler_section(train, total_steps: int) -> dict:
    """Linear warm-up from ``warmup_start_ratio * learning_rate``, then the decay ``lr_scheduler_type`` names."""
    kind, warmup, lr = SCHEDULES[train.lr_scheduler_type], train.warmup_for(total_steps), train.learning_rate
    if kind == "WarmupCosineLR":
        params = {"total_num_steps": total_steps, "warmup_min_ratio": train.warmup_start_ratio, "cos_min_ratio": train.min_lr_ratio}
    else:
        params = {"warmup_min_lr": train.warmup_start_ratio * lr, "warmup_max_lr": lr}
        if kind == "WarmupDecayLR":
            params["total_num_steps"] = total_steps
    return {"type": kind, "params": {**params, "warmup_num_steps": warmup, "warmup_type": "linear"}}


def deepspeed_config(
    ds: DeepSpeedSettings,
    train: TrainArguments,
    *,
    dtype: torch.dtype,
    use_gpu: bool,
    world_size: int | None = None,
    total_steps: int | None = None,
) -> dict:
    """Config for ``deepspeed.initialize`` (``world_size`` and ``total_steps`` given) or for a Hugging Face trainer."""
    explicit = world_size is not None
    auto = "auto"
    zero = zero_section(ds)
    if not explicit and ds.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    config = {
        "train_micro_batch_size_per_gpu": train.per_device_train_batch_size if explicit else auto,
        "gradient_accumulation_steps": train.gradient_accumulation_steps if explicit else auto,
        "train_batch_size": train.per_device_train_batch_size * train.gradient_accumulation_steps * world_size if explicit else auto,
        "gradient_clipping": train.max_grad_norm if explicit else auto,
        "bf16": {"enabled": dtype == torch.bfloat16 if explicit else auto},
        "fp16": {"enabled": dtype == torch.float16 if explicit else auto, **({"initial_scale_power": 16} if explicit else {})},
        "zero_optimization": zero,
        "optimizer": optimizer_section(train if explicit else None, ds, use_gpu),
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if explicit:
        config["scheduler"] = scheduler_section(train, total_steps)
    return config
