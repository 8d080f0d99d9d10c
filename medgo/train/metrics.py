"""Metrics sinks for a training run: ``metrics.jsonl``, TensorBoard, Ray's metrics API, a loss-curve PNG.

Rank 0 owns a :class:`MetricsSink`; every logged step becomes one JSON line (``step`` first), one
TensorBoard scalar per number (``tensorboard --logdir <run dir>/tensorboard``) and one Ray gauge
per number (``medgo_<stage>_<name>``, tagged with the run name; shown by the Ray dashboard's
metrics view when Prometheus/Grafana are set up).  A resumed run first drops the lines written
after its checkpoint, so the history never holds a step twice.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_after(path: Path, step: int) -> None:
    """Keep only the lines of steps ``<= step`` (a restored run re-logs the steps after its checkpoint)."""
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")


class MetricsSink:
    """Writes each logged step to every configured sink."""

    def __init__(self, run_dir: str | Path, stage: str, run_name: str, start_step: int, tensorboard: bool = True, ray_metrics: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE
        truncate_after(self.path, start_step)
        self.stage, self.run_name = stage, run_name
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=start_step + 1)
        self.ray_metrics = ray_metrics
        self._gauges: dict = {}

    def _gauge(self, name: str):
        if name not in self._gauges:
            from ray.util.metrics import Gauge

            self._gauges[name] = Gauge(f"medgo_{self.stage}_{name}", f"{self.stage} {name}", tag_keys=("run",))
        return self._gauges[name]

    def log(self, step: int, metrics: dict) -> None:
        record = {"step": step, **metrics, "time": round(time.time(), 3)}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        for key, value in metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                continue
            if self.tb is not None:
                self.tb.add_scalar(f"{self.stage}/{key}", value, step)
            if self.ray_metrics:
                self._gauge(key).set(value, tags={"run": self.run_name})

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path, title: str = "loss") -> Path | None:
    """Training loss per step and held-out loss per evaluation, as a PNG; None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    held_out = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train and not held_out:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1.2)
    if held_out:
        ax.plot(*zip(*held_out), "o-", label="held-out loss", linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
