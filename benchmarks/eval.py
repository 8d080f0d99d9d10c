"""Batched vs one-at-a-time generation on the same evaluation prompts (tiny model, CPU by default).

    python benchmarks/eval.py [--batch-size 16] [--max-new-tokens 32] [--prompts 48] [--repeats 3]

Both sides run greedy ``generate`` through :func:`medgo.eval.generation.generate_texts` in this
process on the PromptCBLUE sample prompts, alternating, best of ``--repeats`` each; the replies
are checked to be identical, so the throughput ratio compares the same work.  Prints the ratio and writes
``benchmarks/results/eval.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from medgo.assets import asset_path
from medgo.config import ModelConfig
from medgo.eval.generation import generate_texts, render_prompt
from medgo.model import load_model_and_tokenizer

RESULTS = Path(__file__).resolve().parent / "results" / "eval.json"


def sample_prompts(tokenizer, n: int) -> list[str]:
    lines = asset_path("promptcblue", "dev.json").read_text(encoding="utf-8").splitlines()
    inputs = [json.loads(line)["input"] for line in lines if line.strip()]
    inputs = (inputs * (n // len(inputs) + 1))[:n]
    return [render_prompt(tokenizer, [{"role": "user", "content": text}]) for text in inputs]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model_and_tokenizer(ModelConfig(), device)
    model.eval()
    prompts = sample_prompts(tokenizer, args.prompts)
    generate_texts(model, tokenizer, prompts[:2], 4)  # warm-up
    sequential = lambda: [generate_texts(model, tokenizer, [p], args.max_new_tokens)[0] for p in prompts]  # noqa: E731
    batched = lambda: [r for i in range(0, len(prompts), args.batch_size) for r in generate_texts(model, tokenizer, prompts[i : i + args.batch_size], args.max_new_tokens)]  # noqa: E731
    t_seq = t_bat = float("inf")
    for _ in range(args.repeats):  # alternate the sides and keep each one's best time, so load spikes hit neither
        seq, t = timed(sequential)
        t_seq = min(t_seq, t)
        bat, t = timed(batched)
        t_bat = min(t_bat, t)
    assert bat == seq, "batched and one-at-a-time greedy replies differ"
    tokens = sum(n for _, n in seq)
    result = {
        "prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "generated_tokens": tokens,
        "sequential_s": round(t_seq, 3),
        "batched_s": round(t_bat, 3),
        "sequential_tok_per_s": round(tokens / t_seq, 1),
        "batched_tok_per_s": round(tokens / t_bat, 1),
        "ratio": round(t_seq / t_bat, 2),
        "target_ratio": 3.0,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"one-at-a-time: {result['sequential_tok_per_s']} tok/s; batched ({args.batch_size}): {result['batched_tok_per_s']} tok/s")
    print(f"ratio batched / one-at-a-time: {result['ratio']}x (target >= 3x) -> {RESULTS}")
    return result


if __name__ == "__main__":
    main()
