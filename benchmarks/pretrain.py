"""What the Ray Train + DeepSpeed wrapper costs: tokens/s of the pre-training loop against a plain PyTorch loop.

    python benchmarks/pretrain.py [--steps 30] [--warmup 8] [--rounds 3] [--hidden 128] [--layers 4] [--block 128]

Same model (a Qwen2 of the given size), same packed blocks (the sample corpus), same micro-batch,
one CPU thread per worker.  Each figure is tokens/s at the median step time after warm-up (other
processes on a shared machine make the mean noisy), measured ``--rounds`` times, interleaved; the
median and the best round are both reported:

- plain: one process, ``torch.optim.AdamW``, blocks from memory;
- DeepSpeed ZeRO-0 in one process, no Ray (the engine's own cost);
- ``medgo pretrain`` with 1 worker under Ray Train, ZeRO-0 and ZeRO-3: the whole loop (Ray Data
  stream, engine, metrics sinks); ZeRO-0 over plain is the headline ratio (``ratio``, target >= 0.9);
- ``medgo pretrain`` with 2 workers, ZeRO-3 (global tokens/s, 2 over 1 worker);
- a step-time breakdown of the 2-worker ZeRO-3 step from ``torch.profiler``: waiting for data,
  time inside collectives (gloo/nccl), and the rest (compute).

Prints the figures and writes ``benchmarks/results/pretrain.json``; Ray's and the libraries' lines go to
``benchmarks/results/logs/pretrain-<time>.log`` (``MEDGO_VERBOSE=1``: everything on the terminal).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from medgo import console
from medgo.assets import iter_sample_corpus
from medgo.config import ModelConfig, TinyModelSpec, load_config
from medgo.model import load_model, load_tokenizer
from medgo.model.tokenizer import tokenizer_fingerprint
from medgo.train.metrics import read_metrics
from medgo.train.pretrain import run
from medgo.train.pretrain_config import PretrainConfig

TARGET = 0.9
"""Ray Train with one worker (ZeRO-0) keeps at least this share of a plain PyTorch loop's tokens/s."""
RESULTS = Path(__file__).with_name("results") / "pretrain.json"


def pack(tokenizer, out: Path, block: int) -> Path:
    """The sample corpus in the corpus stage's layout (every 50th document held out)."""
    streams = {"train": [], "validation": []}
    for i, text in enumerate(iter_sample_corpus()):
        streams["validation" if i % 50 == 0 else "train"] += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    splits = {}
    for split, ids in streams.items():
        blocks = [ids[i : i + block] for i in range(0, len(ids) - block + 1, block)]
        path = out / "shards" / split / "part-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"input_ids": pa.array(blocks, type=pa.list_(pa.int32()))}), path)
        splits[split] = {"shards": [str(path.relative_to(out))], "blocks": len(blocks), "tokens": len(blocks) * block}
    manifest = {"tokenizer_fingerprint": tokenizer_fingerprint(tokenizer), "tokenizer": "tiny", "block_size": block, "splits": splits, "content_hash": "benchmark"}
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


def spec(args) -> TinyModelSpec:
    return TinyModelSpec(hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4, num_hidden_layers=args.layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max(1024, args.block))


def median_rate(step_seconds: list[float], tokens_per_step: float) -> float:
    """tokens/s at the median step time: robust to other processes stealing the CPU now and then."""
    return tokens_per_step / statistics.median(step_seconds)


def local_loop(args, tokenizer, corpus: Path, deepspeed_stage: int | None) -> float:
    """One process, no Ray: plain ``torch.optim.AdamW`` (``None``) or a DeepSpeed engine of that ZeRO stage."""
    torch.set_num_threads(1)
    model = load_model(ModelConfig(tiny=spec(args)), tokenizer)
    if deepspeed_stage is None:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)

        def update(x):
            model(input_ids=x, labels=x, use_cache=False).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        engine = local_engine(model, args, deepspeed_stage)

        def update(x):
            engine.backward(engine(input_ids=x, labels=x, use_cache=False).loss)
            engine.step()
    blocks = pq.read_table(corpus / "shards" / "train" / "part-00000.parquet").column("input_ids").to_pylist()
    batches = [torch.tensor(blocks[i : i + args.micro]) for i in range(0, len(blocks) - args.micro + 1, args.micro)]
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        update(batches[step % len(batches)])
        times.append(time.perf_counter() - start)
    return median_rate(times[args.warmup :], args.micro * args.block)


