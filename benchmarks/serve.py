"""Serving benchmark: continuous batching vs one request at a time, latency, TTFT, HTTP overhead.

    python benchmarks/serve.py                      # tiny model on the CPU, ~1-2 minutes
    python benchmarks/serve.py --clients 16 --requests 4 --max-tokens 128 --single-tokens 128

Side by side in one process (a local Ray with Serve on port 18100):
1. one request, ``model.generate`` called directly, vs the same request through HTTP -> Serve
   (API replica -> model replica) -> back; target: at most 1.2x.  The calls alternate, so a
   busy machine slows both sides alike; medians are reported;
2. ``--clients`` concurrent streaming clients against the model deployment with
   ``max_batch_size`` 16 vs 1 (one request at a time), in alternating rounds: completion
   tokens/s, target at least 3x; p50/p99 latency and time to first token for both; the same
   with whole (non-streamed) answers; and the same load on the engine alone, in this process,
   to separate batching from serving overhead.
Every request generates exactly its ``max_tokens`` (``ignore_eos``), so both sides do equal work.
Prints the figures and writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import torch
from tqdm import tqdm

from medgo.config import ModelConfig
from medgo.model import load_model_and_tokenizer
from medgo.serve.app import compose
from medgo.serve.model import ModelRunner
from medgo.serve.settings import ServeSettings

PORT = 18100
THREADS = 1  # torch threads on both sides: the replica gets OMP_NUM_THREADS = num_cpus, this process sets it
RESULTS = Path(__file__).resolve().parent / "results" / "serve.json"
QUESTION = [{"role": "user", "content": "医生您好，我最近经常头痛，量血压160/100 mmHg，需要吃降压药吗？"}]


class DirectGenerate:
    """``model.generate`` called in this process (greedy, ``n_tokens`` new tokens).

    (``min_new_tokens`` would fix the length but slows ``generate`` many times over; greedy
    decoding of this prompt does not meet an end token, which the assertion checks.)
    """

    def __init__(self, n_tokens: int):
        self.model, self.tok = load_model_and_tokenizer(ModelConfig())
        self.model.eval()
        self.inputs = self.tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        self.n_tokens = n_tokens

    def __call__(self) -> None:
        with torch.no_grad():
            out = self.model.generate(**self.inputs, max_new_tokens=self.n_tokens, do_sample=False, pad_token_id=self.tok.pad_token_id)
        assert out.shape[1] - self.inputs["input_ids"].shape[1] == self.n_tokens, "greedy decoding stopped early: pick another prompt"


class DirectEngine:
    """The same request through MedGo's engine in this process (no HTTP, no Serve)."""

    def __init__(self, n_tokens: int):
        self.runner = ModelRunner(ServeSettings(max_tokens_limit=max(512, n_tokens)))
        self.params = {"kind": "chat", "model": "medgo-tiny", "messages": QUESTION, "max_tokens": n_tokens, "temperature": 0, "ignore_eos": True}

    def __call__(self) -> None:
        asyncio.run(self.runner.complete(self.params))


class OverHTTP:
    """The same request through HTTP -> Serve proxy -> API replica -> model replica."""

    def __init__(self, url: str, n_tokens: int):
        self.url, self.n_tokens = url, n_tokens
        self.client = httpx.Client(timeout=300)
        self.body = {"model": "medgo-tiny", "messages": QUESTION, "max_tokens": n_tokens, "temperature": 0, "ignore_eos": True}

    def __call__(self) -> None:
        r = self.client.post(f"{self.url}/v1/chat/completions", json=self.body)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == self.n_tokens, r.text


def engine_tokens_per_s(batch: int, clients: int, n_tokens: int) -> float:
    """The engine alone (no HTTP, no Serve): ``clients`` concurrent requests, ``max_batch_size`` ``batch``."""
    runner = ModelRunner(ServeSettings(max_batch_size=batch))
    params = {"kind": "chat", "model": "medgo-tiny", "messages": QUESTION, "max_tokens": n_tokens, "temperature": 0.7, "ignore_eos": True}

    async def burst() -> float:
        t = time.perf_counter()
        results = await asyncio.gather(*[runner.complete({**params, "seed": i}) for i in range(clients)])
        assert sum(r["completion_tokens"] for r in results) == clients * n_tokens
        return clients * n_tokens / (time.perf_counter() - t)

    asyncio.run(burst())  # warm-up
    rate = statistics.median(asyncio.run(burst()) for _ in range(3))
    runner.engine.close()
    return rate


