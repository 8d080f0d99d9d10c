"""The training vocabulary: the sections and keys every training stage (pretrain, SFT, DPO) shares.

A stage config is a :class:`TrainStageConfig` with the same sections for the same knobs::

    model      which model, and the precision (``dtype``)
    train      batch, optimiser, schedule, activation checkpointing, logging and checkpoint cadence,
               seed: Hugging Face ``TrainingArguments`` names (TRL stages pass them through unchanged;
               a stage adds its trainer's own keys, e.g. DPO's ``beta``, under the same names TRL uses)
    deepspeed  the ZeRO engine
    ray        workers, resources, storage and worker-group restarts (Ray's ScalingConfig,
               RunConfig, FailureConfig)
    metrics    where metrics go besides ``metrics.jsonl``
    debug      fault drills

Every key has one name and one consumer (``tests/train/test_every_key.py``); an old name is an
error that names the new one (``docs/training-config.md`` lists them).  All values are checked
when the YAML loads, before any worker starts.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from medgo.config import ModelConfig, RayConfig, Section, StageConfig

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts")


class TrainArguments(Section):
    """Batch, optimiser, schedule and checkpoint cadence, named as ``transformers.TrainingArguments`` names them.

    One optimizer step consumes ``per_device_train_batch_size * gradient_accumulation_steps * ray.num_workers``
    sequences (packed blocks for pre-training).
    """

    per_device_train_batch_size: int = Field(1, gt=0)
    """Sequences per worker per forward/backward pass."""
    gradient_accumulation_steps: int = Field(1, gt=0)
    """Forward/backward passes per optimizer step."""
    num_train_epochs: float = Field(1.0, gt=0)
    """Passes over the training data when ``max_steps`` is not set."""
    max_steps: int | None = Field(None, gt=0)
    """Optimizer steps to train; default: ``num_train_epochs`` passes."""
    learning_rate: float = Field(2e-5, gt=0)
    """Peak learning rate, reached at the end of warm-up (AdamW)."""
    lr_scheduler_type: Literal[SCHEDULERS] = "cosine"
    warmup_steps: float = Field(0.0, ge=0)
    """Optimizer steps of linear warm-up; a value below 1 is a fraction of all steps."""
    weight_decay: float = Field(0.0, ge=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    max_grad_norm: float = Field(1.0, ge=0)
    """Clip the global gradient norm to this value; 0 disables clipping."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass (saves memory, ~33% more compute)."""
    logging_steps: int = Field(1, gt=0)
    """Write loss, lr and grad norm to ``metrics.jsonl`` every this many optimizer steps."""
    save_steps: int = Field(50, gt=0)
    """Save a checkpoint from all ranks, reported to Ray Train, every this many optimizer steps."""
    save_total_limit: int = Field(2, gt=0)
    """Checkpoints kept in storage; Ray Train deletes older ones."""
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _warmup_is_steps_or_a_fraction(self):
        if self.warmup_steps >= 1 and self.warmup_steps != int(self.warmup_steps):
            raise ValueError(f"warmup_steps must be a whole number of steps or a fraction below 1, got {self.warmup_steps}")
        return self

    def warmup_for(self, total_steps: int) -> int:
        """Warm-up steps of a run of ``total_steps`` (a fraction is rounded up, as Hugging Face does)."""
        if self.warmup_steps < 1:
            return math.ceil(self.warmup_steps * total_steps)
        return min(int(self.warmup_steps), total_steps)


class DeepSpeedSettings(Section):
    """The DeepSpeed engine: ZeRO stage and offload.  Precision follows ``model.dtype``."""

    zero_stage: Literal[0, 1, 2, 3] = 3
    offload_optimizer: bool = False
    """Keep optimizer states in CPU memory (ZeRO-Offload); needs DeepSpeed's CPU Adam op."""
    offload_params: bool = False
    """ZeRO-3 only: keep partitioned parameters in CPU memory (ZeRO-Infinity)."""
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