def local_engine(model, args, stage: int):
    """A DeepSpeed engine in this process (a one-rank gloo group), configured as ``medgo pretrain`` does."""
    import deepspeed
    import torch.distributed as dist

    from medgo.train.config import DeepSpeedSettings
    from medgo.train.deepspeed_config import deepspeed_config
    from medgo.train.pretrain_config import PretrainArguments

    os.environ.setdefault("LOCAL_RANK", "0")
    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    train = PretrainArguments(learning_rate=1e-3, warmup_steps=1, per_device_train_batch_size=args.micro)
    ds = deepspeed_config(DeepSpeedSettings(zero_stage=stage), train, world_size=1, total_steps=10**6, dtype=torch.float32, use_gpu=False)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=ds)
    return engine


def ray_loop(args, corpus: Path, root: Path, name: str, workers: int, stage: int) -> float:
    """``medgo pretrain``: tokens/s at the median interval between the logged steps after warm-up (the whole loop)."""
    s = spec(args)
    cfg = load_config(PretrainConfig, "jobs/configs/pretrain/tiny.yaml", [
        f"run_name={name}", f"data.corpus={corpus}", f"output_dir={root}",
        f"ray.num_workers={workers}", f"deepspeed.zero_stage={stage}", f"train.per_device_train_batch_size={args.micro}",
        f"train.max_steps={args.warmup + args.steps + 1}", "train.save_steps=1000000", "export.model=false",
        "train.eval_steps=1000000", "data.eval_blocks=1", "train.learning_rate=1e-3", "train.warmup_steps=1",
        *(f"model.tiny.{k}={v}" for k, v in s.model_dump().items()),
    ])
    result = run(cfg)
    stamps = [r["time"] for r in read_metrics(result.run_dir / "metrics.jsonl") if args.warmup <= r["step"] <= args.warmup + args.steps]
    return median_rate([b - a for a, b in zip(stamps, stamps[1:])], workers * args.micro * args.block)


def breakdown_fn(config: dict) -> dict:
    """Ray Train worker: the pre-training step under ``torch.profiler``, split into data wait, collectives, compute."""
    import ray.train
    from torch.profiler import ProfilerActivity, profile

    from medgo.train.config import DeepSpeedSettings
    from medgo.train.data import BlockStream
    from medgo.train.deepspeed_config import deepspeed_config
    from medgo.train.launcher import build_engine
    from medgo.train.pretrain_config import PretrainArguments

    cfg = ModelConfig.model_validate(config["model"])
    tok = load_tokenizer()
    train = PretrainArguments(warmup_steps=1, per_device_train_batch_size=config["micro"])
    ds = deepspeed_config(DeepSpeedSettings(), train, world_size=ray.train.get_context().get_world_size(), total_steps=10**6, dtype=torch.float32, use_gpu=False)
    engine, _ = build_engine(cfg, tok, ds, torch.device("cpu"), False)
    stream = BlockStream(ray.train.get_dataset_shard("train"), config["micro"], tok.pad_token_id)

    def step() -> float:
        t = time.perf_counter()
        b = next(stream)
        wait = time.perf_counter() - t
        engine.backward(engine(input_ids=b["input_ids"], labels=b["labels"], use_cache=False).loss)
        engine.step()
        return wait

    for _ in range(config["warmup"]):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        wait = sum(step() for _ in range(config["steps"]))
        wall = time.perf_counter() - start
    comm = sum(e.cpu_time_total for e in prof.key_averages() if e.key.startswith(("gloo:", "nccl:"))) / 1e6
    n = config["steps"]
    return {"step_s": wall / n, "data_wait_s": wait / n, "collectives_s": comm / n, "compute_s": (wall - wait - comm) / n}


