"""``medgo flywheel demo``: two flywheel rounds end to end against a running Serve app (embedded default).

    medgo flywheel demo [--config jobs/configs/flywheel/tiny.yaml] [--output runs/flywheel-demo] [--port 8123]

1. A local Ray starts, the MedGo Serve app is deployed from a config (so the control plane can
   update it in place) on the tiny model, with a key file holding a ``chat`` key and a ``feedback``
   key; the bare base model is registered and published as production.
2. Phase 0: every question of the embedded QA set is asked twice (two conversations) through
   ``POST /v1/chat/completions``; a scripted reviewer judges each answer and posts the verdict to
   ``POST /v1/feedback`` with the feedback key.
3. Round 1 reads those judgements, trains, gates and registers a canary, published at a share of 0.5.
4. Phase 1: the same traffic; both versions answer; the reviewer judges; status prints both
   versions' acceptance; the canary is promoted.  Round 2 and phase 2 repeat this.

The reviewer's rule (:func:`verdict`): an answer is acceptable when at least 85% of its
non-space characters are Chinese characters (U+4E00..U+9FFF), i.e. Chinese prose without stray
Latin letters, digits, punctuation runs or broken bytes.  On the untrained tiny model about half
the answers pass.  The demo prints each phase's acceptance per version and says whether the
canary's acceptance rose above production's in the same phase; the tiny model may not learn the
rule from a few dozen judgements, and the loop runs either way.  Before each promotion the demo
prints ``medgo flywheel status`` (acceptance per live version from the serving database, with its
95% interval).  The terminal shows the phase lines, one progress bar per round and the status
tables; every log line goes to ``<output>/logs/flywheel-demo-<time>.log`` (``--verbose``: all on
the terminal).  Run files go to ``<output>/`` (database, key file, round directories, ``demo.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from medgo import console
from medgo.config import load_config
from medgo.flywheel import control
from medgo.flywheel.cli import Target, status_lines, status_rows
from medgo.flywheel.config import FlywheelConfig
from medgo.flywheel.registry import Registry
from medgo.flywheel.round import production
from medgo.flywheel.round import run as run_round

ACTOR = "medgo flywheel demo"
CJK = re.compile(r"[\u4e00-\u9fff]")
THRESHOLD = 0.85
GATE = '{"max_drop": {"clinicalqa_accuracy": 20.0, "cblue_mean": 20.0, "refusal_rate": 20.0}, "minimum": {}}'


def verdict(answer: str) -> str:
    """The scripted reviewer: acceptable when >= 85% of the non-space characters are Chinese characters."""
    text = re.sub(r"\s", "", answer)
    share = len(CJK.findall(text)) / len(text) if text else 0.0
    return "acceptable" if share >= THRESHOLD else "unacceptable"


def questions() -> list[str]:
    from medgo.assets import asset_path

    return [json.loads(line)["question"] for line in asset_path("sft", "qa.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------------------- the app


def write_keys(out: Path) -> dict[str, str]:
    """A key file with a chat key and a feedback key (hashes only); the keys themselves."""
    from medgo.serve.security import ApiKey, hash_key

    keys = {scope: f"demo-{scope}-{secrets.token_hex(8)}" for scope in ("chat", "feedback")}
    lines = [ApiKey(f"demo-{scope}", (scope,), hash_key(key)).line() for scope, key in keys.items()]
    (out / "api_keys").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return keys


def app_config(out: Path, url: str, model: str) -> dict:
    args = {"served_model_name": model, "model": {"base_model": "tiny"}, "database_url": url, "database_url_env": None,
            "api_keys_env": None, "api_key_file": str(out / "api_keys"), "default_max_tokens": 32, "flywheel_metrics_interval_s": 0}  # fmt: skip
    deployments = [{"name": "MedGoAPI", "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}},
                   {"name": "MedGoModel", "autoscaling_config": {"min_replicas": 1, "max_replicas": 1}, "ray_actor_options": {"num_cpus": 1}}]  # fmt: skip
    return {"name": "medgo", "route_prefix": "/", "import_path": "medgo.serve.app:build_app", "args": args, "deployments": deployments}


def start_app(out: Path, url: str, model: str, port: int) -> str:
    """Local Ray, Serve on ``port``, the app deployed from a config; returns the base URL once it answers."""
    import httpx
    import ray
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    control.serve_client().deploy_apps(ServeDeploySchema(applications=[app_config(out, url, model)]))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                return base
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the Serve app did not answer on {base} within 600 s")


# ----------------------------------------------------------------------------- traffic and judgements


def ask_and_judge(base: str, keys: dict, model: str, phase: int, qs: list[str]) -> list[dict]:
    """Each question twice (two conversations); each answer judged and the verdict posted."""
    import httpx

    def one(i: int) -> dict:
        q = qs[i // 2]
        headers = {"Authorization": f"Bearer {keys['chat']}", "X-Conversation-Id": f"demo-{phase}-{i}"}
        body = {"model": model, "messages": [{"role": "user", "content": q}], "max_tokens": 32, "temperature": 0.8}
        r = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=300)
        r.raise_for_status()
        answer, rid = r.json()["choices"][0]["message"]["content"], r.json()["id"]
        judged = verdict(answer)
        fb = httpx.post(f"{base}/v1/feedback", json={"response_id": rid, "verdict": judged}, headers={"Authorization": f"Bearer {keys['feedback']}"}, timeout=60)
        fb.raise_for_status()
        return {"version": r.headers.get("X-MedGo-Version"), "verdict": judged}

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(2 * len(qs))))


def acceptance(results: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in results:
        row = out.setdefault(r["version"], {"answers": 0, "accepted": 0})
        row["answers"] += 1
        row["accepted"] += r["verdict"] == "acceptable"
    return {v: {**row, "rate": round(row["accepted"] / row["answers"], 3)} for v, row in out.items()}


def say_phase(phase: int, live: dict, stats: dict) -> dict:
    prod, canary = live["production"]["version"], live["canary"]["version"] if live["canary"] else None
    line = ", ".join(f"{v} ({'canary' if v == canary else 'production'}) {s['accepted']}/{s['answers']} = {s['rate']:.0%}" for v, s in stats.items())
    rose = None
    if canary in stats and prod in stats:
        rose = stats[canary]["rate"] > stats[prod]["rate"]
        line += f"; canary acceptance {'rose above' if rose else 'did not rise above'} production's"
    console.summary(f"phase {phase}: {line}")
    return {"phase": phase, "production": prod, "canary": canary, "acceptance": stats, "canary_rose": rose}


# ----------------------------------------------------------------------------- the demo


def stage(name: str):
    """The console's progress bar and summary for a round."""
    con = console.active()
    return con.stage(name) if con is not None else contextlib.nullcontext()


