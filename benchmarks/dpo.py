"""What the cached reference buys DPO: step time and time per epoch with ``precompute_ref_log_probs`` against without.

    python benchmarks/dpo.py [--epochs 2] [--rounds 2] [--max-length 192] [--batch 4]

The stage's ``DPOTrainer`` (:mod:`medgo.train.dpo_trainer`, the fused head scoring labelled positions only) on the tiny model with a new LoRA adapter
(the reference is the base: the adapter switched off), the tiny DPO config's arguments, the sample
feedback and pairs (78 pairs), no Ray, no DeepSpeed, one CPU thread; each run in its own process (so
its peak memory is its own), uncached and cached interleaved ``--rounds`` times:

- uncached: a reference forward pass in every step;
- cached: the reference log-probabilities computed once when the trainer is built (over the whole
  data set, the data set handed to TRL as the worker does, :func:`medgo.train.preference_stage.cached_dataset`;
  the stage's lean pass, completion tokens only), then read from the batch.

Each run's time is building the trainer (the one-off precompute for the cached run) plus ``--epochs``
epochs of training; per epoch is that total over the epochs, a step is the training time over the
steps.  Peak memory is the process's peak resident set; the CPU seconds of each run are recorded beside
its wall time (the machine may be shared: CPU time is the less noisy of the two).  Prints, each against
the target of 1.3 and as medians of the rounds, ``ratio`` (uncached / cached step time) and
``per_epoch_ratio`` (uncached / cached time per epoch, the one-off precompute included), and writes
``benchmarks/results/dpo.json``.  Over E epochs the cache turns E reference passes per pair into one
precompute pass of cost R', so with a training step of P and an in-step reference pass of R the
per-epoch ratio is E(P + R) / (EP + R'): the precompute has to be cheap for it to approach the step ratio.
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
from medgo.train.dpo_trainer import DPOTrainer
from medgo.train.preference import build_preferences, load_pairs
from medgo.train.preference_stage import cache_key, cached_dataset
from medgo.train.trl_stage import score_labelled_positions_only, trainer_kwargs

RESULTS = Path(__file__).with_name("results") / "dpo.json"
TARGET = 1.3
MODES = ("uncached", "cached")


def child(args) -> dict:
    """One run in this process: build the trainer, train ``--epochs`` epochs; times and peak memory."""
    from trl import DPOConfig as TRLDPOConfig

    torch.set_num_threads(1)
    cfg = load_config(DPOConfig, "jobs/configs/dpo/tiny.yaml", [
        f"train.precompute_ref_log_probs={str(args.child == 'cached').lower()}", f"train.num_train_epochs={args.epochs}",
        f"train.max_length={args.max_length}", f"train.per_device_train_batch_size={args.batch}", "train.logging_steps=1000000", "train.save_steps=1000000",
    ])  # fmt: skip
    tokenizer = load_tokenizer()
    with tempfile.TemporaryDirectory(prefix="medgo-bench-dpo-") as tmp:
        data = Path(tmp) / "data"
        build_preferences(cfg.data.feedback, cfg.data.pairs).write(data)
        score_labelled_positions_only()  # as the stage's workers do
        torch.manual_seed(cfg.train.seed)
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer = DPOTrainer(model=load_model(cfg.model, tokenizer), args=TRLDPOConfig(**trainer_kwargs(cfg, output_dir=str(Path(tmp) / "out"), dtype=torch.float32, use_gpu=False, deepspeed=False)),
                             train_dataset=cached_dataset(load_pairs(data / "pairs.parquet"), data / "cache" / cache_key(data / "pairs.parquet", cfg)),
                             processing_class=tokenizer, peft_config=cfg.lora.peft())  # fmt: skip
        built, cpu_built = time.perf_counter(), time.process_time()
        trainer.train()
        end, cpu_end = time.perf_counter(), time.process_time()
    steps = trainer.state.global_step
    return {"build_s": built - start, "train_s": end - built, "per_epoch_s": (end - start) / args.epochs, "steps": steps, "step_s": (end - built) / steps,
            "build_cpu_s": cpu_built - cpu_start, "per_epoch_cpu_s": (cpu_end - cpu_start) / args.epochs, "step_cpu_s": (cpu_end - cpu_built) / steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def run_child(args, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--epochs", str(args.epochs), "--max-length", str(args.max_length), "--batch", str(args.batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
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
    def median(key: str) -> dict:
        return {mode: statistics.median(r[key] for r in rs) for mode, rs in runs.items()}

    def ratio(key: str) -> float:
        m = median(key)
        return m["uncached"] / m["cached"]

    step, per_epoch = ratio("step_s"), ratio("per_epoch_s")
    out = {"ratio": step, "target": TARGET, "met": step >= TARGET, "step_s_median": median("step_s"),
           "per_epoch_ratio": per_epoch, "per_epoch_met": per_epoch >= TARGET, "per_epoch_s_median": median("per_epoch_s"),
           "cpu_ratio": ratio("step_cpu_s"), "per_epoch_cpu_ratio": ratio("per_epoch_cpu_s"), "build_s_median": median("build_s"),
           "peak_rss_mb": {mode: max(r["peak_rss_mb"] for r in rs) for mode, rs in runs.items()}, "runs": runs,
           "measured": "the stage's DPOTrainer, one process per run (no Ray, no DeepSpeed), tiny model + new LoRA, 1 CPU thread; "
                       "ratio: uncached / cached step time; per_epoch_ratio: uncached / cached time per epoch, the cached run's precompute included",
           "setup": {k: v for k, v in vars(args).items() if k != "child"} | {"cpu_count": os.cpu_count(), "load_average": os.getloadavg()}}  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1), encoding="utf-8")
    for mode, rs in runs.items():
        rounds = ", ".join(f"{r['per_epoch_s']:.1f}" for r in rs)
        print(f"{mode:8s} {out['per_epoch_s_median'][mode]:5.1f} s/epoch (rounds: {rounds}; build {out['build_s_median'][mode]:.1f} s), "
              f"{rs[0]['steps']} steps at {out['step_s_median'][mode]:.3f} s, peak RSS {out['peak_rss_mb'][mode]:.0f} MB")  # fmt: skip
    for name, value, cpu in (("ratio uncached / cached step time", step, out["cpu_ratio"]),
                             ("per-epoch ratio, precompute included", per_epoch, out["per_epoch_cpu_ratio"])):  # fmt: skip
        print(f"{name}: {value:.2f} (target >= {TARGET}: {'met' if value >= TARGET else 'MISSED'}; in CPU time {cpu:.2f})")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; wrote {RESULTS}")


if __name__ == "__main__":
    main()
