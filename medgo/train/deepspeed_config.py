"""The DeepSpeed config dict, built from typed settings (never hand-written JSON).

    ds = deepspeed_config(cfg.deepspeed, cfg.optim, cfg.batch, world_size=64, total_steps=20_000,
                          dtype=torch.bfloat16, use_gpu=True)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=ds)
"""

from __future__ import annotations

import torch

from medgo.train.settings import BatchSettings, DeepSpeedSettings, OptimizerSettings


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


def optimizer_section(optim: OptimizerSettings, ds: DeepSpeedSettings, use_gpu: bool) -> dict:
    params: dict = {"lr": optim.lr, "betas": list(optim.betas), "eps": optim.eps, "weight_decay": optim.weight_decay}
    if not use_gpu and not ds.offload_optimizer:
        params["torch_adam"] = True  # FusedAdam needs CUDA; torch's AdamW runs anywhere
    return {"type": "AdamW", "params": params}


def scheduler_section(optim: OptimizerSettings, total_steps: int) -> dict:
    return {
        "type": "WarmupCosineLR",
        "params": {
            "total_num_steps": total_steps,
            "warmup_num_steps": min(optim.warmup_steps, total_steps),
            "warmup_min_ratio": optim.warmup_start_ratio,
            "cos_min_ratio": optim.min_lr_ratio,
            "warmup_type": "linear",
        },
    }


def deepspeed_config(
    ds: DeepSpeedSettings,
    optim: OptimizerSettings,
    batch: BatchSettings,
    *,
    world_size: int,
    total_steps: int,
    dtype: torch.dtype,
    use_gpu: bool,
) -> dict:
    """Complete config for ``deepspeed.initialize`` (batch sizes, precision, ZeRO, AdamW, schedule)."""
    return {
        "train_micro_batch_size_per_gpu": batch.micro_batch_size,
        "gradient_accumulation_steps": batch.grad_accum_steps,
        "train_batch_size": batch.micro_batch_size * batch.grad_accum_steps * world_size,
        "gradient_clipping": optim.gradient_clipping,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16, "initial_scale_power": 16},
        "zero_optimization": zero_section(ds),
        "optimizer": optimizer_section(optim, ds, use_gpu),
        "scheduler": scheduler_section(optim, total_steps),
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
