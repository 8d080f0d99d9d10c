"""Flywheel round benchmark: the time one round takes on the embedded default, split by step.

    python benchmarks/flywheel.py                   # tiny model on the CPU, a few minutes

A fresh SQLite serving database gets the 64 sample judgements (``medgo/assets/feedback``) as
completions with feedback; ``medgo flywheel round`` with ``jobs/configs/flywheel/tiny.yaml`` then
reads them, holds back pairs, trains the candidate (method ``auto``: KTO, the sample has unpaired
judgements), runs the gate on both versions and registers the candidate.  The seconds of each
step (read, data, train, gate, register) come from the round's report.  The p99 latency during a
promote, against steady state, comes from ``benchmarks/flywheel_promote.py``, run as its own process
(it starts its own Ray and Serve app).
The terminal shows a bar per part and the figures; Ray's and the libraries' own lines go to
``benchmarks/results/logs/flywheel-<time>.log`` (``MEDGO_VERBOSE=1``: everything on the terminal).
Prints the figures and writes benchmarks/results/flywheel.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medgo import console
from medgo.assets import asset_path
from medgo.config import load_config
from medgo.flywheel.config import FlywheelConfig
from medgo.flywheel.judgements import plant
from medgo.flywheel.round import run
from medgo.serve.store import FeedbackStore

RESULTS = Path(__file__).with_name("results") / "flywheel.json"
PROMOTE_RESULTS = RESULTS.with_name("flywheel_promote.json")


def one_round(tmp: Path, overrides: list[str]) -> dict:
    url = f"sqlite:///{tmp / 'serve.db'}"
    store = FeedbackStore(url)
    records = [json.loads(x) for x in asset_path("feedback", "feedback.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    plant(store, records, "bench")
    store.close()
    cfg = load_config(FlywheelConfig, "jobs/configs/flywheel/tiny.yaml",
                      [f"database_url={url}", "database_url_env=null", f"output_dir={tmp}", "control.publish=false", *overrides])  # fmt: skip
    start = time.perf_counter()
    report = run(cfg)
    return {"seconds_total": round(time.perf_counter() - start, 1), "seconds_by_step": report["seconds"], "method": report["method"],
            "judgements": report["judgements"], "status": report["status"]}  # fmt: skip


def promote_latency() -> dict:
    """``benchmarks/flywheel_promote.py`` in a fresh process; its JSON result."""
    script = Path(__file__).with_name("flywheel_promote.py")
    subprocess.run([sys.executable, str(script)], check=True)
    return json.loads(PROMOTE_RESULTS.read_text(encoding="utf-8"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", dest="overrides", action="append", default=[], help="override a key of the round's config")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, console.logging_to(RESULTS.parent, "flywheel") as con:
        with con.stage("round"):
            result = {"round": one_round(Path(tmp), args.overrides)}
        with con.stage("promote"):
            result["promote"] = promote_latency()
    r = result["round"]
    print(f"round: {r['seconds_total']} s ({', '.join(f'{k} {v} s' for k, v in r['seconds_by_step'].items())}); "
          f"{r['judgements']['current']} judgements, method {r['method']}, candidate {r['status']}")  # fmt: skip
    p = result["promote"]
    print(f"promote: p99 {p['during']['p99'] * 1000:.0f} ms during promote/rollback vs {p['steady']['p99'] * 1000:.0f} ms steady = {p['ratio']:.2f}x (target <= 1.5x)")
    result["promote_p99_ratio"] = p["ratio"]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