def round_config(args, out: Path, url: str) -> FlywheelConfig:
    return load_config(FlywheelConfig, args.config, [f"database_url={url}", "database_url_env=null", f"output_dir={out}", "run_name=demo",
                                                     f"min_judgements={args.min_judgements}", f"gate.rules={GATE}", "control.publish=true",
                                                     "control.canary_share=0.5"])  # fmt: skip


def demo(args) -> dict:
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():  # a fresh run folder; earlier demos' logs stay
        if old.name != "logs":
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    url = f"sqlite:///{out / 'serve.db'}"
    cfg = round_config(args, out, url)
    keys = write_keys(out)
    base = start_app(out, url, cfg.model, args.port)
    registry = Registry(url)
    production(registry, cfg)
    control.publish(registry, cfg.model, app=cfg.control.app)
    qs, phases, rounds = questions()[: args.questions], [], []
    for phase in range(args.rounds + 1):
        results = ask_and_judge(base, keys, cfg.model, phase, qs)
        phases.append(say_phase(phase, registry.live(cfg.model), acceptance(results)))
        canary = registry.live(cfg.model)["canary"]
        if canary is not None:
            for line in status_lines(status_rows(registry, Target(url, cfg.model, cfg.control))):
                console.summary(line)
            control.promote(registry, canary["version"], actor=ACTOR, reason="demo: promoted after a phase of traffic")
            control.publish(registry, cfg.model, app=cfg.control.app)
            console.summary(f"promoted {canary['version']}")
        if phase < args.rounds:
            with stage(f"flywheel round {phase + 1}"):
                report = run_round(cfg)
            rounds.append({k: report.get(k) for k in ("candidate", "status", "method", "used_by_method", "judgements", "gate", "reasons", "seconds", "published")})
    summary = {"rule": f"acceptable when >= {THRESHOLD:.0%} of the non-space characters are Chinese characters", "phases": phases, "rounds": rounds}
    (out / "demo.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    console.summary(f"demo: {len(rounds)} rounds; summary {out / 'demo.json'}")
    return summary


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="medgo flywheel demo", description="two flywheel rounds end to end against a running Serve app (embedded default)")
    p.add_argument("--config", default="jobs/configs/flywheel/tiny.yaml", help="flywheel config of the rounds")
    p.add_argument("--output", default="runs/flywheel-demo", help="run folder (emptied first, logs/ kept): database, key file, rounds, demo.json")
    p.add_argument("--port", type=int, default=8123, help="HTTP port of the demo's Serve app")
    p.add_argument("--questions", type=int, default=40, help="questions per phase (each asked twice)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--min-judgements", type=int, default=40)
    p.add_argument("--verbose", action="store_true", help="show every log line and library warning")
    args = p.parse_args(argv)
    if args.verbose:
        os.environ[console.VERBOSE_ENV] = "1"
    try:
        with console.logging_to(Path(args.output), "flywheel-demo"):
            demo(args)
    finally:
        import ray

        if ray.is_initialized():
            from ray import serve

            serve.shutdown()
            ray.shutdown()
    return 0
