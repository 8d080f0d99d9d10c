"""The KTO config: the shared training sections plus the feedback data, LoRA and KTOTrainer's own keys.

    cfg = load_config(KTOConfig, "jobs/configs/kto/tiny.yaml", ["train.desirable_weight=0.8"])

``data`` is DPO's (the same feedback and pair files); ``train`` holds ``trl.KTOConfig``'s names
(``beta``, ``loss_type``, ``desirable_weight``, ``undesirable_weight``, ``precompute_ref_log_probs``,
``max_length`` besides the shared ones) and reaches it unchanged
(:func:`medgo.train.trl_stage.trainer_kwargs`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from medgo.config import ModelConfig
from medgo.train.config import RENAMED_TRL, LoraSettings, TrainStageConfig
from medgo.train.dpo_config import DPOData, PreferenceArguments

LOSS_TYPES = ("kto", "apo_zero_unpaired")


class KTOArguments(PreferenceArguments):
    """``train`` for KTO: ``trl.KTOConfig``'s names."""

    per_device_train_batch_size: int = Field(4, gt=0)
    """Rows per worker per pass; above 1 for ``loss_type: kto``, whose KL term pairs each prompt with a neighbour's completion."""
    loss_type: Literal[LOSS_TYPES] = "kto"
    """``kto`` is the KTO paper's loss; ``apo_zero_unpaired`` the unpaired APO-zero loss (no KL term)."""
    desirable_weight: float = Field(1.0, gt=0)
    """Weight of the desirable rows' losses; the KTO paper keeps desirable_weight x desirable rows /
    (undesirable_weight x undesirable rows) between 1 and 4/3."""
    undesirable_weight: float = Field(1.0, gt=0)
    """Weight of the undesirable rows' losses."""

    @model_validator(mode="after")
    def _kl_needs_a_neighbour(self):
        if self.loss_type == "kto" and self.per_device_train_batch_size < 2:
            raise ValueError("loss_type 'kto' estimates its KL term from the other rows of a batch: per_device_train_batch_size must be at least 2")
        return self


class KTOConfig(TrainStageConfig):
    """KTO with LoRA: model (+ optional adapter to continue), data, LoRA, train, DeepSpeed, Ray, metrics, fault drills."""

    stage: ClassVar[str] = "kto"
    renamed: ClassVar[dict[str, str]] = RENAMED_TRL

    model: ModelConfig = ModelConfig()
    """``adapter``: the adapter to continue (the reference is then that adapter's policy)."""
    data: DPOData = DPOData()
    """The judgements: every usable one becomes a row (:mod:`medgo.train.kto_data`)."""
    lora: LoraSettings = LoraSettings()
    """The new adapter when ``model.adapter`` is unset; continuing an adapter keeps its own rank and targets."""
    train: KTOArguments = KTOArguments()
