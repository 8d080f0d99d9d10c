"""Supervised fine-tuning with LoRA: TRL's SFTTrainer on Ray Train with DeepSpeed ZeRO-3.

    medgo sft --config jobs/configs/sft/tiny.yaml [--output DIR]
    ray job submit --working-dir . -- python jobs/sft.py --config jobs/configs/sft/tiny.yaml \
        --set model.base_model=/abs/runs/pretrain/tiny/model --set output_dir=/abs/runs

The driver reads every data source (consultations, QA, diagnosis, instructions, Safety-Prompts,
CBLUE tasks through the prompt templates evaluation uses too), turns each record into chat
``messages``, counts and quarantines bad records (``data/rejected.jsonl``: file, line, reason),
drops conversations whose first assistant token lies beyond ``train.max_length``, and writes
``data/train.parquet`` + ``data/counts.json``.  Every Ray Train worker then reads the Parquet and
runs ``trl.SFTTrainer`` with a ``peft.LoraConfig`` (or, with ``lora: null``, on every weight),
``assistant_only_loss`` (only the assistant's tokens, ``<|im_end|>`` included, carry a label; the
chat template marks them with ``{% generation %}``) and DeepSpeed ZeRO-3 through the trainer's
``deepspeed`` dict.

Checkpoints are reported to Ray Train every ``train.save_steps``; after a worker failure
(``ray.max_failures``), or when the same command runs again with the same ``run_name``
and storage, training resumes from the last one.  The run directory ``<output_dir>/sft/<run_name>``
receives ``config.yaml``, ``data/``, ``metrics.jsonl``, ``loss_curve.png``, ``adapter/`` (a PEFT
adapter directory with the tokenizer; its ``base_model_name_or_path`` is the base model directory
— for ``base_model: tiny`` the seeded tiny model saved to ``<run dir>/base``) and, with
``export.merged: true``, ``merged/`` (a plain Hugging Face model with the adapter merged in).
Evaluate or serve the adapter with ``model.adapter: <run dir>/adapter``.  A full-parameter run
(``lora: null``) writes ``model/`` instead of ``adapter/``: the trained model with the tokenizer,
used as ``model.base_model: <run dir>/model``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from medgo import console
from medgo.config import ConfigError, save_config
from medgo.model.loading import load_model, model_config_for, resolve_dtype, resolve_tokenizer_path
from medgo.model.tokenizer import load_tokenizer
from medgo.train import launcher
from medgo.train.base_model import materialise_base, merge_adapter
from medgo.train.callbacks import stage_callbacks
from medgo.train.faults import check_drill
from medgo.train.packed_attention import use_packed_attention
from medgo.train.sft_config import SFTConfig
from medgo.train.sft_data import BadRecord, apply_weight, bad_records_jsonl, read_source
from medgo.train.trl_stage import finish_run, plain_print, start_trl_worker, total_steps, train_and_save, validate_trainer_args

STAGE = SFTConfig.stage
FIXED = {"assistant_only_loss": True, "packing_strategy": "bfd"}
"""SFTTrainer's arguments the stage fixes: only the assistant's tokens carry a label; with ``train.packing``,
conversations are packed whole (best-fit decreasing, cut at ``max_length``) and keep their own positions, so
TRL trains padding-free and no conversation attends to another."""


@dataclass
class DataSummary:
    path: Path
    records: int
    rows: int
    """Training rows: ``records``, or with ``train.packing`` the packed rows of ``max_length`` tokens."""
    counts: dict
    """Per source: ``read`` (records looked at), ``rejected``, ``truncated`` (kept, cut at ``max_length``), ``train`` (after weighting)."""
    bad: list[BadRecord] = field(default_factory=list)


@dataclass
class SFTResult:
    run_dir: Path
    adapter_dir: Path | None
    """None when ``debug.stop_at_step`` stopped the run, or for a full-parameter run."""
    merged_dir: Path | None
    base_dir: Path
    """The base model the adapter applies to (``base_model_name_or_path`` of the adapter)."""
    steps: int
    start_step: int
    """Step the last worker-group attempt resumed from (0: it started fresh)."""
    data: DataSummary
    metrics: dict
    """The last loss line of metrics.jsonl."""
    model_dir: Path | None = None
    """A full-parameter run's trained model (``lora: null``); None otherwise or when stopped."""