def breakdown(args, corpus: Path, root: Path) -> dict:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from medgo.train.data import open_shards

    result = TorchTrainer(
        breakdown_fn,
        train_loop_config={"model": ModelConfig(tiny=spec(args)).model_dump(), "micro": args.micro, "warmup": args.warmup, "steps": args.steps},
        scaling_config=ScalingConfig(num_workers=2), torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(name="breakdown", storage_path=str(root)), datasets={"train": open_shards(corpus, "train")},
    ).fit()
    return result.return_value


def measure(args, tokenizer) -> tuple[dict[str, list[float]], dict]:
    """Every setting once per round, interleaved, then the profiled breakdown."""
    raw: dict[str, list[float]] = {k: [] for k in ("plain", "deepspeed_zero0_no_ray", "ray_1_worker_zero0", "ray_1_worker_zero3", "ray_2_workers_zero3")}
    with tempfile.TemporaryDirectory(prefix="medgo-bench-") as tmp:
        root = Path(tmp)
        corpus = pack(tokenizer, root / "corpus", args.block)
        for r in range(args.rounds):
            raw["plain"].append(local_loop(args, tokenizer, corpus, None))
            raw["deepspeed_zero0_no_ray"].append(local_loop(args, tokenizer, corpus, 0))
            raw["ray_1_worker_zero0"].append(ray_loop(args, corpus, root, f"w1_zero0_{r}", 1, 0))
            raw["ray_1_worker_zero3"].append(ray_loop(args, corpus, root, f"w1_zero3_{r}", 1, 3))
            raw["ray_2_workers_zero3"].append(ray_loop(args, corpus, root, f"w2_zero3_{r}", 2, 3))
        return raw, breakdown(args, corpus, root)


def ratios(t: dict) -> dict:
    return {
        "ray_zero0_over_plain": t["ray_1_worker_zero0"] / t["plain"],
        "ray_zero0_over_deepspeed_zero0_no_ray": t["ray_1_worker_zero0"] / t["deepspeed_zero0_no_ray"],
        "ray_zero3_over_plain": t["ray_1_worker_zero3"] / t["plain"],
        "two_over_one_worker_zero3": t["ray_2_workers_zero3"] / t["ray_1_worker_zero3"],
    }


def report(args, raw: dict[str, list[float]], parts: dict, params: int) -> None:
    median = {k: statistics.median(v) for k, v in raw.items()}
    best = {k: max(v) for k, v in raw.items()}  # the round least disturbed by other processes
    setup = {**vars(args), "params": params, "cpu_count": os.cpu_count(), "threads_per_worker": 1, "load_average": os.getloadavg()}
    ratio_median = ratios(median)
    headline = ratio_median["ray_zero0_over_plain"]
    out = {"ratio": headline, "target": TARGET, "met": headline >= TARGET, "setup": setup, "tokens_per_s_median": median, "tokens_per_s_best": best, "tokens_per_s_per_round": raw,
           "ratios_median": ratio_median, "ratios_best": ratios(best), "step_breakdown_2_workers_zero3": parts}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1), encoding="utf-8")
    for name, value in median.items():
        print(f"{name:28s} median {value:7.0f} tokens/s, best {best[name]:7.0f}   (rounds: {', '.join(f'{v:.0f}' for v in raw[name])})")
    for (name, med), b in zip(ratio_median.items(), ratios(best).values()):
        target = f"   (target >= {TARGET}: {'met' if med >= TARGET else 'MISSED'})" if name == "ray_zero0_over_plain" else ""
        print(f"ratio {name:40s} median {med:.3f}   best {b:.3f}{target}")
    print("2-worker ZeRO-3 step: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in parts.items()))
    print(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="measure everything this many times, interleaved")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--micro", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    import ray

    with console.quietly("pretrain", RESULTS.parent):
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
        tokenizer = load_tokenizer()
        raw, parts = measure(args, tokenizer)
        ray.shutdown()
    report(args, raw, parts, sum(p.numel() for p in load_model(ModelConfig(tiny=spec(args)), tokenizer).parameters()))


if __name__ == "__main__":
    main()
