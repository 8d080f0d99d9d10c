"""The DPO config: the shared training sections plus preference data, LoRA and DPOTrainer's own keys.

    cfg = load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", ["train.beta=0.2"])

``train`` holds ``trl.DPOConfig``'s names (``beta``, ``loss_type``, ``label_smoothing``,
``precompute_ref_log_probs``, ``precompute_ref_batch_size``, ``max_length`` besides the shared ones) and reaches it unchanged
(:func:`medgo.train.dpo.trainer_kwargs`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from medgo.config import ModelConfig, Section
from medgo.train.config import RENAMED_TRL, LoraSettings, TrainArguments, TrainStageConfig

LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
              "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")  # fmt: skip


class DPOData(Section):
    """Where the doctors' judgements and ready-made pairs come from (DPO and KTO read the same files)."""

    feedback: list[str] = ["medgo://assets/feedback/feedback.jsonl"]
    """``medgo serve export`` files (or glob patterns), oldest feedback round first; a later judgement
    of the same response wins."""
    pairs: list[str] = ["medgo://assets/dpo/pairs.jsonl"]
    """Ready-made ``{prompt, chosen, rejected}`` JSONL files (or glob patterns)."""
    raw_feedback_unsafe: bool = False
    """Train on prompts, answers and corrections as the doctors typed them, identifiers included.
    Off by default: feedback and pairs are de-identified (:func:`medgo.corpus.phi.deidentify`)."""

    @field_validator("feedback", "pairs", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value):
        return [value] if isinstance(value, str) else value


class PreferenceArguments(TrainArguments):
    """``train`` keys DPO and KTO share, named as TRL names them (defaults: a low learning rate, one epoch)."""

    learning_rate: float = Field(5e-6, gt=0)
    warmup_steps: float = Field(0.1, ge=0)
    gradient_accumulation_steps: int = Field(4, gt=0)
    beta: float = Field(0.1, gt=0)
    """Strength of the pull towards the reference policy (higher: stay closer)."""
    precompute_ref_log_probs: bool = False
    """Compute the reference log-probabilities once before training (saves a forward pass per step)."""
    precompute_ref_batch_size: int | None = Field(None, gt=0)
    """Batch of that one-off pass (no gradients, so it can be larger than the training batch; under ZeRO-3
    each batch gathers the whole model once); unset: ``per_device_train_batch_size``."""
    max_length: int = Field(1024, gt=8)
    """Tokens of prompt + answer; longer sequences are truncated at the end, records whose prompt alone
    fills it are dropped (counted as ``prompt_too_long``)."""


class DPOArguments(PreferenceArguments):
    """``train`` for DPO: ``trl.DPOConfig``'s names."""

    loss_type: Literal[LOSS_TYPES] = "sigmoid"
    """``sigmoid`` is the DPO paper's loss; ``ipo``, ``robust``, ``hinge``... are TRL's variants."""
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    """Probability that a label is flipped (``robust``/``exo_pair`` losses)."""


class DPOConfig(TrainStageConfig):
    """DPO with LoRA: model (+ optional SFT adapter to continue), data, LoRA, train, DeepSpeed, Ray, metrics, fault drills."""

    stage: ClassVar[str] = "dpo"
    renamed: ClassVar[dict[str, str]] = {
        **RENAMED_TRL,
        "dpo.beta": "train.beta",
        "dpo.loss_type": "train.loss_type",
        "dpo.label_smoothing": "train.label_smoothing",
        "dpo.precompute_ref_log_probs": "train.precompute_ref_log_probs",
    }

    model: ModelConfig = ModelConfig()
    """``adapter``: the SFT adapter to continue (the reference is then the SFT policy)."""
    data: DPOData = DPOData()
    lora: LoraSettings = LoraSettings()
    """The new adapter when ``model.adapter`` is unset; continuing an adapter keeps its own rank and targets."""
    train: DPOArguments = DPOArguments()
