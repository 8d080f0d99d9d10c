"""The pre-training config: the shared training sections plus the corpus, the schedule's floor and the export.

    cfg = load_config(PretrainConfig, "jobs/configs/pretrain/tiny.yaml", ["train.learning_rate=1e-3"])

DeepSpeed runs the loop itself (no Hugging Face trainer), so the ``train`` keys reach the DeepSpeed
dict (:mod:`medgo.train.deepspeed_config`) and the loop in :mod:`medgo.train.pretrain`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from medgo.config import Section
from medgo.train.config import RENAMED_COMMON, MetricsSettings, TrainArguments, TrainStageConfig

PRETRAIN_SCHEDULERS = ("cosine", "linear", "constant_with_warmup")
"""The schedules DeepSpeed runs: ``WarmupCosineLR``, ``WarmupDecayLR`` and ``WarmupLR``."""


class PretrainData(Section):
    """The packed corpus to train on, and the held-out blocks each evaluation uses."""

    corpus: str = "runs/corpus/tiny"
    """Corpus directory built by ``medgo corpus build`` (``manifest.json`` + ``shards/{train,validation}``)."""
    eval_blocks: int = Field(64, gt=0)
    """Validation blocks per evaluation (the first ones of the split, shared out over the workers)."""
    shuffle_window: int = Field(1024, ge=0)
    """Each worker shuffles its blocks within windows of this many, in a new order every epoch (seeded by
    ``train.seed`` and the epoch; a resumed run sees the same order).  0 trains in the corpus's order, which
    is source by source."""


class PretrainArguments(TrainArguments):
    """``train`` for pre-training (defaults: a short continued pre-training run)."""

    per_device_train_batch_size: int = Field(4, gt=0)
    learning_rate: float = Field(3e-4, gt=0)
    lr_scheduler_type: Literal[PRETRAIN_SCHEDULERS] = "cosine"
    warmup_steps: float = Field(100, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    adam_beta2: float = Field(0.95, ge=0, lt=1)
    save_steps: int = Field(100, gt=0)
    save_total_limit: int = Field(3, gt=0)
    warmup_start_ratio: float = Field(0.0, ge=0, le=1)
    """Warm-up starts at ``warmup_start_ratio * learning_rate``."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """``cosine`` decays to ``min_lr_ratio * learning_rate`` at the last step (0: to zero, as Hugging Face's does)."""
    eval_steps: int = Field(100, gt=0)
    """Held-out loss on ``data.eval_blocks`` validation blocks every this many steps (and at the last one)."""


class PretrainMetrics(MetricsSettings):
    """Metrics sinks, plus the peak used for MFU."""

    tensorboard: bool = True
    ray_metrics: bool = True
    peak_flops_per_device: float | None = Field(None, gt=0)
    """Peak FLOP/s of one device for MFU; default: bf16 dense peak of A100/H100/H200, none on CPU."""


class PretrainExport(Section):
    """The final Hugging Face model directory."""

    model: bool = True
    """At the end, consolidate the ZeRO shards into ``<run dir>/model`` (safetensors + tokenizer)."""
    shard_size_gb: float = Field(5.0, gt=0)
    """Largest safetensors file of the export."""


class PretrainConfig(TrainStageConfig):
    """Continued pre-training: model, corpus, train, DeepSpeed, Ray, metrics, export, fault drills."""

    stage: ClassVar[str] = "pretrain"
    renamed: ClassVar[dict[str, str]] = {
        **RENAMED_COMMON,
        "batch.micro_batch_size": "train.per_device_train_batch_size",
        "batch.grad_accum_steps": "train.gradient_accumulation_steps",
        "batch.max_steps": "train.max_steps",
        "batch.epochs": "train.num_train_epochs",
        "optim.lr": "train.learning_rate",
        "optim.weight_decay": "train.weight_decay",
        "optim.betas": "train.adam_beta1, train.adam_beta2",
        "optim.eps": "train.adam_epsilon",
        "optim.warmup_steps": "train.warmup_steps",
        "optim.warmup_start_ratio": "train.warmup_start_ratio",
        "optim.min_lr_ratio": "train.min_lr_ratio",
        "optim.gradient_clipping": "train.max_grad_norm",
        "checkpoint.export": "export.model",
        "checkpoint.export_shard_size_gb": "export.shard_size_gb",
        "metrics.log_every": "train.logging_steps",
        "metrics.eval_every": "train.eval_steps",
        "metrics.eval_blocks": "data.eval_blocks",
    }

    data: PretrainData = PretrainData()
    train: PretrainArguments = PretrainArguments()
    metrics: PretrainMetrics = PretrainMetrics()
    export: PretrainExport = PretrainExport()
