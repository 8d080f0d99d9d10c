"""KTO from doctors' judgements, paired or not: TRL's KTOTrainer with LoRA on Ray Train and DeepSpeed ZeRO-3.

    medgo serve export --config serve_configs/local.yaml --output runs/serve/feedback.jsonl
    medgo kto --config jobs/configs/kto/tiny.yaml --feedback runs/serve/feedback.jsonl
    ray job submit --working-dir . -- python jobs/kto.py --config jobs/configs/kto/qwen2_72b.yaml

DPO needs a pair for every judgement it learns from; KTO learns from each judgement alone, so an
acceptable answer with no unacceptable one beside it still counts.  The driver turns the
judgements (``data.feedback``: ``medgo serve export`` files, oldest round first) and ready-made
``{prompt, chosen, rejected}`` files (``data.pairs``) into desirable and undesirable rows with
:mod:`medgo.train.kto_data`, drops rows whose prompt alone fills ``train.max_length`` (counted
like every other skipped record), and writes ``data/rows.parquet``, ``data/summary.json`` (with
``judgements``: how many judgements KTO used, :func:`medgo.train.kto_data.choose_method`'s counts)
and ``data/skipped.jsonl``.  Every Ray Train worker then reads the Parquet in a seeded order and
runs ``trl.KTOTrainer`` (gloo on CPU, nccl on GPU; ZeRO-3 through the trainer's ``deepspeed`` dict).

The reference policy is DPO's (:mod:`medgo.train.preference_stage`): the base model for a new
LoRA adapter, or, with ``model.adapter`` set (e.g. the production adapter), that adapter's policy
while the stage continues training the adapter itself.

Checkpoints are reported to Ray Train every ``train.save_steps``; re-running the same command
resumes from the last one.  The run directory ``<output_dir>/kto/<run_name>`` receives
``config.yaml``, ``data/``, ``metrics.jsonl`` (``loss``, ``kl``, ``rewards/chosen``,
``rewards/rejected``, ``rewards/margins``, ``logps/*``, ``lr`` per ``step``), ``loss_curve.png``,
``rewards_curve.png`` and ``adapter/`` (a PEFT adapter directory with the tokenizer, loadable by
``peft.PeftModel.from_pretrained``; for ``base_model: tiny`` its base is saved to ``<run dir>/base``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medgo import console
from medgo.config import ConfigError
from medgo.train import preference_stage
from medgo.train.kto_config import KTOConfig
from medgo.train.kto_data import build_unpaired, load_rows
from medgo.train.preference import build_preferences, judgement_counts, unpaired_count
from medgo.train.preference_stage import drop_long_prompts, plot_rewards, read_data, report_data, train_policy

STAGE = KTOConfig.stage


@dataclass
class KTOResult:
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
    rows: int
    data: dict
    """``data/summary.json``: rows by label and kind, skipped records by reason, ``judgements`` (:func:`medgo.train.preference.judgement_counts`)."""
    metrics: list[dict]
    """Every logged step of metrics.jsonl."""


# ----------------------------------------------------------------------------- data (driver side)


def build_data(cfg: KTOConfig, tokenizer, run_dir: Path) -> tuple[Path, dict]:
    """Write ``data/rows.parquet``, ``summary.json``, ``skipped.jsonl``; report the counts."""
    rows = read_data(build_unpaired, cfg)
    unpaired = unpaired_count(build_preferences(cfg.data.feedback, cfg.data.pairs, raw_unsafe=cfg.data.raw_feedback_unsafe))
    rows.examples = drop_long_prompts(rows.examples, rows.ledger, tokenizer, cfg.train.max_length)
    counts = judgement_counts(STAGE, rows.judged, rows.used(), unpaired)
    path = rows.write(run_dir / "data", judgements=counts)
    summary = {**rows.summary(), "judgements": counts}
    head = f"{summary['rows']} rows ({summary['desirable']} desirable, {summary['undesirable']} undesirable) {summary['by_kind']}"
    report_data(STAGE, head, summary, rows.ledger, path)
    if not rows.examples:
        raise ConfigError(f"no KTO rows in data.feedback {cfg.data.feedback} and data.pairs {cfg.data.pairs} (see {path.parent / 'skipped.jsonl'})")
    return path, summary


# ----------------------------------------------------------------------------- driver


def run(cfg: KTOConfig) -> KTOResult:
    """Build the rows, train on Ray Train, write the adapter and the curves."""
    from trl import KTOConfig as TRLKTOConfig

    fields = preference_stage.fit(cfg, TRLKTOConfig, build_data, train_loop, "rows")
    last = fields.pop("last")
    start = cfg.train.desirable_weight * 0.5  # every row's loss is weight x (1 - sigmoid(0)) while policy = reference
    plot_rewards(fields["run_dir"] / "metrics.jsonl", fields["run_dir"] / "rewards_curve.png", f"kto {cfg.run_name}",
                 (start, "policy = reference (desirable rows)"), "KTO loss")  # fmt: skip
    console.summary(f"kto '{cfg.run_name}': {fields['steps']} steps, loss {last.get('loss')}, margin {last.get('rewards/margins')}, "
          f"kl {last.get('kl')}; adapter {fields['run_dir'] / 'adapter'}")  # fmt: skip
    return KTOResult(**fields, rows=fields["data"]["rows"])


# ----------------------------------------------------------------------------- worker


def load_dataset(path: str, cfg: KTOConfig):
    return load_rows(path, cfg.train.seed)


def train_loop(config: dict) -> dict:
    """Runs on every Ray Train worker."""
    from trl import KTOConfig as TRLKTOConfig
    from trl import KTOTrainer

    return train_policy(config, KTOConfig, TRLKTOConfig, KTOTrainer, load_dataset)
