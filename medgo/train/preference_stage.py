"""What the stages that learn from doctors' judgements (DPO, KTO) share: the policy, its reference, the driver and the worker.

A preference stage supplies its data builder, its TRL trainer and its data loader; the rest is here::

    # driver (medgo.train.dpo.run, medgo.train.kto.run)
    fields = fit(cfg, trl.DPOConfig, build_data, train_loop, "pairs")   # run_dir, adapter_dir, base_dir, reference, steps, ...
    # worker (train_loop)
    return train_policy(config, DPOConfig, trl.DPOConfig, trl.DPOTrainer, load_dataset)

The reference policy:

* ``model.adapter`` unset: a new LoRA adapter (``lora`` section) is trained on the base model;
  the reference is the base model itself (TRL disables the adapter to compute it).
* ``model.adapter`` set (an SFT or production adapter): the stage continues training *that*
  adapter, and the reference is that adapter's policy — TRL keeps a frozen copy of the adapter
  under the name ``ref`` and switches to it for the reference log-probabilities.  The ``lora``
  section is not used (the adapter keeps its rank and targets); the result is one adapter on the
  same base, served in its place.

With ``train.precompute_ref_log_probs`` TRL computes the reference log-probabilities once, before
the first step, and caches them as columns beside its data set.  The worker hands TRL its data set
as an Arrow file under ``<run dir>/data/cache/<key>/`` (:func:`cached_dataset`; the key covers the
data's bytes and the ``model`` and ``train`` sections), so TRL's tokenized data and the reference
columns are written there and found again by every later epoch, a restarted worker group and a
re-run of the same command; a change of data, model or settings gets a new folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medgo.config import ConfigError, ModelConfig, save_config
from medgo.model.loading import load_model, resolve_tokenizer_path
from medgo.model.tokenizer import load_tokenizer
from medgo.train import launcher
from medgo.train.base_model import materialise_base
from medgo.train.callbacks import stage_callbacks
from medgo.train.faults import check_drill
from medgo.train.metrics import read_metrics
from medgo.train.preference import Ledger
from medgo.train.trl_stage import finish_run, plain_print, start_trl_worker, total_steps, train_and_save, validate_trainer_args

REFERENCE_ADAPTER = "ref"
"""Name under which TRL keeps the frozen copy of a continued adapter (the reference policy)."""
QUIET_SKIPS = ("unpaired", "superseded")
"""Skip reasons that are the rules at work, not bad records: counted, not printed."""


@dataclass
class PreferenceResult:
    """What a preference stage's ``run`` returns (DPO adds ``pairs``, KTO ``rows``)."""

    run_dir: Path
    adapter_dir: Path | None
    """None when ``debug.stop_at_step`` stopped the run."""
    base_dir: Path
    """The base model the adapter applies to."""
    reference: str
    """``base model`` or ``adapter <dir>``: what the rewards are measured against."""
    steps: int
    start_step: int
    """Step the last worker-group attempt resumed from (0: it started fresh)."""
    data: dict
    """``data/summary.json``: records by kind, skipped records by reason, ``judgements`` (:func:`medgo.train.preference.judgement_counts`)."""
    metrics: list[dict]
    """Every logged step of metrics.jsonl."""


# ----------------------------------------------------------------------------- data (driver side)


def read_data(build: Callable, cfg):
    """``build(feedback, pairs, raw_unsafe)`` on the ``data`` section; a missing file is a ConfigError."""
    try:
        built = build(cfg.data.feedback, cfg.data.pairs, raw_unsafe=cfg.data.raw_feedback_unsafe)
    except FileNotFoundError as exc:
        raise ConfigError(f"data: {exc}") from None
    if cfg.data.raw_feedback_unsafe:
        print(f"{cfg.stage} data: WARNING data.raw_feedback_unsafe is set: training on raw feedback, identifiers included", flush=True)
    return built


def prompt_length(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])


