"""What the cached reference buys DPO: time per epoch with ``precompute_ref_log_probs`` against without.

    python benchmarks/dpo.py [--epochs 2] [--rounds 1] [--max-length 192] [--batch 4]

Plain ``trl.DPOTrainer`` on the tiny model with a new LoRA adapter (the reference is the base: the
adapter switched off), the tiny DPO config's arguments, the sample feedback and pairs (78 pairs), no
Ray, no DeepSpeed, one CPU thread; each run in its own process (so its peak memory is its own),
uncached and cached interleaved ``--rounds`` times:

- uncached: a reference forward pass in every step;
- cached: the reference log-probabilities computed once when the trainer is built (over the whole
  data set, the data set handed to TRL as the worker does, :func:`medgo.train.preference_stage.cached_dataset`),
  then read from the batch.

Each run's time is building the trainer (the one-off precompute for the cached run) plus ``--epochs``
epochs of training; per epoch is that total over the epochs.  Peak memory is the process's peak
resident set.  Prints the ratio (uncached / cached time per epoch, median of the rounds) against its
target of 1.3, and the training step's ratio alone (``step_ratio``), and writes ``benchmarks/results/dpo.json``.
Over E epochs the cache turns E reference passes per pair into one, so with a training step of P
and a reference pass of R the ratio is at most (E(P + R)) / (EP + R).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from medgo.config import load_config
from medgo.model.loading import load_model
from medgo.model.tokenizer import load_tokenizer
from medgo.train.dpo_config import DPOConfig
from medgo.train.preference import build_preferences, load_pairs
from medgo.train.preference_stage import cache_key, cached_dataset
from medgo.train.trl_stage import trainer_kwargs

RESULTS = Path(__file__).with_name("results") / "dpo.json"
TARGET = 1.3
MODES = ("uncached", "cached")


def child(args) -> dict:
    """One run in this process: build the trainer, train ``--epochs`` epochs; times and peak memory."""
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    torch.set_num_threads(1)
    cfg = load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", [
        f"train.precompute_ref_log_probs={str(args.child == 'cached').lower()}", f"train.num_train_epochs={args.epochs}",
        f"train.max_length={args.max_length}", f"train.per_device_train_batch_size={args.batch}", "train.logging_steps=1000000", "train.save_steps=1000000",
    ])  # fmt: skip
    tokenizer = load_tokenizer()
    with tempfile.TemporaryDirectory(prefix="medgo-bench-dpo-") as tmp:
        data = Path(tmp) / "data"
        build_preferences(cfg.data.feedback, cfg.data.pairs).write(data)
        torch.manual_seed(cfg.train.seed)
        start = time.perf_counter()
        trainer = DPOTrainer(model=load_model(cfg.model, tokenizer), args=TRLDPOConfig(**trainer_kwargs(cfg, output_dir=str(Path(tmp) / "out"), dtype=torch.float32, use_gpu=False, deepspeed=False)),
                             train_dataset=cached_dataset(load_pairs(data / "pairs.parquet"), data / "cache" / cache_key(data / "pairs.parquet", cfg)),
                             processing_class=tokenizer, peft_config=cfg.lora.peft())  # fmt: skip
        built = time.perf_counter()
        trainer.train()
        end = time.perf_counter()
    return {"build_s": built - start, "train_s": end - built, "per_epoch_s": (end - start) / args.epochs, "steps": trainer.state.global_step,
            "step_s": (end - built) / trainer.state.global_step, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def run_child(args, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--epochs", str(args.epochs), "--max-length", str(args.max_length), "--batch", str(args.batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    runs = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            runs[mode].append(run_child(args, mode))
    report(args, runs)


def report(args, runs: dict) -> None:
    per_epoch = {mode: statistics.median(r["per_epoch_s"] for r in rs) for mode, rs in runs.items()}
    ratio = per_epoch["uncached"] / per_epoch["cached"]
    step = {mode: statistics.median(r["step_s"] for r in rs) for mode, rs in runs.items()}
    out = {"ratio": ratio, "target": TARGET, "met": ratio >= TARGET, "per_epoch_s_median": per_epoch,
           "step_ratio": step["uncached"] / step["cached"], "step_s_median": step,
           "peak_rss_mb": {mode: max(r["peak_rss_mb"] for r in rs) for mode, rs in runs.items()}, "runs": runs,
           "measured": "plain trl.DPOTrainer, one process per run (no Ray, no DeepSpeed), tiny model + new LoRA, 1 CPU thread; the cached time includes the precompute",
           "setup": {k: v for k, v in vars(args).items() if k != "child"} | {"cpu_count": os.cpu_count(), "load_average": os.getloadavg()}}  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1), encoding="utf-8")
    for mode, rs in runs.items():
        r = rs[0]
        print(f"{mode:8s} {per_epoch[mode]:7.1f} s/epoch (build {r['build_s']:.1f} s, {r['steps']} steps at {r['step_s']:.2f} s), peak RSS {out['peak_rss_mb'][mode]:.0f} MB")
    print(f"ratio uncached / cached time per epoch, precompute included: {ratio:.2f} (target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'}); "
          f"training step alone: {out['step_ratio']:.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; wrote {RESULTS}")


if __name__ == "__main__":
    main()
