"""One flywheel round: the doctors' new judgements -> a candidate adapter -> the gate -> the registry.

    medgo flywheel round --config jobs/configs/flywheel/tiny.yaml
    ray job submit --working-dir . -- python jobs/flywheel.py round --config jobs/configs/flywheel/qwen2_72b.yaml

Steps (each timed in the report):

1. ``read``: the feedback rows past the registry's watermark (:mod:`medgo.flywheel.judgements`),
   de-identified; a round with fewer than ``min_judgements`` current judgements stops here.
2. ``data``: the round's feedback JSONL; a seeded slice of its pairs held back (whole contexts);
   the method chosen (``dpo``/``kto``/``auto``, :func:`medgo.train.preference.choose_method`).
3. ``train``: the candidate adapter, continuing the production adapter (a new one on the base
   while production has none), with the method's stage config plus ``training.overrides``.
4. ``gate``: production and candidate measured alike and the rules applied (:mod:`medgo.flywheel.gate`).
5. ``register``: the candidate enters the registry as ``canary`` or ``rejected`` with its reasons,
   its gate results and its lineage (the consumed feedback ids, their count, the highest id,
   the SHA-256 of the round's feedback file); ``publish: true`` then pushes the registry's state
   to the running Serve app.

The run directory ``<output_dir>/flywheel/<run_name>/round-<first id>-<last id>/`` holds
``feedback.jsonl`` (every consumed row), ``train.jsonl``, ``holdout.jsonl``, the training run,
``gate/`` (per-sample predictions of both versions) and ``report.json``.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from medgo import console
from medgo.config import ModelConfig, load_config, save_config
from medgo.flywheel import gate
from medgo.flywheel.config import METRICS, FlywheelConfig
from medgo.eval.report import write_jsonl
from medgo.flywheel.judgements import Judgements, hold_back, read_judgements
from medgo.flywheel.registry import Registry, adapter_hash
from medgo.train.kto_data import choose_method
from medgo.train.preference import build_preferences

ACTOR = "medgo flywheel round"
STEPS = ("read", "data", "train", "gate", "register")


class Timer:
    """Seconds per step, in the order the steps ran."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)
            console.progress(len(self.seconds), len(STEPS))


# ----------------------------------------------------------------------------- production


def base_fingerprint(base: ModelConfig) -> str:
    from medgo.model.loading import resolve_tokenizer_path
    from medgo.model.tokenizer import load_tokenizer
    from medgo.serve.model import base_version

    plain = base.model_copy(update={"adapter": None})
    return base_version(plain, load_tokenizer(resolve_tokenizer_path(plain)))


def production(registry: Registry, cfg: FlywheelConfig) -> dict:
    """The production version; the config's ``base`` becomes it when the registry has none."""
    live = registry.live(cfg.model)["production"]
    if live is not None:
        return live
    return registry.ensure_production(model=cfg.model, base_model=cfg.base.base_model, base_fingerprint=base_fingerprint(cfg.base),
                                      adapter_dir=cfg.base.adapter, actor=ACTOR)  # fmt: skip


def version_model(cfg: FlywheelConfig, version: dict, adapter_dir: str | Path | None) -> ModelConfig:
    """How the gate loads a version: the config's ``base`` settings, the version's base and an adapter."""
    return cfg.base.model_copy(update={"base_model": version["base_model"], "adapter": str(adapter_dir) if adapter_dir else None})


# ----------------------------------------------------------------------------- data and training


def round_dir(cfg: FlywheelConfig, batch: Judgements) -> Path:
    return cfg.run_dir() / f"round-{min(batch.ids)}-{max(batch.ids)}"


