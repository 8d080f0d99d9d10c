"""The SFT config: the shared training sections plus the data mixture, LoRA and SFTTrainer's own keys.

    cfg = load_config(SFTConfig, "jobs/configs/sft/tiny.yaml", ["lora.r=8"])

``train`` holds ``trl.SFTConfig``'s names and reaches it unchanged (:func:`medgo.train.sft.trainer_kwargs`);
``lora`` holds ``peft.LoraConfig``'s; ``lora: null`` trains every weight instead (full-parameter SFT).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from medgo.config import Section
from medgo.train.config import RENAMED_TRL, LoraSettings, TrainArguments, TrainStageConfig
from medgo.train.sft_data import SFTSource

SAMPLES = "medgo://assets/sft"


def default_sources() -> list[SFTSource]:
    """The embedded SFT samples, every format once."""
    return [
        SFTSource(path=f"{SAMPLES}/consultations.jsonl", format="messages"),
        SFTSource(path=f"{SAMPLES}/qa.jsonl", format="qa"),
        SFTSource(path=f"{SAMPLES}/diagnosis.jsonl", format="diagnosis"),
        SFTSource(path=f"{SAMPLES}/instructions.jsonl", format="instruction"),
        SFTSource(path=f"{SAMPLES}/safety_prompts.json", format="safety_prompts"),
    ]


class SFTData(Section):
    """The SFT mixture."""

    sources: list[SFTSource] = Field(default_factory=default_sources, min_length=1)

    @model_validator(mode="after")
    def _names_unique(self):
        labels = [s.label for s in self.sources]
        repeated = sorted({x for x in labels if labels.count(x) > 1})
        if repeated:
            raise ValueError(f"two sources are named {', '.join(repeated)}: give one of them a 'name'")
        return self


class SFTArguments(TrainArguments):
    """``train`` for SFT: ``trl.SFTConfig``'s names (defaults: MedGo's SFT)."""

    learning_rate: float = Field(2e-5, gt=0)
    warmup_steps: float = Field(0.01, ge=0)
    num_train_epochs: float = Field(2.0, gt=0)
    gradient_accumulation_steps: int = Field(4, gt=0)
    max_length: int = Field(1024, gt=8)
    """Tokens per sequence (per packed row with ``packing``); longer conversations are truncated at the end (TRL ``keep_start``)."""
    packing: bool = False
    """Pack whole conversations into rows of ``max_length`` tokens (TRL's ``bfd``) and train padding-free: each
    conversation keeps its own positions and attends only to itself (FlashAttention-2 on GPU, SDPA or eager on CPU)."""


class SFTExport(Section):
    """What is written besides ``adapter/``."""

    merged: bool = False
    """Also write ``merged/``: the base with the adapter merged in, a plain Hugging Face directory (LoRA only)."""


class SFTConfig(TrainStageConfig):
    """LoRA SFT: model, data mixture, LoRA, train, DeepSpeed, Ray, metrics, export, fault drills."""

    stage: ClassVar[str] = "sft"
    renamed: ClassVar[dict[str, str]] = {**RENAMED_TRL, "export_merged": "export.merged"}

    data: SFTData = SFTData()
    lora: LoraSettings | None = LoraSettings()
    """``null``: full-parameter SFT, every weight trains and the run writes ``model/`` (a Hugging Face
    model directory) instead of ``adapter/``; the optimizer then holds two moments of every weight."""
    train: SFTArguments = SFTArguments()
    export: SFTExport = SFTExport()

    @model_validator(mode="after")
    def _merged_needs_an_adapter(self):
        if self.lora is None and self.export.merged:
            raise ValueError("export.merged: a full-parameter run (lora: null) writes model/ itself; there is no adapter to merge")
        return self
