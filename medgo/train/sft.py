"""Supervised fine-tuning with LoRA: TRL's SFTTrainer on Ray Train with DeepSpeed ZeRO-3.

    medgo sft --config jobs/configs/sft/tiny.yaml [--output DIR]
    ray job submit --working-dir . -- python jobs/sft.py --config jobs/configs/sft/tiny.yaml \
        --set model.base_model=/abs/runs/pretrain/tiny/model --set output_dir=/abs/runs

The driver reads every data source (consultations, QA, diagnosis, instructions, Safety-Prompts,
CBLUE tasks through the evaluation's own prompt templates), turns each record into chat
``messages``, counts and quarantines bad records (``data/rejected.jsonl``: file, line, reason),
drops conversations whose first assistant token lies beyond ``data.max_length``, and writes
``data/train.parquet`` + ``data/counts.json``.  Every Ray Train worker then reads the Parquet and
runs ``trl.SFTTrainer`` with a ``peft.LoraConfig``, ``assistant_only_loss`` (only the assistant's
tokens, ``<|im_end|>`` included, carry a label; the chat template marks them with
``{% generation %}``) and DeepSpeed ZeRO-3 through the trainer's ``deepspeed`` dict.

Checkpoints are reported to Ray Train every ``checkpoint.every_steps``; after a worker failure
(``checkpoint.max_failures``), or when the same command runs again with the same ``run_name``
and storage, training resumes from the last one.  The run directory ``<output_dir>/sft/<run_name>``
receives ``config.yaml``, ``data/``, ``metrics.jsonl``, ``loss_curve.png``, ``adapter/`` (a PEFT
adapter directory with the tokenizer; its ``base_model_name_or_path`` is the base model directory
— for ``base_model: tiny`` the seeded tiny model saved to ``<run dir>/base``) and, with
``export_merged: true``, ``merged/`` (a plain Hugging Face model with the adapter merged in).
Evaluate or serve the adapter with ``model.adapter: <run dir>/adapter``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from medgo import console
from medgo.config import ConfigError, Section, save_config
from medgo.model.loading import model_config_for, resolve_dtype, resolve_tokenizer_path
from medgo.model.tokenizer import load_tokenizer
from medgo.train.finetune import (
    FailAt,
    FinetuneConfig,
    StageWorker,
    finish_run,
    fit_finetune,
    load_base,
    lora_config,
    materialise_base,
    merge_adapter,
    plain_print,
    run_dir_for,
    start_worker,
    total_steps,
    train_and_save,
)
from medgo.train.launcher import storage_root
from medgo.train.sft_data import BadRecord, SFTSource, apply_weight, bad_records_jsonl, read_source

STAGE = "sft"
SAMPLES = "medgo/assets/sft"


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
    """The SFT mixture and how long a training sequence may be."""

    sources: list[SFTSource] = Field(default_factory=default_sources, min_length=1)
    max_length: int = Field(1024, gt=8)
    """Tokens per sequence; longer conversations are truncated at the end (TRL ``keep_start``)."""

    @model_validator(mode="after")
    def _names_unique(self):
        labels = [s.label for s in self.sources]
        repeated = sorted({x for x in labels if labels.count(x) > 1})
        if repeated:
            raise ValueError(f"two sources are named {', '.join(repeated)}: give one of them a 'name'")
        return self


class SFTDebug(Section):
    """Fault injection for tests and drills; leave unset in real runs."""

    fail_at_step: int | None = Field(None, gt=0)
    """Kill the last worker once at this optimizer step; the run restarts from its last checkpoint."""


class SFTConfig(FinetuneConfig):
    """LoRA SFT: model, data mixture, LoRA, trainer settings, DeepSpeed, Ray workers, checkpoints."""

    data: SFTData = SFTData()
    export_merged: bool = False
    """Also write ``merged/``: the base with the adapter merged in, a plain Hugging Face directory."""
    debug: SFTDebug = SFTDebug()


@dataclass
class DataSummary:
    path: Path
    records: int
    counts: dict
    """Per source: ``read`` (records looked at), ``rejected``, ``truncated`` (kept, cut at ``max_length``), ``train`` (after weighting)."""
    bad: list[BadRecord] = field(default_factory=list)


@dataclass
class SFTResult:
    run_dir: Path
    adapter_dir: Path
    merged_dir: Path | None
    base_dir: Path
    """The base model the adapter applies to (``base_model_name_or_path`` of the adapter)."""
    steps: int
    start_step: int
    """Step the last worker-group attempt resumed from (0: it started fresh)."""
    data: DataSummary
    metrics: dict
    """The last loss line of metrics.jsonl."""


# ----------------------------------------------------------------------------- data (driver side)


def training_template(tokenizer) -> str | None:
    """The chat template with ``{% generation %}`` markers TRL trains with (None: the tokenizer's own)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    return None if has_generation_markers(tokenizer.chat_template) else get_training_chat_template(tokenizer)


def assistant_tokens(tokenizer, messages: list[dict], template: str | None) -> tuple[int, list[int]]:
    """``(length, assistant mask)`` of one conversation as SFTTrainer tokenizes it."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=template)
    return len(out["input_ids"]), list(out["assistant_masks"])


def length_check(tokenizer, max_length: int, template: str | None, truncated: list) -> Callable[[list[dict]], None]:
    """A :func:`read_source` rule: ValueError when no assistant token fits in ``max_length``; counts truncations."""

    def check(messages: list[dict]) -> None:
        length, mask = assistant_tokens(tokenizer, messages, template)
        if not any(mask[:max_length]):
            raise ValueError(f"no assistant token within data.max_length={max_length} (the conversation has {length} tokens)")
        truncated.append(length > max_length)

    return check


def read_mixture(cfg: SFTConfig, tokenizer) -> tuple[list[dict], dict, list[BadRecord]]:
    """Rows ``{"source", "messages"}`` of every source (weighted), counts per source, bad records."""
    template = training_template(tokenizer)
    rows, counts, bad = [], {}, []
    for i, source in enumerate(cfg.data.sources):
        truncated: list[bool] = []
        good, rejected = read_source(source, length_check(tokenizer, cfg.data.max_length, template, truncated))
        weighted = apply_weight(good, source.weight, cfg.seed + i)
        counts[source.label] = {"read": len(good) + len(rejected), "rejected": len(rejected), "truncated": sum(truncated), "train": len(weighted)}
        rows += [{"source": source.label, "messages": m} for m in weighted]
        bad += rejected
    return rows, counts, bad


MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def build_data(cfg: SFTConfig, tokenizer, run_dir: Path) -> DataSummary:
    """Write ``data/train.parquet``, ``counts.json`` and ``rejected.jsonl``; report the counts."""
    rows, counts, bad = read_mixture(cfg, tokenizer)
    out = run_dir / "data"
    out.mkdir(parents=True, exist_ok=True)
    table = pa.table({"source": pa.array([r["source"] for r in rows], pa.string()), "messages": pa.array([r["messages"] for r in rows], MESSAGES_TYPE)})
    pq.write_table(table, out / "train.parquet")
    (out / "counts.json").write_text(json.dumps({"records": len(rows), "sources": counts}, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "rejected.jsonl").write_text(bad_records_jsonl(bad), encoding="utf-8")
    for name, c in counts.items():
        print(f"sft data: {name}: {c['train']} training conversations ({c['read']} read, {c['rejected']} rejected, {c['truncated']} truncated)", flush=True)
    for b in bad[:20]:
        print(f"sft data: skipped {b}", flush=True)
    if len(bad) > 20:
        print(f"sft data: ... {len(bad) - 20} more in {out / 'rejected.jsonl'}", flush=True)
    return DataSummary(out / "train.parquet", len(rows), counts, bad)


# ----------------------------------------------------------------------------- driver


def check_debug(cfg: SFTConfig, steps: int) -> None:
    step = cfg.debug.fail_at_step
    if step is not None and step >= steps:
        raise ConfigError(f"debug.fail_at_step ({step}) must be below the run's {steps} steps")


def check_max_length(cfg: SFTConfig, tokenizer) -> None:
    context = model_config_for(cfg.model, tokenizer).max_position_embeddings
    if cfg.data.max_length > context:
        raise ConfigError(f"data.max_length ({cfg.data.max_length}) exceeds the model's context of {context} tokens")


def run(cfg: SFTConfig) -> SFTResult:
    """Validate and write the data, train on Ray Train, write the adapter (and ``merged/``)."""
    tokenizer = load_tokenizer(resolve_tokenizer_path(cfg.model))
    check_max_length(cfg, tokenizer)
    run_dir = run_dir_for(cfg.output_dir, STAGE, cfg.run_name)
    save_config(cfg, run_dir / "config.yaml")
    data = build_data(cfg, tokenizer, run_dir)
    steps = total_steps(data.records, cfg.train, cfg.ray.num_workers)
    check_debug(cfg, steps)
    base = materialise_base(cfg.model, run_dir)
    print(f"sft '{cfg.run_name}': {data.records} conversations, about {steps} optimizer steps on {cfg.ray.num_workers} workers", flush=True)
    loop_config = {"cfg": cfg.model_dump(mode="json"), "base": base.model_dump(mode="json"), "run_dir": str(run_dir), "data": str(data.path)}
    storage = storage_root(cfg.ray.storage_path or cfg.output_dir, STAGE)
    result = fit_finetune(train_loop, loop_config, cfg.ray, cfg.checkpoint, run_name=cfg.run_name, storage=storage)
    outcome = result.return_value or {}
    last = finish_run(run_dir, STAGE, cfg.run_name)
    merged = merge_adapter(base.base_model, run_dir / "adapter", run_dir / "merged", resolve_dtype(cfg.model.dtype)) if cfg.export_merged else None
    console.summary(f"sft '{cfg.run_name}': {outcome.get('step')} steps, loss {last.get('loss')}; adapter {run_dir / 'adapter'}")
    return SFTResult(run_dir, run_dir / "adapter", merged, Path(base.base_model), int(outcome.get("step", 0)), int(outcome.get("start_step", 0)), data, last)


# ----------------------------------------------------------------------------- worker


def load_conversations(path: str):
    """The driver's Parquet as an in-memory ``datasets.Dataset`` with one ``messages`` column."""
    from datasets import Dataset

    return Dataset.from_list(pq.read_table(path, columns=["messages"]).to_pylist())


def trainer_args(w: StageWorker):
    """TRL's ``SFTConfig``: the shared training arguments plus assistant-only loss and truncation."""
    from trl import SFTConfig as TRLSFTConfig

    return TRLSFTConfig(**w.training_kwargs, max_length=w.cfg.data.max_length, assistant_only_loss=True, packing=False)


def train_loop(config: dict) -> dict:
    """Runs on every Ray Train worker."""
    from trl import SFTTrainer

    w = start_worker(config, SFTConfig, STAGE)
    args = trainer_args(w)
    model = load_base(w.base, w.tokenizer)  # after the arguments: ZeRO-3 loads partitioned
    callbacks = list(w.callbacks)
    if w.cfg.debug.fail_at_step:
        callbacks.append(FailAt(w.cfg.debug.fail_at_step, w.run_dir))
    with plain_print():  # tokenizing the data set would otherwise log bytecode
        trainer = SFTTrainer(model=model, args=args, train_dataset=load_conversations(config["data"]), processing_class=w.tokenizer,
                             peft_config=lora_config(w.cfg.lora), callbacks=callbacks)  # fmt: skip
    return train_and_save(trainer, w.run_dir / "adapter", w.run_storage)