def write_data(cfg: FlywheelConfig, batch: Judgements, out: Path) -> dict:
    """feedback.jsonl (all consumed), train.jsonl, holdout.jsonl; the held-back pairs and the method."""
    everything = write_jsonl(out / "feedback.jsonl", batch.records)
    current = batch.current()
    train, held = hold_back(current, cfg.holdout.share, cfg.holdout.seed, cfg.holdout.min_pairs)
    train_file, held_file = write_jsonl(out / "train.jsonl", train), write_jsonl(out / "holdout.jsonl", held)
    holdout_rows = build_preferences([str(held_file)]).rows() if held else []
    method, used = choose_method(cfg.method, [str(train_file)], [])
    return {"feedback_file": everything, "train_file": train_file, "holdout_rows": holdout_rows, "method": method, "used": used,
            "counts": {"read": len(batch.records), "current": len(current), "superseded": len(batch.records) - len(current),
                       "train_judgements": len(train), "held_back_judgements": len(held), "held_back_pairs": len(holdout_rows)}}  # fmt: skip


def stage_config(cfg: FlywheelConfig, method: str, prod: dict, train_file: Path, out: Path):
    """The method's typed config: its YAML, ``training.overrides``, then the round's own keys."""
    config_class = method_stage(method)[0]
    keys = [f"output_dir={out}", f"run_name={cfg.model}", f"model.base_model={prod['base_model']}",
            f"model.adapter={prod['adapter_dir'] or 'null'}", f"data.feedback=[{json.dumps(str(train_file))}]", "data.pairs=[]"]  # fmt: skip
    return load_config(config_class, cfg.training.config_path(method), [*cfg.training.overrides, *keys])


def method_stage(method: str):
    """(config class, run function) of a training method."""
    if method == "kto":
        from medgo.train import kto, kto_config

        return kto_config.KTOConfig, kto.run
    from medgo.train import dpo, dpo_config

    return dpo_config.DPOConfig, dpo.run


def check_training_configs(cfg: FlywheelConfig) -> None:
    """Load every training config the round may use, with its overrides, before the store is read."""
    for method in ("dpo", "kto") if cfg.method == "auto" else (cfg.method,):
        load_config(method_stage(method)[0], cfg.training.config_path(method), cfg.training.overrides)


# ----------------------------------------------------------------------------- the round


def run(cfg: FlywheelConfig) -> dict:
    """One round; returns the report (also written to ``report.json`` unless the round stopped early)."""
    check_training_configs(cfg)
    timer, url = Timer(), cfg.resolved_database_url()
    with timer.step("read"):
        registry = Registry(url)
        prod = production(registry, cfg)
        watermark = registry.watermark(cfg.model)
        batch = read_judgements(url, after=watermark)
    current = len(batch.current())
    if current < cfg.min_judgements:
        return stop_early(cfg, watermark, batch, current, timer)
    out = round_dir(cfg, batch)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    with timer.step("data"):
        data = write_data(cfg, batch, out)
    with timer.step("train"):
        stage_cfg = stage_config(cfg, data["method"], prod, data["train_file"], out)
        result = method_stage(data["method"])[1](stage_cfg)
    with timer.step("gate"):
        measured = evaluate(cfg, prod, result.adapter_dir, data["holdout_rows"], out / "gate")
        passed, reasons = gate.decide(measured["candidate"]["metrics"], measured["production"]["metrics"], cfg.gate.rules)
    with timer.step("register"):
        version = registry.register(
            model=cfg.model, parent=prod["version"], base_model=prod["base_model"], base_fingerprint=prod["base_fingerprint"],
            adapter_dir=str(result.adapter_dir), adapter_hash=adapter_hash(result.adapter_dir), method=data["method"],
            train_config=stage_cfg.model_dump(mode="json"), feedback=batch.lineage(data["feedback_file"]),
            gate={name: m["metrics"] for name, m in measured.items()}, reasons=reasons, status="canary" if passed else "rejected", actor=ACTOR,
            canary_share=cfg.control.canary_share if passed else None, source=ACTOR,
        )  # fmt: skip
        published = publish(cfg, registry) if passed and cfg.control.publish else None
    report = make_report(cfg, prod, version, data, measured, passed, reasons, timer, published, result)
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    console.summary(format_report(report))
    console.summary(f"flywheel round: {report['judgements']['current']} judgements, {data['method']} {data['used']}; candidate "
                    f"{version['version']} {version['status']}; {sum(timer.seconds.values()):.0f} s; report {out / 'report.json'}")  # fmt: skip
    return report


