"""DPO from doctors' feedback: TRL's DPOTrainer with LoRA on Ray Train and DeepSpeed ZeRO-3.

    medgo serve export --config serve_configs/local.yaml --output runs/serve/feedback.jsonl
    medgo dpo --config jobs/configs/dpo/tiny.yaml --feedback runs/serve/feedback.jsonl
    ray job submit --working-dir . -- python jobs/dpo.py --config jobs/configs/dpo/qwen2_72b.yaml

The driver turns the doctors' judgements (``data.feedback``: ``medgo serve export`` files, oldest
round first) and ready-made ``{prompt, chosen, rejected}`` files (``data.pairs``) into preference
pairs with :mod:`medgo.train.preference`, drops pairs whose prompt alone fills
``train.max_length`` (counted like every other skipped record), and writes ``data/pairs.parquet``,
``data/summary.json`` and ``data/skipped.jsonl``.  Every Ray Train worker then reads the Parquet and
runs ``trl.DPOTrainer`` (gloo on CPU, nccl on GPU; ZeRO-3 through the trainer's ``deepspeed`` dict), with
the lean cached reference pass of :mod:`medgo.train.dpo_trainer`.

The reference policy (:mod:`medgo.train.preference_stage`, shared with KTO): with ``model.adapter``
unset a new LoRA adapter (``lora`` section) is trained and the base model is the reference; with
``model.adapter`` set (the SFT adapter) DPO continues *that* adapter and the reference is the SFT
policy (a frozen copy of the adapter TRL keeps under the name ``ref``).  The result is one adapter
on the same base: serve it in place of the SFT adapter, no merging of the base needed.

Checkpoints are reported to Ray Train every ``train.save_steps``; re-running the same
command resumes from the last one.  The run directory ``<output_dir>/dpo/<run_name>`` receives
``config.yaml``, ``data/``, ``metrics.jsonl`` (``loss``, ``rewards/chosen``, ``rewards/rejected``,
``rewards/margins``, ``rewards/accuracies``, ``lr`` per ``step``), ``loss_curve.png``,
``rewards_curve.png`` and ``adapter/`` (a PEFT adapter directory with the tokenizer, loadable by
``peft.PeftModel.from_pretrained``; for ``base_model: tiny`` its base is saved to ``<run dir>/base``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from medgo import console
from medgo.config import ConfigError
from medgo.train import preference_stage
from medgo.train.dpo_config import DPOConfig
from medgo.train.preference import build_preferences, judgement_counts, load_pairs, unpaired_count
from medgo.train.preference_stage import PreferenceResult, drop_long_prompts, plot_rewards, read_data, report_data, train_policy

STAGE = DPOConfig.stage


@dataclass
class DPOResult(PreferenceResult):
    pairs: int
    """Preference pairs trained on."""


# ----------------------------------------------------------------------------- data (driver side)


def build_data(cfg: DPOConfig, tokenizer, run_dir: Path) -> tuple[Path, dict]:
    """Write ``data/pairs.parquet``, ``summary.json``, ``skipped.jsonl``; report the counts."""
    prefs = read_data(build_preferences, cfg)
    unpaired = unpaired_count(prefs)
    prefs.pairs = drop_long_prompts(prefs.pairs, prefs.ledger, tokenizer, cfg.train.max_length)
    counts = judgement_counts(STAGE, prefs.judged, prefs.used(), unpaired)
    path = prefs.write(run_dir / "data", judgements=counts)
    summary = {**prefs.summary(), "judgements": counts}
    report_data(STAGE, f"{summary['pairs']} pairs {summary['by_kind']}", summary, prefs.ledger, path)
    if not prefs.pairs:
        raise ConfigError(f"no preference pairs in data.feedback {cfg.data.feedback} and data.pairs {cfg.data.pairs} (see {path.parent / 'skipped.jsonl'})")
    return path, summary


# ----------------------------------------------------------------------------- driver


def run(cfg: DPOConfig) -> DPOResult:
    """Build the pairs, train on Ray Train, write the adapter and the curves."""
    from trl import DPOConfig as TRLDPOConfig

    fields = preference_stage.fit(cfg, TRLDPOConfig, build_data, train_loop, "pairs")
    last = fields.pop("last")
    plot_rewards(fields["run_dir"] / "metrics.jsonl", fields["run_dir"] / "rewards_curve.png", f"dpo {cfg.run_name}",
                 (math.log(2), "log 2 (policy = reference)"), "DPO loss")  # fmt: skip
    console.summary(f"dpo '{cfg.run_name}': {fields['steps']} steps, loss {last.get('loss')}, margin {last.get('rewards/margins')}, "
          f"accuracy {last.get('rewards/accuracies')}; adapter {fields['run_dir'] / 'adapter'}")  # fmt: skip
    return DPOResult(**fields, pairs=fields["data"]["pairs"])


# ----------------------------------------------------------------------------- worker


def load_dataset(path: str, cfg: DPOConfig):
    return load_pairs(path)


def train_loop(config: dict) -> dict:
    """Runs on every Ray Train worker."""
    from trl import DPOConfig as TRLDPOConfig

    from medgo.train.dpo_trainer import DPOTrainer

    return train_policy(config, DPOConfig, TRLDPOConfig, DPOTrainer, load_dataset)