def drop_long_prompts(items: list, ledger: Ledger, tokenizer, max_length: int) -> list:
    """Drop pairs or rows whose prompt (``context``) alone fills ``max_length`` (TRL would drop them silently)."""
    kept = []
    for item in items:
        n = prompt_length(tokenizer, [{"role": role, "content": content} for role, content in item.context])
        if n >= max_length:
            ledger.skip(item.origin, "prompt_too_long", f"{n} prompt tokens >= train.max_length {max_length}")
        else:
            kept.append(item)
    return kept


def report_data(stage: str, head: str, summary: dict, ledger: Ledger, path: Path) -> None:
    """One line of counts, then the first bad records with file and line."""
    scrubbed = "not de-identified" if summary["deidentified"] is None else f"identifiers replaced {summary['deidentified']}"
    print(f"{stage} data: {head}; skipped {summary['skipped']}; {scrubbed}; judgements {summary['judgements']}", flush=True)
    bad = [s for s in ledger.skipped if s.reason not in QUIET_SKIPS]
    for s in bad[:20]:
        print(f"{stage} data: skipped {s.source}:{s.line}: {s.reason} {s.detail}", flush=True)
    if len(bad) > 20:
        print(f"{stage} data: ... {len(bad) - 20} more in {path.parent / 'skipped.jsonl'}", flush=True)


# ----------------------------------------------------------------------------- driver


def check_adapter(model: ModelConfig) -> None:
    if model.adapter and not Path(model.adapter, "adapter_config.json").expanduser().is_file():
        raise ConfigError(f"model.adapter: {model.adapter} is not a PEFT adapter directory (adapter_config.json is missing)")


def policy_base(model: ModelConfig, run_dir: Path) -> ModelConfig:
    """The base every worker loads by path, with the continued adapter (absolute) when there is one."""
    if not model.adapter:
        return materialise_base(model, run_dir)
    base = materialise_base(model.model_copy(update={"adapter": None}), run_dir)
    return base.model_copy(update={"adapter": str(Path(model.adapter).expanduser().resolve())})


def reference_of(base: ModelConfig) -> str:
    return f"adapter {base.adapter}" if base.adapter else "base model"


def fit(cfg, trl_config_cls: type, build_data: Callable, train_loop: Callable, unit: str) -> dict:
    """Build the data, train on Ray Train, write the loss curve; returns the result fields every preference stage has.

    ``build_data(cfg, tokenizer, run_dir) -> (parquet path, summary)``; ``summary[unit]`` is the
    number of training records.  The fields: ``run_dir, adapter_dir`` (None when
    ``debug.stop_at_step`` stopped the run), ``base_dir, reference, steps, start_step, data``
    (the summary), ``metrics`` (every logged step) and ``last`` (the last one).
    """
    validate_trainer_args(trl_config_cls, cfg)
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    check_adapter(cfg.model)
    data, summary = build_data(cfg, load_tokenizer(resolve_tokenizer_path(cfg.model)), run_dir)
    steps = total_steps(summary[unit], cfg.train, cfg.ray.num_workers)
    check_drill(cfg.debug, steps)
    base = policy_base(cfg.model, run_dir)
    print(f"{cfg.stage} '{cfg.run_name}': {summary[unit]} {unit}, about {steps} optimizer steps on {cfg.ray.num_workers} workers; "
          f"reference: {reference_of(base)}", flush=True)  # fmt: skip
    outcome = launcher.fit(train_loop, cfg, launcher.loop_config(cfg, base, data=str(data))).return_value or {}
    last = finish_run(cfg)
    stopped = bool(outcome.get("stopped"))
    adapter_dir = None if stopped else run_dir / "adapter"
    base_dir = Path(base.base_model) if stopped else adapter_base(adapter_dir)
    return {"run_dir": run_dir, "adapter_dir": adapter_dir, "base_dir": base_dir, "reference": reference_of(base),
            "steps": int(outcome.get("step", 0)), "start_step": int(outcome.get("start_step", 0)), "data": summary,
            "metrics": [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r], "last": last}  # fmt: skip


