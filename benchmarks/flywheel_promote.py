"""p99 latency while a canary is promoted, against steady state (target: at most 1.5x).

    python benchmarks/flywheel_promote.py                 # tiny model on the CPU, ~2-3 minutes
    python benchmarks/flywheel_promote.py --clients 8 --seconds 10

Starts a local Ray with Serve on port 18110, deploys the MedGo app from a config (as ``serve run``
does), registers a production and a canary adapter (random LoRA weights) and publishes them.
Then ``--clients`` closed-loop clients send chat requests (``--max-tokens`` each) for
``--seconds`` in steady state, and again while the canary is promoted and rolled back in place,
one switch after another.  :func:`promote_latency` measures one running application and can be
called by ``benchmarks/flywheel.py``.  Prints the figures and writes benchmarks/results/flywheel_promote.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from medgo.flywheel.control import promote, publish
from medgo.flywheel.registry import Registry

PORT = 18110
TARGET = 1.5


async def _load(url: str, model: str, clients: int, seconds: float, max_tokens: int, headers: dict) -> tuple[list[float], dict]:
    """Closed-loop clients for ``seconds``: latencies of the 200 answers and counts by status."""
    latencies, statuses, stop = [], {}, time.monotonic() + seconds

    async def client(c: httpx.AsyncClient, k: int) -> None:
        i = 0
        while time.monotonic() < stop:
            body = {"model": model, "messages": [{"role": "user", "content": f"患者{k}-{i}：头痛"}], "max_tokens": max_tokens, "ignore_eos": True}
            t = time.perf_counter()
            r = await c.post(f"{url}/v1/chat/completions", json=body)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t)
            i += 1

    async with httpx.AsyncClient(timeout=300, headers=headers) as c:
        await asyncio.gather(*[client(c, k) for k in range(clients)])
    return latencies, statuses


def _switch(registry: Registry, model: str, app: str, canary: str, stop: threading.Event, switches: list[float]) -> None:
    """Promote the canary, roll it back (it returns as canary for the next turn), until ``stop``."""
    parent = registry.get(canary)["parent"]
    while not stop.is_set():
        t = time.perf_counter()
        promote(registry, canary, actor="benchmark", reason="benchmark")
        publish(registry, model, app=app)
        registry.rollback(canary, actor="benchmark", reason="benchmark", source="benchmark")  # parent is production again
        registry.set_status(canary, "canary", actor="benchmark", reason="benchmark", source="benchmark")
        publish(registry, model, app=app)
        switches.append(time.perf_counter() - t)
    assert registry.live(model)["production"]["version"] == parent


def promote_latency(url: str, registry: Registry, model: str, app: str, *, clients: int = 8, seconds: float = 10.0, max_tokens: int = 16, headers: dict | None = None) -> dict:
    """Steady-state p99 vs p99 while promotes and rollbacks run, on a running app whose registry has a canary.

    Returns ``{steady, during, ratio, target, switches, statuses}`` (latencies in seconds)."""
    canary = registry.live(model)["canary"]["version"]
    steady, steady_status = asyncio.run(_load(url, model, clients, seconds, max_tokens, headers or {}))
    stop, switches = threading.Event(), []
    thread = threading.Thread(target=_switch, args=(registry, model, app, canary, stop, switches))
    thread.start()
    try:
        during, during_status = asyncio.run(_load(url, model, clients, seconds, max_tokens, headers or {}))
    finally:
        stop.set()
        thread.join()
    summary = {name: {"n": len(v), "p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99))} for name, v in (("steady", steady), ("during", during))}
    ratio = summary["during"]["p99"] / summary["steady"]["p99"]
    return {**summary, "ratio": ratio, "target": TARGET, "switches": len(switches), "switch_s": float(np.mean(switches)) if switches else None,
            "statuses": {"steady": steady_status, "during": during_status}}


def _setup(tmp: Path) -> tuple[str, Registry]:
    """Local Ray + Serve, the app deployed from a config, a production and a canary adapter, published."""
    import ray
    import torch
    from peft import LoraConfig, get_peft_model
    from ray import serve
    from ray.serve.context import _connect
    from ray.serve.schema import ServeDeploySchema

    from medgo.config import ModelConfig
    from medgo.flywheel.registry import adapter_hash, feedback_lineage
    from medgo.model import load_model
    from medgo.model.tokenizer import load_tokenizer

    ray.init(address="local", include_dashboard=False, num_cpus=2, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    db = f"sqlite:///{tmp / 'flywheel.db'}"
    args = {"model": {"base_model": "tiny"}, "database_url": db, "database_url_env": None, "api_keys_env": None, "flywheel_metrics_interval_s": 0}
    app = {"name": "medgo", "route_prefix": "/", "import_path": "medgo.serve.app:build_app", "args": args,
           "deployments": [{"name": "MedGoModel", "autoscaling_config": {"min_replicas": 1, "max_replicas": 1}}]}
    _connect().deploy_apps(ServeDeploySchema(applications=[app]))
    deadline = time.monotonic() + 600
    while (status := serve.status().applications.get("medgo")) is None or status.status != "RUNNING":
        if time.monotonic() > deadline or (status is not None and status.status == "DEPLOY_FAILED"):
            raise RuntimeError(f"the application did not start: {status.message if status else 'not deployed'}")
        time.sleep(1)
    tokenizer, dirs = load_tokenizer(), []
    for seed in (0, 1):
        torch.manual_seed(seed)
        lora = get_peft_model(load_model(ModelConfig(), tokenizer), LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        lora.save_pretrained(tmp / f"adapter{seed}")
        dirs.append(str(tmp / f"adapter{seed}"))
    registry = Registry(db)
    prod = registry.ensure_production(model="medgo-tiny", base_model="tiny", base_fingerprint="tiny", adapter_dir=dirs[0], actor="benchmark")
    registry.register(model="medgo-tiny", parent=prod["version"], base_model="tiny", base_fingerprint="tiny", adapter_dir=dirs[1], adapter_hash=adapter_hash(dirs[1]),
                      method="dpo", train_config={}, feedback=feedback_lineage([]), gate=None, reasons=["benchmark"], status="canary", canary_share=0.3, actor="benchmark")
    publish(registry, "medgo-tiny", app="medgo")
    return f"http://127.0.0.1:{PORT}", registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url, registry = _setup(Path(tmp))
        result = promote_latency(url, registry, "medgo-tiny", "medgo", clients=args.clients, seconds=args.seconds, max_tokens=args.max_tokens)
    print(f"steady: p50 {result['steady']['p50']*1000:.0f} ms, p99 {result['steady']['p99']*1000:.0f} ms over {result['steady']['n']} answers")
    print(f"during {result['switches']} promote+rollback pairs ({result['switch_s'] or 0:.1f} s each): p50 {result['during']['p50']*1000:.0f} ms, "
          f"p99 {result['during']['p99']*1000:.0f} ms over {result['during']['n']} answers")
    print(f"p99 during promote / steady p99 = {result['ratio']:.2f}x (target <= {TARGET}x): {'met' if result['ratio'] <= TARGET else 'NOT met'}")
    out = Path(__file__).parent / "results" / "flywheel_promote.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