def evaluate(cfg: FlywheelConfig, prod: dict, adapter_dir: Path, holdout_rows: list[dict], out: Path) -> dict:
    from medgo.ray_utils import init_ray

    init_ray(cfg.gate.ray.address)
    versions = {"production": version_model(cfg, prod, prod["adapter_dir"]), "candidate": version_model(cfg, prod, adapter_dir)}
    return {name: gate.measure(cfg.gate, name, model, holdout_rows, out / name) for name, model in versions.items()}


def publish(cfg: FlywheelConfig, registry: Registry) -> str:
    """Push the new canary to the running application; a failure is reported, the registration stays."""
    from medgo.flywheel import control

    c = cfg.control
    try:
        live = control.publish(registry, cfg.model, app=c.app, deployment=c.deployment, address=c.ray_address, timeout_s=c.publish_timeout_s)
    except Exception as exc:  # no application running, Ray unreachable...: the canary waits for `medgo flywheel publish`
        return f"not published ({type(exc).__name__}: {exc}); run medgo flywheel publish"
    return f"published: canary {live.canary.version} at share {live.canary_share}"


def stop_early(cfg: FlywheelConfig, watermark: int, batch: Judgements, current: int, timer: Timer) -> dict:
    reason = f"{current} new judgements since feedback id {watermark}, fewer than min_judgements {cfg.min_judgements}: no round"
    console.summary(f"flywheel round: stopped early: {reason}")
    return {"model": cfg.model, "stopped": reason, "watermark": watermark,
            "judgements": {"read": len(batch.records), "current": current}, "seconds": timer.seconds}  # fmt: skip


def make_report(cfg, prod, version, data, measured, passed, reasons, timer, published, result) -> dict:
    return {
        "model": cfg.model, "production": prod["version"], "candidate": version["version"], "status": version["status"],
        "decision": "canary" if passed else "rejected", "reasons": reasons, "judgements": data["counts"],
        "method": data["method"], "used_by_method": data["used"], "lineage": version["feedback"],
        "training": {"run_dir": str(result.run_dir), "adapter_dir": str(result.adapter_dir), "steps": result.steps},
        "gate": {name: m["metrics"] for name, m in measured.items()}, "gate_details": {name: m["details"] for name, m in measured.items()},
        "seconds": timer.seconds, "published": published,
    }  # fmt: skip


def format_report(report: dict) -> str:
    """The report as a plain table: counts, gate metrics side by side, decision, time per step."""
    j = report["judgements"]
    lines = [f"round for {report['model']}: candidate {report['candidate']} (parent {report['production']})",
             f"judgements: read {j['read']}, current {j['current']}, superseded {j['superseded']}, train {j['train_judgements']}, "
             f"held back {j['held_back_judgements']} ({j['held_back_pairs']} pairs)",
             f"method: {report['method']}; used by method: {report['used_by_method']}",
             f"{'metric':<22}{'production':>12}{'candidate':>12}"]  # fmt: skip
    for metric in METRICS:
        p, c = report["gate"]["production"][metric], report["gate"]["candidate"][metric]
        lines.append(f"{metric:<22}{_num(p):>12}{_num(c):>12}")
    lines += [f"decision: {report['decision']}", *(f"  {r}" for r in report["reasons"])]
    lines.append("seconds: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()))
    if report["published"]:
        lines.append(report["published"])
    return "\n".join(lines)


def _num(value) -> str:
    return "-" if value is None else f"{value:.2f}"
