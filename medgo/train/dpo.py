"""DPO from doctors' feedback: TRL's DPOTrainer with LoRA on Ray Train and DeepSpeed ZeRO-3.

    medgo serve export --config serve_configs/local.yaml --output runs/serve/feedback.jsonl
    medgo dpo --config jobs/configs/dpo/tiny.yaml --feedback runs/serve/feedback.jsonl
    ray job submit --working-dir . -- python jobs/dpo.py --config jobs/configs/dpo/qwen2_72b.yaml

The driver turns the doctors' judgements (``data.feedback``: ``medgo serve export`` files, oldest
round first) and ready-made ``{prompt, chosen, rejected}`` files (``data.pairs``) into preference
pairs with :mod:`medgo.train.preference`, drops pairs whose prompt alone fills
``train.max_length`` (counted like every other skipped record), and writes ``data/pairs.parquet``,
``data/summary.json`` and ``data/skipped.jsonl``.  Every Ray Train worker then reads the Parquet and
runs ``trl.DPOTrainer`` (gloo on CPU, nccl on GPU; ZeRO-3 through the trainer's ``deepspeed`` dict).

The reference policy:

* ``model.adapter`` unset: a new LoRA adapter (``lora`` section) is trained on the base model;
  the reference is the base model itself (TRL disables the adapter to compute it).
* ``model.adapter`` set (the SFT adapter): DPO continues training *that* adapter, and the
  reference is the SFT policy — TRL keeps a frozen copy of the adapter under the name ``ref``
  and switches to it for the reference log-probabilities.  The ``lora`` section is not used (the
  adapter keeps the SFT rank and targets).  The result is one adapter on the same base as the
  SFT adapter: serve it in place of the SFT adapter, no merging of the base needed.

Checkpoints are reported to Ray Train every ``train.save_steps``; re-running the same
command resumes from the last one.  The run directory ``<output_dir>/dpo/<run_name>`` receives
``config.yaml``, ``data/``, ``metrics.jsonl`` (``loss``, ``rewards/chosen``, ``rewards/rejected``,
``rewards/margins``, ``rewards/accuracies``, ``lr`` per ``step``), ``loss_curve.png``,
``rewards_curve.png`` and ``adapter/`` (a PEFT adapter directory with the tokenizer, loadable by
``peft.PeftModel.from_pretrained``; for ``base_model: tiny`` its base is saved to ``<run dir>/base``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from medgo import console
from medgo.config import ConfigError, ModelConfig, save_config
from medgo.model.loading import load_model, resolve_tokenizer_path
from medgo.model.tokenizer import load_tokenizer
from medgo.train import launcher
from medgo.train.base_model import materialise_base
from medgo.train.callbacks import stage_callbacks
from medgo.train.dpo_config import DPOConfig
from medgo.train.faults import check_drill
from medgo.train.metrics import read_metrics
from medgo.train.preference import PreferenceSet, build_preferences, load_pairs
from medgo.train.trl_stage import finish_run, plain_print, start_trl_worker, total_steps, train_and_save, validate_trainer_args

STAGE = DPOConfig.stage
REFERENCE_ADAPTER = "ref"
"""Name under which TRL keeps the frozen copy of a continued adapter (the reference policy)."""


@dataclass
class DPOResult:
    run_dir: Path
    adapter_dir: Path | None
    """None when ``debug.stop_at_step`` stopped the run."""
    base_dir: Path
    """The base model the adapter applies to."""
    reference: str
    """``base model`` or ``sft adapter <dir>``: what the rewards are measured against."""
    steps: int
    start_step: int
    """Step the last worker-group attempt resumed from (0: it started fresh)."""
    pairs: int
    data: dict
    """``data/summary.json``: pairs by kind, skipped records by reason."""
    metrics: list[dict]
    """Every logged step of metrics.jsonl."""


# ----------------------------------------------------------------------------- data (driver side)


def prompt_length(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])


def drop_long_prompts(prefs: PreferenceSet, tokenizer, max_length: int) -> PreferenceSet:
    """Drop pairs whose prompt alone fills ``max_length`` (TRL would drop them silently)."""
    kept = []
    for pair in prefs.pairs:
        n = prompt_length(tokenizer, pair.row()["prompt"])
        if n >= max_length:
            prefs.ledger.skip(pair.origin, "prompt_too_long", f"{n} prompt tokens >= train.max_length {max_length}")
        else:
            kept.append(pair)
    prefs.pairs = kept
    return prefs


def build_data(cfg: DPOConfig, tokenizer, run_dir: Path) -> tuple[Path, dict]:
    """Write ``data/pairs.parquet``, ``summary.json``, ``skipped.jsonl``; report the counts."""
    try:
        prefs = build_preferences(cfg.data.feedback, cfg.data.pairs, raw_unsafe=cfg.data.raw_feedback_unsafe)
    except FileNotFoundError as exc:
        raise ConfigError(f"data: {exc}") from None
    if cfg.data.raw_feedback_unsafe:
        print("dpo data: WARNING data.raw_feedback_unsafe is set: training on raw feedback, identifiers included", flush=True)
    prefs = drop_long_prompts(prefs, tokenizer, cfg.train.max_length)
    path = prefs.write(run_dir / "data")
    summary = prefs.summary()
    scrubbed = "not de-identified" if summary["deidentified"] is None else f"identifiers replaced {summary['deidentified']}"
    print(f"dpo data: {summary['pairs']} pairs {summary['by_kind']}; skipped {summary['skipped']}; {scrubbed}", flush=True)
    bad = [s for s in prefs.ledger.skipped if s.reason not in ("unpaired", "superseded")]
    for s in bad[:20]:
        print(f"dpo data: skipped {s.source}:{s.line}: {s.reason} {s.detail}", flush=True)
    if len(bad) > 20:
        print(f"dpo data: ... {len(bad) - 20} more in {path.parent / 'skipped.jsonl'}", flush=True)
    if not prefs.pairs:
        raise ConfigError(f"no preference pairs in data.feedback {cfg.data.feedback} and data.pairs {cfg.data.pairs} (see {path.parent / 'skipped.jsonl'})")
    return path, summary


# ----------------------------------------------------------------------------- driver


def check_adapter(model: ModelConfig) -> None:
    if model.adapter and not Path(model.adapter, "adapter_config.json").expanduser().is_file():
        raise ConfigError(f"model.adapter: {model.adapter} is not a PEFT adapter directory (adapter_config.json is missing)")


def policy_base(model: ModelConfig, run_dir: Path) -> ModelConfig:
    """The base every worker loads by path, with the SFT adapter (absolute) when one is continued."""
    if not model.adapter:
        return materialise_base(model, run_dir)
    base = materialise_base(model.model_copy(update={"adapter": None}), run_dir)
    return base.model_copy(update={"adapter": str(Path(model.adapter).expanduser().resolve())})


def reference_of(base: ModelConfig) -> str:
    return f"sft adapter {base.adapter}" if base.adapter else "base model"


def run(cfg: DPOConfig) -> DPOResult:
    """Build the pairs, train on Ray Train, write the adapter and the curves."""
    from trl import DPOConfig as TRLDPOConfig

    validate_trainer_args(TRLDPOConfig, cfg)
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    check_adapter(cfg.model)
    data, summary = build_data(cfg, load_tokenizer(resolve_tokenizer_path(cfg.model)), run_dir)
    steps = total_steps(summary["pairs"], cfg.train, cfg.ray.num_workers)
    check_drill(cfg.debug, steps)
    base = policy_base(cfg.model, run_dir)
    print(f"dpo '{cfg.run_name}': {summary['pairs']} pairs, about {steps} optimizer steps on {cfg.ray.num_workers} workers; "
          f"reference: {reference_of(base)}", flush=True)  # fmt: skip
    outcome = launcher.fit(train_loop, cfg, launcher.loop_config(cfg, base, data=str(data))).return_value or {}
    last = finish_run(cfg)
    plot_rewards(run_dir / "metrics.jsonl", run_dir / "rewards_curve.png", title=f"dpo {cfg.run_name}")
    console.summary(f"dpo '{cfg.run_name}': {outcome.get('step')} steps, loss {last.get('loss')}, margin {last.get('rewards/margins')}, "
          f"accuracy {last.get('rewards/accuracies')}; adapter {run_dir / 'adapter'}")  # fmt: skip
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
    if outcome.get("stopped"):
        return DPOResult(run_dir, None, Path(base.base_model), reference_of(base), int(outcome.get("step", 0)), int(outcome.get("start_step", 0)),
                         summary["pairs"], summary, rows)  # fmt: skip
    base_dir = Path(json.loads((run_dir / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"])
    return DPOResult(run_dir, run_dir / "adapter", base_dir, reference_of(base), int(outcome.get("step", 0)), int(outcome.get("start_step", 0)),
                     summary["pairs"], summary, rows)  # fmt: skip


def plot_rewards(metrics_path: str | Path, png_path: str | Path, title: str = "dpo") -> Path | None:
    """DPO loss (with log 2, its value at the start) and the implicit rewards per step, as a PNG."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics_path) if "loss" in r]
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    left.plot(steps, [r["loss"] for r in rows], label="DPO loss")
    left.axhline(math.log(2), color="grey", linestyle="--", linewidth=0.8, label="log 2 (policy = reference)")
    left.set_xlabel("optimizer step"), left.set_title(f"{title}: loss"), left.legend(), left.grid(alpha=0.3)
    for key in ("rewards/margins", "rewards/chosen", "rewards/rejected", "rewards/accuracies"):
        if key in rows[0]:
            right.plot(steps, [r.get(key, math.nan) for r in rows], label=key)
    right.set_xlabel("optimizer step"), right.set_title(f"{title}: implicit rewards"), right.legend(), right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)


