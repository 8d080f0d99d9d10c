"""What packing buys SFT: training tokens/s with TRL's packed, padding-free batches against padded batches.

    python benchmarks/sft.py [--conversations 160] [--rounds 2] [--max-length 1024] [--batch 4] [--packed-batch N]

The stage's ``SFTTrainer`` set-up (the model from :func:`medgo.train.sft.load_policy`, the tiny SFT
config's arguments with LoRA, assistant-only loss, the fused head scoring labelled positions only) in this process, no Ray, no DeepSpeed, one CPU thread,
on the same conversations (the tiny config's mixture, ``--conversations`` of them spread evenly over it),
one epoch each, interleaved ``--rounds`` times.  ``--max-length`` is long enough by default to keep every
conversation of the mixture whole (the longest is about 600 tokens), as the stage's cluster config does
with 4096; at the tiny config's 256 a third of them are cut to exactly 256 tokens, which hides most of
the padding packing removes.  The two set-ups:

- padded: ``packing: false``, ``--batch`` conversations per step, each batch padded to its longest;
- packed: ``packing: true`` (TRL ``bfd``), conversations packed whole into rows of ``--max-length``,
  flattened padding-free with per-conversation positions, attended one conversation at a time
  (:mod:`medgo.train.packed_attention`); ``--packed-batch`` rows per step, by default as many as makes
  the packed epoch as many steps as the padded one, so that a step of each carries the same training
  tokens on average.

Training tokens are the conversations' own tokens (not padding); tokens/s is that count over the
epoch's wall time (the CPU time of each epoch is recorded too: the machine may be shared).  The padding
share is padded positions over all positions the model computed.  With a cost proportional to the
positions computed, dropping the padding speeds training up by 1 / (1 - the padded run's padding share),
printed beside the ratio (``padding_ceiling``; attention, quadratic in a row's length and masked
in the padded rows, moves the measured ratio off it).  Prints the ratio (packed / padded tokens/s, median of the
rounds) against its target of 1.5 and writes ``benchmarks/results/sft.json``.
Ray's and the libraries' lines go to ``benchmarks/results/logs/sft-<time>.log`` (``MEDGO_VERBOSE=1``: on the terminal).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from medgo import console
from medgo.config import load_config
from medgo.model.tokenizer import load_tokenizer
from medgo.train.sft import FIXED, load_policy, packed_rows, read_mixture
from medgo.train.sft_config import SFTConfig
from medgo.train.trl_stage import score_labelled_positions_only, trainer_kwargs

RESULTS = Path(__file__).with_name("results") / "sft.json"
TARGET, PADDING_TARGET = 1.5, 0.05


def trainer(cfg: SFTConfig, tokenizer, conversations: list, out: str):
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    score_labelled_positions_only()  # as the stage's workers do
    torch.manual_seed(cfg.train.seed)
    args = TRLSFTConfig(**trainer_kwargs(cfg, output_dir=out, dtype=torch.float32, use_gpu=False, deepspeed=False), **FIXED)
    data = Dataset.from_list([{"messages": m} for m in conversations])
    return SFTTrainer(model=load_policy(cfg.model, tokenizer, cfg.train.packing), args=args, train_dataset=data, processing_class=tokenizer, peft_config=cfg.lora.peft())


def batch_tokens(trainer) -> tuple[int, int]:
    """``(conversation tokens, positions computed)`` over one epoch of the trainer's batches."""
    real = total = 0
    for batch in trainer.get_train_dataloader():
        total += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
    return real, total