class TrainRay(RayConfig):
    """Ray Train workers (two by default, so ZeRO-3 really shards), storage and restarts."""

    num_workers: int = Field(2, gt=0)
    storage_path: str | None = None
    """Where Ray Train keeps checkpoints: a local directory or a pyarrow URI (s3://, gs://, hdfs://); default: ``output_dir``."""
    max_failures: int = Field(3, ge=-1)
    """Worker-group restarts from the last checkpoint before the run fails (-1: unlimited)."""


class MetricsSettings(Section):
    """Sinks besides ``<run dir>/metrics.jsonl`` (written on rank 0 every ``train.logging_steps``)."""

    tensorboard: bool = False
    """Also write the metrics to ``<run dir>/tensorboard``."""
    ray_metrics: bool = False
    """Export gauges through ``ray.util.metrics`` (shown in the Ray dashboard's Grafana panels)."""


class DebugSettings(Section):
    """Fault drills for tests and rehearsals; leave unset in real runs."""

    fail_at_step: int | None = Field(None, gt=0)
    """Kill the last worker (``os._exit``) once, at the end of this step; the run restarts from its last checkpoint."""
    stop_at_step: int | None = Field(None, gt=0)
    """Stop cleanly after this step with a checkpoint, as a cancelled job would (the schedule is unchanged)."""


QWEN2_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSettings(Section):
    """The LoRA adapter, in ``peft.LoraConfig``'s names (defaults: MedGo's SFT — rank 16, alpha 8, dropout 0.05, every Qwen2 projection)."""

    r: int = Field(16, gt=0)
    """Rank of the low-rank update."""
    lora_alpha: float = Field(8, gt=0)
    """Scale: the update is multiplied by ``lora_alpha / r``."""
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(QWEN2_LORA_TARGETS), min_length=1)
    """Module names (suffixes) that receive an adapter: Qwen2's attention and MLP projections."""
    bias: Literal["none", "all", "lora_only"] = "none"
    modules_to_save: list[str] | None = None
    """Modules trained in full and saved with the adapter (e.g. ``lm_head`` after adding tokens)."""

    def peft(self):
        """The ``peft.LoraConfig`` for a causal LM: every key passed through unchanged."""
        from peft import LoraConfig

        return LoraConfig(**self.model_dump(), task_type="CAUSAL_LM")


class TrainStageConfig(StageConfig):
    """The sections every training stage has; a stage adds ``data`` and its own extras."""

    model: ModelConfig = ModelConfig()
    train: TrainArguments = TrainArguments()
    deepspeed: DeepSpeedSettings = DeepSpeedSettings()
    ray: TrainRay = TrainRay()
    metrics: MetricsSettings = MetricsSettings()
    debug: DebugSettings = DebugSettings()

    def storage(self) -> str:
        """Ray Train's storage for this stage: ``<ray.storage_path or output_dir>/<stage>``."""
        from medgo.train.launcher import storage_root

        return storage_root(self.ray.storage_path or self.output_dir, self.stage)


RENAMED_COMMON: dict[str, str] = {
    "deepspeed.activation_checkpointing": "train.activation_checkpointing",
    "checkpoint.every_steps": "train.save_steps",
    "checkpoint.keep_last": "train.save_total_limit",
    "checkpoint.max_failures": "ray.max_failures",
    "seed": "train.seed",
}
"""Keys every training stage renamed when the vocabulary became one."""

RENAMED_TRL: dict[str, str] = {
    **RENAMED_COMMON,
    "train.micro_batch_size": "train.per_device_train_batch_size",
    "train.grad_accum_steps": "train.gradient_accumulation_steps",
    "train.epochs": "train.num_train_epochs",
    "train.lr_scheduler": "train.lr_scheduler_type",
    "train.warmup_ratio": "train.warmup_steps (a value below 1 is a fraction of all steps)",
    "train.betas": "train.adam_beta1, train.adam_beta2",
    "train.eps": "train.adam_epsilon",
    "train.gradient_checkpointing": "train.activation_checkpointing",
    "tensorboard": "metrics.tensorboard",
    "lora.alpha": "lora.lora_alpha",
    "lora.dropout": "lora.lora_dropout",
    "data.max_length": "train.max_length",
}
"""What the TRL stages (SFT, DPO) renamed."""