def interleaved_medians(calls: dict, repeats: int) -> dict:
    """Median seconds per call, the calls alternating (A B C A B C ...) so all see the same machine load."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in tqdm(range(repeats + 1), desc="single request", unit="round"):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            if i:  # the first round warms up
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


async def one_stream(client: httpx.AsyncClient, url: str, n_tokens: int, seed: int) -> dict:
    body = {"model": "medgo-tiny", "messages": QUESTION, "max_tokens": n_tokens, "temperature": 0.7, "seed": seed, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if ttft is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return {"latency_s": time.perf_counter() - t0, "ttft_s": ttft, "tokens": tokens}


async def one_plain(client: httpx.AsyncClient, url: str, n_tokens: int, seed: int) -> dict:
    body = {"model": "medgo-tiny", "messages": QUESTION, "max_tokens": n_tokens, "temperature": 0.7, "seed": seed, "ignore_eos": True}
    t0 = time.perf_counter()
    r = await client.post(f"{url}/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return {"latency_s": time.perf_counter() - t0, "ttft_s": None, "tokens": r.json()["usage"]["completion_tokens"]}


async def load(url: str, clients: int, requests: int, n_tokens: int, stream: bool) -> dict:
    """``clients`` concurrent clients, each sending ``requests`` requests back to back."""
    bar = tqdm(total=clients * requests, desc=f"{url.rsplit('/', 1)[-1]} {'streaming' if stream else 'whole'}", unit="req")
    one = one_stream if stream else one_plain

    async def client_loop(i: int, client: httpx.AsyncClient) -> list[dict]:
        out = []
        for j in range(requests):
            out.append(await one(client, url, n_tokens, seed=i * 1000 + j))
            bar.update()
        return out

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as client:
        t = time.perf_counter()
        results = [r for rs in await asyncio.gather(*[client_loop(i, client) for i in range(clients)]) for r in rs]
        wall = time.perf_counter() - t
    bar.close()
    tokens = sum(r["tokens"] for r in results)
    assert tokens == clients * requests * n_tokens, tokens
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "samples": results}


def percentile(sorted_values: list[float], q: float) -> float:
    k = (len(sorted_values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def deploy(tmp: Path, stream_interval_ms: float) -> str:
    from ray import serve
    from ray.serve.api import RunTarget

    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    targets = []
    for name, batch in (("batched", 16), ("serial", 1)):
        settings = ServeSettings(max_batch_size=batch, max_tokens_limit=512, stream_interval_ms=stream_interval_ms,
                                 database_url=f"sqlite:///{tmp / name}.db", database_url_env=None, api_keys_env=None)
        app = compose(settings, model_options={"autoscaling_config": None, "num_replicas": 1, "max_ongoing_requests": 64, "max_queued_requests": -1,
                                               "ray_actor_options": {"num_cpus": THREADS}})
        targets.append(RunTarget(app, name=name, route_prefix=f"/{name}"))
    serve.run_many(targets)
    return f"http://127.0.0.1:{PORT}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=4, help="requests per client and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of batched and one-at-a-time load")
    ap.add_argument("--max-tokens", type=int, default=128, help="tokens per request under load")
    ap.add_argument("--single-tokens", type=int, default=128, help="tokens of the single-request comparison")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--stream-interval-ms", type=float, default=ServeSettings().stream_interval_ms, help="the served apps' stream_interval_ms")
    args = ap.parse_args()

    import ray
    from ray import serve

    torch.set_num_threads(THREADS)
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        url = deploy(Path(tmp), args.stream_interval_ms)
        single = interleaved_medians({"direct_generate_s": DirectGenerate(args.single_tokens), "direct_engine_s": DirectEngine(args.single_tokens),
                                      "http_serve_s": OverHTTP(f"{url}/batched", args.single_tokens)}, args.repeats)
        engine = {name: engine_tokens_per_s(batch, args.clients, args.max_tokens) for name, batch in (("batched", 16), ("serial", 1))}
        runs: dict[tuple[str, bool], list[dict]] = {(name, stream): [] for stream in (True, False) for name in ("batched", "serial")}
        for _ in range(args.rounds):
            for name, stream in runs:
                runs[name, stream].append(asyncio.run(load(f"{url}/{name}", args.clients, args.requests, args.max_tokens, stream)))
        serve.shutdown()
    batched, serial = merge(runs["batched", True]), merge(runs["serial", True])
    whole = {name: merge(runs[name, False]) for name in ("batched", "serial")}

    single.update(http_over_generate=single["http_serve_s"] / single["direct_generate_s"], http_over_engine=single["http_serve_s"] / single["direct_engine_s"])
    result = {
        "device": "cpu", "model": "tiny", "torch_threads": torch.get_num_threads(), "load_average_1m": os.getloadavg()[0], **vars(args),
        "single": single, "batched": batched, "one_at_a_time": serial,
        "batching_speedup": batched["tokens_per_s"] / serial["tokens_per_s"],
        "whole_answers": {"batched": whole["batched"], "one_at_a_time": whole["serial"],
                          "batching_speedup": whole["batched"]["tokens_per_s"] / whole["serial"]["tokens_per_s"]},
        "engine_only": {"batched_tokens_per_s": engine["batched"], "one_at_a_time_tokens_per_s": engine["serial"],
                        "batching_speedup": engine["batched"] / engine["serial"]},
        "targets": {"batching_speedup_min": 3.0, "http_over_generate_max": 1.2},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    report(result, args)


def merge(runs: list[dict]) -> dict:
    """Rounds of one configuration: summed tokens and time, percentiles over all requests."""
    samples = [s for r in runs for s in r.pop("samples")]
    tokens, wall = sum(r["tokens"] for r in runs), sum(r["wall_s"] for r in runs)
    lat = sorted(s["latency_s"] for s in samples)
    out = {"requests": len(samples), "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
           "tokens_per_s_by_round": [r["tokens_per_s"] for r in runs], "latency_p50_s": percentile(lat, 50), "latency_p99_s": percentile(lat, 99)}
    if samples[0]["ttft_s"] is not None:
        ttft = sorted(s["ttft_s"] for s in samples)
        out.update(ttft_p50_s=percentile(ttft, 50), ttft_p99_s=percentile(ttft, 99))
    return out


def report(result: dict, args) -> None:
    s = result["single"]
    print(f"single request, {args.single_tokens} tokens: generate {s['direct_generate_s'] * 1000:.1f} ms, engine {s['direct_engine_s'] * 1000:.1f} ms, "
          f"HTTP+Serve {s['http_serve_s'] * 1000:.1f} ms -> {s['http_over_generate']:.2f}x generate (target <= 1.2), {s['http_over_engine']:.2f}x engine")
    for name, r in (("streaming, batched (max_batch_size 16)", result["batched"]), ("streaming, one at a time (max_batch_size 1)", result["one_at_a_time"])):
        print(f"{name}: {r['tokens_per_s']:.0f} tokens/s, latency p50 {r['latency_p50_s']:.2f}s p99 {r['latency_p99_s']:.2f}s, "
              f"TTFT p50 {r['ttft_p50_s'] * 1000:.0f} ms p99 {r['ttft_p99_s'] * 1000:.0f} ms")
    w, e = result["whole_answers"], result["engine_only"]
    print(f"batching speedup at {args.clients} clients through HTTP/Serve (target >= 3): {result['batching_speedup']:.2f}x streaming, "
          f"{w['batching_speedup']:.2f}x whole answers ({w['batched']['tokens_per_s']:.0f} vs {w['one_at_a_time']['tokens_per_s']:.0f} tokens/s, "
          f"latency p50 {w['batched']['latency_p50_s']:.2f}s vs {w['one_at_a_time']['latency_p50_s']:.2f}s); "
          f"engine alone {e['batching_speedup']:.2f}x ({e['batched_tokens_per_s']:.0f} vs {e['one_at_a_time_tokens_per_s']:.0f} tokens/s); "
          f"load average {result['load_average_1m']:.1f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