# ----------------------------------------------------------------------------- worker


def load_policy(base: ModelConfig, tokenizer):
    """The base model, wrapped with the SFT adapter (trainable) when one is continued."""
    model = load_model(base.model_copy(update={"adapter": None}), tokenizer)
    if not base.adapter:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, base.adapter, is_trainable=True)


def peft_config(cfg: DPOConfig, base: ModelConfig):
    """A new adapter from the ``lora`` section, or None when an SFT adapter is continued (it keeps its own)."""
    return None if base.adapter else cfg.lora.peft()


def drop_reference_copy(adapter_dir: Path) -> None:
    """PEFT saves every adapter of the model; the frozen reference copy is not part of the result."""
    shutil.rmtree(adapter_dir / REFERENCE_ADAPTER, ignore_errors=True)


def train_loop(config: dict) -> dict:
    """Runs on every Ray Train worker."""
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    w, args = start_trl_worker(config, DPOConfig, TRLDPOConfig)
    model = load_policy(w.model, w.tokenizer)  # after the arguments: ZeRO-3 loads partitioned
    with plain_print():  # tokenizing the data set would otherwise log bytecode
        trainer = DPOTrainer(model=model, args=args, train_dataset=load_pairs(config["data"]), processing_class=w.tokenizer,
                             peft_config=peft_config(w.cfg, w.model), callbacks=stage_callbacks(w.cfg, w.run_dir, w.run_storage))  # fmt: skip
    outcome = train_and_save(trainer, w.run_dir / "adapter", w.run_storage)
    if trainer.is_world_process_zero() and not outcome.get("stopped"):
        drop_reference_copy(w.run_dir / "adapter")
    return outcome