# ----------------------------------------------------------------------------- data (driver side)


def training_template(tokenizer) -> str | None:
    """The chat template with ``{% generation %}`` markers TRL trains with (None: the tokenizer's own)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    return None if has_generation_markers(tokenizer.chat_template) else get_training_chat_template(tokenizer)


def assistant_tokens(tokenizer, messages: list[dict], template: str | None) -> tuple[int, list[int]]:
    """``(length, assistant mask)`` of one conversation as SFTTrainer tokenizes it."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=template)
    return len(out["input_ids"]), list(out["assistant_masks"])


def length_check(tokenizer, max_length: int, template: str | None, lengths: list[int]) -> Callable[[list[dict]], None]:
    """A :func:`read_source` rule: ValueError when no assistant token fits in ``max_length``; appends each kept conversation's length."""

    def check(messages: list[dict]) -> None:
        length, mask = assistant_tokens(tokenizer, messages, template)
        if not any(mask[:max_length]):
            raise ValueError(f"no assistant token within train.max_length={max_length} (the conversation has {length} tokens)")
        lengths.append(length)

    return check


def read_mixture(cfg: SFTConfig, tokenizer) -> tuple[list[dict], dict, list[BadRecord]]:
    """Rows ``{"source", "messages", "tokens"}`` of every source (weighted), counts per source, bad records."""
    template = training_template(tokenizer)
    rows, counts, bad = [], {}, []
    for i, source in enumerate(cfg.data.sources):
        lengths: list[int] = []
        good, rejected = read_source(source, length_check(tokenizer, cfg.train.max_length, template, lengths))
        weighted = apply_weight(list(zip(good, lengths)), source.weight, cfg.train.seed + i)
        truncated = sum(n > cfg.train.max_length for n in lengths)
        counts[source.label] = {"read": len(good) + len(rejected), "rejected": len(rejected), "truncated": truncated, "train": len(weighted)}
        rows += [{"source": source.label, "messages": m, "tokens": n} for m, n in weighted]
        bad += rejected
    return rows, counts, bad


def packed_rows(lengths: list[int], max_length: int) -> int:
    """Rows TRL's ``bfd`` packing makes of conversations of these token lengths (each cut at ``max_length``)."""
    from datasets import Dataset
    from datasets.table import InMemoryTable
    from trl.data_utils import pack_dataset

    offsets = np.concatenate([[0], np.cumsum(np.minimum(lengths, max_length))])
    ids = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(np.zeros(offsets[-1], np.int8)))
    return pack_dataset(Dataset(InMemoryTable(pa.table({"input_ids": ids}))), max_length, "bfd").num_rows


MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def build_data(cfg: SFTConfig, tokenizer, run_dir: Path) -> DataSummary:
    """Write ``data/train.parquet``, ``counts.json`` and ``rejected.jsonl``; report the counts."""
    rows, counts, bad = read_mixture(cfg, tokenizer)
    out = run_dir / "data"
    out.mkdir(parents=True, exist_ok=True)
    table = pa.table({"source": pa.array([r["source"] for r in rows], pa.string()), "messages": pa.array([r["messages"] for r in rows], MESSAGES_TYPE),
                      "tokens": pa.array([r["tokens"] for r in rows], pa.int32())})  # fmt: skip
    pq.write_table(table, out / "train.parquet")
    (out / "counts.json").write_text(json.dumps({"records": len(rows), "sources": counts}, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "rejected.jsonl").write_text(bad_records_jsonl(bad), encoding="utf-8")
    for name, c in counts.items():
        print(f"sft data: {name}: {c['train']} training conversations ({c['read']} read, {c['rejected']} rejected, {c['truncated']} truncated)", flush=True)
    for b in bad[:20]:
        print(f"sft data: skipped {b}", flush=True)
    if len(bad) > 20:
        print(f"sft data: ... {len(bad) - 20} more in {out / 'rejected.jsonl'}", flush=True)
    lengths = [r["tokens"] for r in rows]
    packed = packed_rows(lengths, cfg.train.max_length) if cfg.train.packing and rows else len(rows)
    return DataSummary(out / "train.parquet", len(rows), packed, counts, bad)


# ----------------------------------------------------------------------------- driver


def check_max_length(cfg: SFTConfig, tokenizer) -> None:
    context = model_config_for(cfg.model, tokenizer).max_position_embeddings
    if cfg.train.max_length > context:
        raise ConfigError(f"train.max_length ({cfg.train.max_length}) exceeds the model's context of {context} tokens")


def run(cfg: SFTConfig) -> SFTResult:
    """Validate and write the data, train on Ray Train, write the adapter (and ``merged/``)."""
    from trl import SFTConfig as TRLSFTConfig

    validate_trainer_args(TRLSFTConfig, cfg, **FIXED)
    tokenizer = load_tokenizer(resolve_tokenizer_path(cfg.model))
    check_max_length(cfg, tokenizer)
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    data = build_data(cfg, tokenizer, run_dir)
    steps = total_steps(data.rows, cfg.train, cfg.ray.num_workers)
    check_drill(cfg.debug, steps)
    base = materialise_base(cfg.model, run_dir)
    packed = f" packed into {data.rows} rows of {cfg.train.max_length} tokens" if cfg.train.packing else ""
    print(f"sft '{cfg.run_name}': {data.records} conversations{packed}, about {steps} optimizer steps on {cfg.ray.num_workers} workers", flush=True)
    outcome = launcher.fit(train_loop, cfg, launcher.loop_config(cfg, base, data=str(data.path))).return_value or {}
    last = finish_run(cfg)
    written = None if outcome.get("stopped") else run_dir / output_name(cfg)
    adapter, model = (written, None) if cfg.lora else (None, written)
    merged = merge_adapter(base.base_model, adapter, run_dir / "merged", resolve_dtype(cfg.model.dtype)) if adapter and cfg.export.merged else None
    console.summary(f"sft '{cfg.run_name}': {outcome.get('step')} steps, loss {last.get('loss')}; {output_name(cfg)} {written or '(stopped early)'}")
    return SFTResult(run_dir, adapter, merged, Path(base.base_model), int(outcome.get("step", 0)), int(outcome.get("start_step", 0)), data, last, model)


def output_name(cfg: SFTConfig) -> str:
    """``adapter`` (LoRA) or ``model`` (full-parameter, ``lora: null``): the run directory's trained output."""
    return "adapter" if cfg.lora else "model"


# ----------------------------------------------------------------------------- worker


def load_policy(model_cfg, tokenizer, packing: bool):
    """The model SFT trains; with ``train.packing`` on SDPA it attends one packed conversation at a time
    (:mod:`medgo.train.packed_attention`) instead of through a dense block-diagonal mask over the row."""
    model = load_model(model_cfg, tokenizer)
    return use_packed_attention(model) if packing else model


def load_conversations(path: str):
    """The driver's Parquet as an in-memory ``datasets.Dataset`` with one ``messages`` column."""
    from datasets import Dataset

    return Dataset.from_list(pq.read_table(path, columns=["messages"]).to_pylist())


def train_loop(config: dict) -> dict:
    """Runs on every Ray Train worker."""
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    w, args = start_trl_worker(config, SFTConfig, TRLSFTConfig, **FIXED)
    model = load_policy(w.model, w.tokenizer, w.cfg.train.packing)  # after the arguments: ZeRO-3 loads partitioned
    with plain_print():  # tokenizing the data set would otherwise log bytecode
        trainer = SFTTrainer(model=model, args=args, train_dataset=load_conversations(config["data"]), processing_class=w.tokenizer,
                             peft_config=w.cfg.lora.peft() if w.cfg.lora else None,
                             callbacks=stage_callbacks(w.cfg, w.run_dir, w.run_storage))  # fmt: skip
    return train_and_save(trainer, w.run_dir / output_name(w.cfg), w.run_storage)