def adapter_base(adapter_dir: Path) -> Path:
    return Path(json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"])


def plot_rewards(metrics_path: str | Path, png_path: str | Path, title: str, start: tuple[float, str], loss: str) -> Path | None:
    """The loss (with ``start``: its value while policy = reference) and the implicit rewards per step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics_path) if "loss" in r]
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    left.plot(steps, [r["loss"] for r in rows], label=loss)
    left.axhline(start[0], color="grey", linestyle="--", linewidth=0.8, label=start[1])
    left.set_xlabel("optimizer step"), left.set_title(f"{title}: loss"), left.legend(), left.grid(alpha=0.3)
    for key in ("rewards/margins", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "kl"):
        if key in rows[0]:
            right.plot(steps, [r.get(key, math.nan) for r in rows], label=key)
    right.set_xlabel("optimizer step"), right.set_title(f"{title}: implicit rewards"), right.legend(), right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)


# ----------------------------------------------------------------------------- worker


def load_policy(base: ModelConfig, tokenizer):
    """The base model, wrapped with the continued adapter (trainable) when there is one."""
    model = load_model(base.model_copy(update={"adapter": None}), tokenizer)
    if not base.adapter:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, base.adapter, is_trainable=True)


def peft_config(cfg, base: ModelConfig):
    """A new adapter from the ``lora`` section, or None when an adapter is continued (it keeps its own)."""
    return None if base.adapter else cfg.lora.peft()


def drop_reference_copy(adapter_dir: Path) -> None:
    """PEFT saves every adapter of the model; the frozen reference copy is not part of the result."""
    shutil.rmtree(adapter_dir / REFERENCE_ADAPTER, ignore_errors=True)


def cache_key(path: str | Path, cfg) -> str:
    """The data's bytes with the ``model`` and ``train`` sections: what TRL's cached columns depend on."""
    h = hashlib.sha256(Path(path).read_bytes())
    h.update(json.dumps({"model": cfg.model.model_dump(), "train": cfg.train.model_dump()}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def cached_dataset(dataset, folder: Path):
    """``dataset`` as an Arrow file in ``folder``, memory-mapped back: TRL then caches its maps and the
    precomputed reference columns beside it.  Written once (the first rank to link it wins), never replaced."""
    from datasets import Dataset

    arrow = folder / "dataset.arrow"
    if not arrow.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".dataset-{uuid.uuid4().hex}.arrow"
        dataset.flatten_indices(cache_file_name=str(tmp))
        try:
            os.link(tmp, arrow)
        except FileExistsError:
            pass
        tmp.unlink()
    return Dataset.from_file(str(arrow))


def train_policy(config: dict, config_cls: type, trl_config_cls: type, trainer_cls: type, load_dataset: Callable) -> dict:
    """The body of a preference stage's ``train_loop`` on every Ray Train worker.

    ``load_dataset(parquet path, stage config)`` gives the trainer's data set; it reaches TRL through
    :func:`cached_dataset` in ``data/cache/<key>`` beside the Parquet.
    """
    w, args = start_trl_worker(config, config_cls, trl_config_cls)
    folder = Path(config["data"]).parent / "cache" / cache_key(config["data"], w.cfg)
    model = load_policy(w.model, w.tokenizer)  # after the arguments: ZeRO-3 loads partitioned
    with plain_print():  # tokenizing the data set would otherwise log bytecode
        trainer = trainer_cls(model=model, args=args, train_dataset=cached_dataset(load_dataset(config["data"], w.cfg), folder), processing_class=w.tokenizer,
                              peft_config=peft_config(w.cfg, w.model), callbacks=stage_callbacks(w.cfg, w.run_dir, w.run_storage))  # fmt: skip
    outcome = train_and_save(trainer, w.run_dir / "adapter", w.run_storage)
    if trainer.is_world_process_zero() and not outcome.get("stopped"):
        drop_reference_copy(w.run_dir / "adapter")
    return outcome