def one_epoch(cfg: SFTConfig, tokenizer, conversations: list) -> dict:
    with tempfile.TemporaryDirectory(prefix="medgo-bench-sft-") as out:
        t = trainer(cfg, tokenizer, conversations, out)
        real, total = batch_tokens(t)
        start, cpu = time.perf_counter(), time.process_time()
        t.train()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    steps = t.state.global_step
    return {"tokens_per_s": real / seconds, "tokens_per_cpu_s": real / cpu, "seconds": seconds, "cpu_s": cpu, "tokens": real, "positions": total,
            "padding_share": 1 - real / total, "steps": steps, "batch": cfg.train.per_device_train_batch_size, "positions_per_step": total / steps,
            "attention": t.model.get_base_model().config._attn_implementation}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--packed-batch", type=int, default=0, help="packed rows per step (default: as many steps as padded)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    common = ["train.num_train_epochs=1", "train.logging_steps=1000000", "train.save_steps=1000000", f"train.max_length={args.max_length}", "train.gradient_accumulation_steps=1"]
    with console.quietly("sft", RESULTS.parent):
        tokenizer = load_tokenizer()
        rows, _, _ = read_mixture(load_config(SFTConfig, "jobs/configs/sft/tiny.yaml", common), tokenizer)
        picked = rows[:: max(1, len(rows) // args.conversations)][: args.conversations]
        conversations = [r["messages"] for r in picked]
        args.packed_rows = packed_rows([r["tokens"] for r in picked], args.max_length)
        args.packed_batch = args.packed_batch or max(1, round(args.packed_rows / math.ceil(len(conversations) / args.batch)))
        cfgs = {mode: load_config(SFTConfig, "jobs/configs/sft/tiny.yaml", [*common, f"train.packing={str(mode == 'packed').lower()}", f"train.per_device_train_batch_size={batch}"])
                for mode, batch in (("padded", args.batch), ("packed", args.packed_batch))}  # fmt: skip
        runs = {mode: [] for mode in cfgs}
        for _ in range(args.rounds):
            for mode, cfg in cfgs.items():
                runs[mode].append(one_epoch(cfg, tokenizer, conversations))
    report(args, conversations, runs)


def report(args, conversations: list, runs: dict) -> None:
    rate = {mode: statistics.median(r["tokens_per_s"] for r in rs) for mode, rs in runs.items()}
    cpu_rate = {mode: statistics.median(r["tokens_per_cpu_s"] for r in rs) for mode, rs in runs.items()}
    padding = {mode: rs[0]["padding_share"] for mode, rs in runs.items()}
    ratio, cpu_ratio, ceiling = rate["packed"] / rate["padded"], cpu_rate["packed"] / cpu_rate["padded"], 1 / (1 - padding["padded"])
    out = {"ratio": ratio, "target": TARGET, "met": ratio >= TARGET, "padding_share": padding, "padding_target_packed": PADDING_TARGET,
           "padding_ceiling": ceiling, "cpu_ratio": cpu_ratio, "tokens_per_s_median": rate, "tokens_per_cpu_s_median": cpu_rate, "runs": runs,
           "measured": "the stage's SFTTrainer set-up in one process (no Ray, no DeepSpeed), tiny model + LoRA, 1 CPU thread; ratio: packed / padded training tokens/s",
           "setup": {**vars(args), "conversations_used": len(conversations), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}}  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1), encoding="utf-8")
    for mode, rs in runs.items():
        rounds = ", ".join(f"{r['tokens_per_s']:.0f}" for r in rs)
        print(f"{mode:7s} {rate[mode]:6.0f} tokens/s (rounds: {rounds}; {cpu_rate[mode]:.0f} per CPU second), {rs[0]['steps']} steps of {rs[0]['batch']} rows, "
              f"{rs[0]['positions_per_step']:.0f} positions a step, padding {padding[mode]:.1%} of {rs[0]['positions']} positions, attention {rs[0]['attention']}")  # fmt: skip
    print(f"ratio packed / padded tokens/s: {ratio:.2f} (target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'}; in CPU time {cpu_ratio:.2f}; "
          f"dropping the padded run's padding alone gives {ceiling:.2f}); "
          f"packed padding {padding['packed']:.1%} (target < {PADDING_TARGET:.0%}: {'met' if padding['packed'] < PADDING_TARGET else 'MISSED'})")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; wrote {RESULTS}")


if __name__ == "__main__":
    main()
