"""Typed training settings shared by every Ray Train stage (pre-training, SFT, DPO).

Each stage config composes the sections it needs; nothing here knows about a stage.  All
values are validated when the YAML loads, before any worker starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medgo.config import Section


class OptimizerSettings(Section):
    """AdamW with linear warm-up then cosine decay (DeepSpeed's ``WarmupCosineLR``)."""

    lr: float = Field(3e-4, gt=0)
    """Peak learning rate, reached at the end of warm-up."""
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    warmup_steps: int = Field(100, ge=1)
    """Optimizer steps of linear warm-up from ``warmup_start_ratio * lr`` to ``lr``."""
    warmup_start_ratio: float = Field(0.0, ge=0, le=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """The cosine decays to ``min_lr_ratio * lr`` at the last step."""
    gradient_clipping: float = Field(1.0, ge=0)
    """Clip the global gradient norm to this value; 0 disables clipping."""

    @model_validator(mode="after")
    def _betas_in_range(self):
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        return self


class BatchSettings(Section):
    """How many blocks one optimizer step consumes: ``micro_batch_size * grad_accum_steps * workers``."""

    micro_batch_size: int = Field(4, gt=0)
    """Blocks per worker per forward/backward pass."""
    grad_accum_steps: int = Field(1, gt=0)
    """Forward/backward passes per optimizer step."""
    max_steps: int | None = Field(None, gt=0)
    """Optimizer steps to train; default: ``epochs`` full passes over the training split."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the training split when ``max_steps`` is not set."""


class DeepSpeedSettings(Section):
    """The DeepSpeed engine: ZeRO stage, offload and activation checkpointing.

    Precision follows ``model.dtype`` (``auto``: bf16 on GPU, fp32 on CPU).
    """

    zero_stage: Literal[0, 1, 2, 3] = 3
    offload_optimizer: bool = False
    """Keep optimizer states in CPU memory (ZeRO-Offload); needs DeepSpeed's CPU Adam op."""
    offload_params: bool = False
    """ZeRO-3 only: keep partitioned parameters in CPU memory (ZeRO-Infinity)."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass (saves memory, ~33% more compute)."""
    overlap_comm: bool = True
    """Overlap gradient reduction with the backward pass."""
    reduce_bucket_size: int = Field(500_000_000, gt=0)
    stage3_prefetch_bucket_size: int = Field(50_000_000, gt=0)
    stage3_max_live_parameters: int = Field(1_000_000_000, gt=0)

    @model_validator(mode="after")
    def _offload_params_needs_stage3(self):
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        return self


class CheckpointSettings(Section):
    """DeepSpeed checkpoints reported to Ray Train, and the final Hugging Face export."""

    every_steps: int = Field(100, gt=0)
    """Save a checkpoint from all ranks every this many optimizer steps (and always at the last one)."""
    keep_last: int = Field(3, gt=0)
    """Checkpoints kept in storage; older ones are deleted by Ray Train."""
    max_failures: int = Field(3, ge=-1)
    """Worker-group restarts from the last checkpoint before the run fails (-1: unlimited)."""
    export: bool = True
    """At the end, consolidate the ZeRO shards into ``<run dir>/model`` (safetensors + tokenizer)."""
    export_shard_size_gb: float = Field(5.0, gt=0)


class MetricsSettings(Section):
    """Where and how often metrics are written."""

    log_every: int = Field(1, gt=0)
    """Report loss, lr, grad norm, tokens/s and MFU every this many steps."""
    eval_every: int = Field(100, gt=0)
    """Held-out loss on the validation split every this many steps (and at the last one)."""
    eval_blocks: int = Field(64, gt=0)
    """Validation blocks per evaluation (the first ones of the split, shared out over the workers)."""
    peak_flops_per_device: float | None = Field(None, gt=0)
    """Peak FLOP/s of one device for MFU; default: bf16 dense peak of A100/H100/H200, none on CPU."""
    tensorboard: bool = True
    ray_metrics: bool = True
    """Export gauges through ``ray.util.metrics`` (shown in the Ray dashboard's Grafana panels)."""


class DebugSettings(Section):
    """Fault injection for tests and drills; leave unset in real runs."""

    fail_at_step: int | None = Field(None, gt=0)
    """Kill the last worker (``os._exit``) when it reaches this step, on an attempt that did not restore a checkpoint."""
    stop_at_step: int | None = Field(None, gt=0)
    """Stop cleanly after this step with a checkpoint, as a cancelled job would (the schedule is unchanged)."""
