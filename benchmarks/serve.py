"""Serving benchmark: continuous batching vs one request at a time, latency, TTFT, HTTP overhead.

    python benchmarks/serve.py                      # tiny model on the CPU, ~3 minutes
    python benchmarks/serve.py --clients 16 --requests 4 --max-tokens 128 --single-tokens 128

Side by side in one process (a local Ray with Serve on port 18100):
1. one request, ``model.generate`` called directly, vs the same request through HTTP -> Serve
   (API replica -> model replica) -> back; target: at most 1.2x.  The calls alternate, so a
   busy machine slows both sides alike; medians are reported;
2. ``--clients`` concurrent streaming clients against the model deployment with
   ``max_batch_size`` 16 vs 1 (one request at a time), in alternating rounds: completion
   tokens/s, target at least 3x; p50/p99 latency, time to first token and gap between text
   chunks for both; the same with whole (non-streamed) answers; and the same load on the engine
   alone, in this process, read through ``ModelRunner.stream`` with the same
   ``stream_interval_ms``, to separate batching from serving overhead: batched streaming through
   HTTP over the engine alone (``stream_tokens_http_over_engine``), target at least 0.8.  The CPU
   seconds each process (this one, the Serve proxy, controller, replicas) spends per 1,000 tokens
   show where serving goes.
Every request generates exactly its ``max_tokens`` (``ignore_eos``), so both sides do equal work.
Prints the figures and writes benchmarks/results/serve.json.
Ray's and the libraries' lines go to ``benchmarks/results/logs/serve-<time>.log`` (``MEDGO_VERBOSE=1``: on the terminal).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
import psutil
import torch
from tqdm import tqdm

from medgo import console
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


class EngineAlone:
    """The engine alone (no HTTP, no Serve) in this process, read the way the API replica reads it.

    Streams go through :meth:`ModelRunner.stream` (the same ``stream_interval_ms``); whole answers
    through :meth:`ModelRunner.complete`.  Same clients, requests and sampling as the HTTP load.
    """

    def __init__(self, batch: int, stream_interval_ms: float):
        self.runner = ModelRunner(ServeSettings(max_batch_size=batch, max_tokens_limit=512, stream_interval_ms=stream_interval_ms))

    async def one(self, n_tokens: int, seed: int, stream: bool) -> dict:
        params = {"kind": "chat", "model": "medgo-tiny", "messages": QUESTION, "max_tokens": n_tokens, "temperature": 0.7, "seed": seed, "ignore_eos": True}
        t0 = time.perf_counter()
        if not stream:
            result = await self.runner.complete(params)
            return {"latency_s": time.perf_counter() - t0, "ttft_s": None, "tokens": result["completion_tokens"]}
        arrivals, tokens, chunks = [], 0, 0
        async for event in self.runner.stream(params):
            chunks += 1
            if event.get("delta"):
                arrivals.append(time.perf_counter())
            tokens = event.get("completion_tokens", tokens)
        return stream_sample(t0, arrivals, tokens, chunks)

    def close(self) -> None:
        self.runner.engine.close()


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
    arrivals, tokens, chunks, nbytes = [], 0, 0, 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunks, nbytes = chunks + 1, nbytes + len(line) + 2
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                arrivals.append(time.perf_counter())
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return stream_sample(t0, arrivals, tokens, chunks, nbytes)


def stream_sample(t0: float, arrivals: list[float], tokens: int, chunks: int = 0, nbytes: int = 0) -> dict:
    """Latency, time to the first text and the gaps between text chunks of one streamed answer."""
    return {"latency_s": time.perf_counter() - t0, "ttft_s": arrivals[0] - t0 if arrivals else None, "tokens": tokens,
            "gaps_s": [b - a for a, b in zip(arrivals, arrivals[1:])], "text_chunks": len(arrivals), "chunks": chunks, "bytes": nbytes}


async def one_plain(client: httpx.AsyncClient, url: str, n_tokens: int, seed: int) -> dict:
    body = {"model": "medgo-tiny", "messages": QUESTION, "max_tokens": n_tokens, "temperature": 0.7, "seed": seed, "ignore_eos": True}
    t0 = time.perf_counter()
    r = await client.post(f"{url}/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return {"latency_s": time.perf_counter() - t0, "ttft_s": None, "tokens": r.json()["usage"]["completion_tokens"]}


async def load(target, clients: int, requests: int, n_tokens: int, stream: bool, name: str) -> dict:
    """``clients`` concurrent clients, each sending ``requests`` requests back to back (to a URL or an :class:`EngineAlone`)."""
    bar = tqdm(total=clients * requests, desc=f"{name} {'streaming' if stream else 'whole'}", unit="req")
    client = None
    if isinstance(target, str):
        client = httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients))
        one = partial(one_stream if stream else one_plain, client, target)
    else:
        one = partial(target.one, stream=stream)

    async def client_loop(i: int) -> list[dict]:
        out = []
        for j in range(requests):
            out.append(await one(n_tokens, seed=i * 1000 + j))
            bar.update()
        return out

    cpu = CPUTimes()
    t = time.perf_counter()
    results = [r for rs in await asyncio.gather(*[client_loop(i) for i in range(clients)]) for r in rs]
    wall = time.perf_counter() - t
    cpu_s = cpu.spent()
    if client is not None:
        await client.aclose()
    bar.close()
    tokens = sum(r["tokens"] for r in results)
    assert tokens == clients * requests * n_tokens, tokens
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "cpu_s": cpu_s, "samples": results}


class CPUTimes:
    """CPU seconds spent by this process and by each Ray process (Serve proxy, controller, replicas) since creation."""

    def __init__(self):
        self.start = self._now()

    @staticmethod
    def _now() -> dict[int, tuple[str, float]]:
        """pid -> (name, CPU seconds so far); a Ray worker's title names its actor and, while it runs one, the method."""
        me = psutil.Process()
        out = {me.pid: ("client_and_driver", sum(me.cpu_times()[:2]))}
        for p in me.children(recursive=True):
            try:
                title = " ".join(p.cmdline())
                if title.startswith("ray::"):
                    out[p.pid] = (title.split()[0].removeprefix("ray::").split(".")[0], sum(p.cpu_times()[:2]))
            except psutil.Error:
                continue
        return out

    def spent(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, (name, sec) in self._now().items():
            if pid in self.start:
                out[name] = out.get(name, 0.0) + sec - self.start[pid][1]
        return {name: sec for name, sec in out.items() if sec >= 0.05}


def percentile(sorted_values: list[float], q: float) -> float:
    k = (len(sorted_values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def deploy(tmp: Path, stream_interval_ms: float, model_transport: str) -> str:
    from ray import serve
    from ray.serve.api import RunTarget

    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    targets = []
    for name, batch in (("batched", 16), ("serial", 1)):
        settings = ServeSettings(max_batch_size=batch, max_tokens_limit=512, stream_interval_ms=stream_interval_ms, model_transport=model_transport,
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
    ap.add_argument("--model-transport", choices=("grpc", "ray"), default=ServeSettings().model_transport, help="the served apps' model_transport")
    args = ap.parse_args()

    import ray
    from ray import serve

    torch.set_num_threads(THREADS)
    with console.quietly("serve", RESULTS.parent):
        ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
        with tempfile.TemporaryDirectory() as tmp:
            url = deploy(Path(tmp), args.stream_interval_ms, args.model_transport)
            single = interleaved_medians({"direct_generate_s": DirectGenerate(args.single_tokens), "direct_engine_s": DirectEngine(args.single_tokens),
                                          "http_serve_s": OverHTTP(f"{url}/batched", args.single_tokens)}, args.repeats)
            engines = {name: EngineAlone(batch, args.stream_interval_ms) for name, batch in (("batched", 16), ("serial", 1))}
            for name, engine in engines.items():  # warm-up
                asyncio.run(load(engine, args.clients, 1, args.max_tokens, True, f"engine {name} warm-up"))
            # Each round runs every configuration once, so all of them see the same machine load.
            runs: dict[tuple[str, str, bool], list[dict]] = {
                (side, name, stream): [] for stream in (True, False) for name in ("batched", "serial") for side in ("engine", "http")}
            for _ in range(args.rounds):
                for side, name, stream in runs:
                    target = engines[name] if side == "engine" else f"{url}/{name}"
                    runs[side, name, stream].append(asyncio.run(load(target, args.clients, args.requests, args.max_tokens, stream, f"{side} {name}")))
            for engine in engines.values():
                engine.close()
            serve.shutdown()
    merged = {key: merge(rs) for key, rs in runs.items()}
    batched, serial = merged["http", "batched", True], merged["http", "serial", True]
    whole = {name: merged["http", name, False] for name in ("batched", "serial")}
    engine = {name: merged["engine", name, True] for name in ("batched", "serial")}
    engine_whole = {name: merged["engine", name, False] for name in ("batched", "serial")}

    single.update(http_over_generate=single["http_serve_s"] / single["direct_generate_s"], http_over_engine=single["http_serve_s"] / single["direct_engine_s"])
    result = {
        "device": "cpu", "model": "tiny", "torch_threads": torch.get_num_threads(), "load_average_1m": os.getloadavg()[0], **vars(args),
        "single": single, "batched": batched, "one_at_a_time": serial,
        "batching_speedup": batched["tokens_per_s"] / serial["tokens_per_s"],
        "stream_tokens_http_over_engine": batched["tokens_per_s"] / engine["batched"]["tokens_per_s"],
        "whole_answers": {"batched": whole["batched"], "one_at_a_time": whole["serial"],
                          "batching_speedup": whole["batched"]["tokens_per_s"] / whole["serial"]["tokens_per_s"]},
        "engine_only": {"batched_tokens_per_s": engine["batched"]["tokens_per_s"], "one_at_a_time_tokens_per_s": engine["serial"]["tokens_per_s"],
                        "batching_speedup": engine["batched"]["tokens_per_s"] / engine["serial"]["tokens_per_s"],
                        "batched": engine["batched"], "one_at_a_time": engine["serial"],
                        "whole_answers": {"batched": engine_whole["batched"], "one_at_a_time": engine_whole["serial"]}},
        "targets": {"batching_speedup_min": 3.0, "http_over_generate_max": 1.2, "stream_tokens_http_over_engine_min": 0.8},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    report(result, args)


def merge(runs: list[dict]) -> dict:
    """Rounds of one configuration: summed tokens, time and CPU, percentiles over all requests (streams: over all text chunks too)."""
    samples = [s for r in runs for s in r.pop("samples")]
    tokens, wall = sum(r["tokens"] for r in runs), sum(r["wall_s"] for r in runs)
    lat = sorted(s["latency_s"] for s in samples)
    out = {"requests": len(samples), "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
           "tokens_per_s_by_round": [r["tokens_per_s"] for r in runs], "latency_p50_s": percentile(lat, 50), "latency_p99_s": percentile(lat, 99)}
    if samples[0]["ttft_s"] is not None:
        ttft = sorted(s["ttft_s"] for s in samples)
        gaps = sorted(g for s in samples for g in s["gaps_s"])
        chunks = sum(s["text_chunks"] for s in samples)
        out.update(ttft_p50_s=percentile(ttft, 50), ttft_p99_s=percentile(ttft, 99),
                   chunk_gap_p50_s=percentile(gaps, 50) if gaps else None, chunk_gap_p99_s=percentile(gaps, 99) if gaps else None,
                   text_chunks_per_request=chunks / len(samples), tokens_per_text_chunk=tokens / chunks)
        if samples[0]["bytes"]:
            out["bytes_per_sse_chunk"] = sum(s["bytes"] for s in samples) / sum(s["chunks"] for s in samples)
    cpu: dict[str, float] = {}
    for r in runs:
        for name, sec in r["cpu_s"].items():
            cpu[name] = cpu.get(name, 0.0) + sec
    out["cpu_s_per_1k_tokens"] = {name: round(sec * 1000 / tokens, 4) for name, sec in sorted(cpu.items())}
    return out


def report(result: dict, args) -> None:
    s = result["single"]
    print(f"single request, {args.single_tokens} tokens: generate {s['direct_generate_s'] * 1000:.1f} ms, engine {s['direct_engine_s'] * 1000:.1f} ms, "
          f"HTTP+Serve {s['http_serve_s'] * 1000:.1f} ms -> {s['http_over_generate']:.2f}x generate (target <= 1.2), {s['http_over_engine']:.2f}x engine")
    e = result["engine_only"]
    for name, r in (("streaming, batched (max_batch_size 16)", result["batched"]), ("streaming, one at a time (max_batch_size 1)", result["one_at_a_time"]),
                    ("engine alone, streaming, batched", e["batched"]), ("engine alone, streaming, one at a time", e["one_at_a_time"])):
        print(f"{name}: {r['tokens_per_s']:.0f} tokens/s, latency p50 {r['latency_p50_s']:.2f}s p99 {r['latency_p99_s']:.2f}s, "
              f"TTFT p50 {r['ttft_p50_s'] * 1000:.0f} ms p99 {r['ttft_p99_s'] * 1000:.0f} ms, "
              f"chunk gap p50 {r['chunk_gap_p50_s'] * 1000:.0f} ms p99 {r['chunk_gap_p99_s'] * 1000:.0f} ms, {r['tokens_per_text_chunk']:.1f} tokens/chunk")
        print(f"    CPU s per 1,000 tokens: " + ", ".join(f"{k} {v:.3f}" for k, v in r["cpu_s_per_1k_tokens"].items()))
    w = result["whole_answers"]
    print(f"batching speedup at {args.clients} clients through HTTP/Serve (target >= 3): {result['batching_speedup']:.2f}x streaming, "
          f"{w['batching_speedup']:.2f}x whole answers ({w['batched']['tokens_per_s']:.0f} vs {w['one_at_a_time']['tokens_per_s']:.0f} tokens/s, "
          f"latency p50 {w['batched']['latency_p50_s']:.2f}s vs {w['one_at_a_time']['latency_p50_s']:.2f}s); "
          f"engine alone {e['batching_speedup']:.2f}x streaming ({e['batched_tokens_per_s']:.0f} vs {e['one_at_a_time_tokens_per_s']:.0f} tokens/s), "
          f"whole answers {e['whole_answers']['batched']['tokens_per_s']:.0f} vs {e['whole_answers']['one_at_a_time']['tokens_per_s']:.0f} tokens/s; "
          f"load average {result['load_average_1m']:.1f}")
    print(f"streaming through HTTP / engine alone, batched, {args.clients} clients, stream_interval_ms {args.stream_interval_ms:g} on both, model_transport {args.model_transport}: "
          f"{result['batched']['tokens_per_s']:.0f} / {e['batched_tokens_per_s']:.0f} tokens/s = {result['stream_tokens_http_over_engine']:.2f} (target >= 0.8)")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
