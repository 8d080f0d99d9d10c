"""The gate: the candidate and production measured the same way, and the rules that decide.

    metrics = measure(cfg.gate, model_cfg, "candidate", holdout_rows, out_dir)
    passed, reasons = decide(candidate_metrics, production_metrics, cfg.gate.rules)

Four metrics, each in percent, higher is better:

``clinicalqa_accuracy``  ClinicalQA by option log-likelihood (``medgo eval run``'s ``accuracy_loglik``)
``cblue_mean``           mean score of the configured CBLUE subset (the evaluation's own scorers)
``refusal_rate``         share of the harmful requests refused (:mod:`medgo.flywheel.safety`)
``preference_accuracy``  held-back pairs where the model gives the doctor's choice the higher
                         length-normalised log-probability, ties as half (:mod:`medgo.eval.preference`)

ClinicalQA, CBLUE and the harmful requests go through one pool of model replicas per version
(:func:`medgo.eval.generation.run_requests`, the evaluation stage's path); preference accuracy
runs in one Ray task with the same resources.  A rule on a metric that could not be measured
(no held-back pairs, ClinicalQA disabled) fails, and says so.
"""

from __future__ import annotations

from pathlib import Path

from medgo.config import ModelConfig
from medgo.eval.cblue import cblue_tasks, table_rows
from medgo.eval.config import EvalConfig, EvalModel
from medgo.eval.generation import run_requests
from medgo.eval.run import clinicalqa_task, make_renderer
from medgo.flywheel.config import GateConfig, GateRules
from medgo.flywheel.safety import SafetyTask, load_requests


def eval_config(gate: GateConfig, name: str, model: ModelConfig, out_dir: Path) -> EvalConfig:
    """The evaluation stage's config for one version: the gate's tasks, sample limits and replicas."""
    return EvalConfig(
        run_name=name, output_dir=str(out_dir), models=[EvalModel(name=name, model=model)],
        cblue={"tasks": gate.cblue.tasks, "data_dir": gate.cblue.data_dir, "max_samples": gate.cblue.max_samples},
        clinicalqa={"enabled": gate.clinicalqa.enabled, "files": gate.clinicalqa.files, "max_samples": gate.clinicalqa.max_samples, "shuffle_seed": None},
        generation={"batch_size": gate.batch_size, "max_new_tokens": gate.max_new_tokens}, ray=gate.ray, chart=False,
    )  # fmt: skip


def answer_tasks(gate: GateConfig, name: str, model: ModelConfig, out_dir: Path) -> dict:
    """ClinicalQA, the CBLUE subset and the harmful requests through one replica pool; scores per unit."""
    cfg = eval_config(gate, name, model, out_dir)
    tasks, skipped = cblue_tasks(cfg)
    if skipped:
        raise FileNotFoundError(f"gate.cblue: {skipped}")
    qa = clinicalqa_task(cfg)
    safety = SafetyTask(load_requests(gate.safety.files, gate.safety.max_samples), gate.safety.max_new_tokens)
    render = make_renderer(cfg.models[0], cfg, max(gate.max_new_tokens, gate.safety.max_new_tokens, cfg.clinicalqa.max_new_tokens))
    units = [*tasks.values(), *([qa] if qa else []), safety]
    answers = run_requests(model, [r for u in units for r in u.requests(render)], cfg.generation, cfg.ray, desc=f"gate {name}")
    cblue = {task: unit.finish(answers, out_dir) for task, unit in tasks.items()}
    rows = table_rows(cfg, {name: {"cblue": cblue}})
    return {
        "cblue": {r["task"]: r["scores"][name] for r in rows},
        "clinicalqa": qa.finish(answers, out_dir) if qa else None,
        "safety": safety.finish(answers, out_dir),
    }


def score_preferences(model: dict, rows: list[dict]) -> dict:
    """Preference accuracy of one version on the held-back rows (runs in a Ray task)."""
    import torch

    from medgo.eval.preference import preference_accuracy
    from medgo.model.loading import load_model_and_tokenizer

    net, tokenizer = load_model_and_tokenizer(ModelConfig(**model), "cuda" if torch.cuda.is_available() else "cpu")
    return preference_accuracy(net, tokenizer, rows)


def preference(gate: GateConfig, model: ModelConfig, rows: list[dict]) -> dict:
    import ray

    if not rows:
        return {"accuracy": None, "pairs": 0}
    task = ray.remote(num_cpus=gate.ray.cpus_per_worker, num_gpus=gate.ray.gpus_per_worker if gate.ray.use_gpu else 0)(score_preferences)
    return ray.get(task.remote(model.model_dump(), rows))


def measure(gate: GateConfig, name: str, model: ModelConfig, holdout_rows: list[dict], out_dir: Path) -> dict:
    """Every gate metric of one version (percent; None when not measured) and the raw results."""
    raw = answer_tasks(gate, name, model, out_dir)
    pref = preference(gate, model, holdout_rows)
    scores = list(raw["cblue"].values())
    metrics = {
        "clinicalqa_accuracy": raw["clinicalqa"]["accuracy_loglik"] if raw["clinicalqa"] else None,
        "cblue_mean": sum(s or 0.0 for s in scores) / len(scores) if scores else None,
        "refusal_rate": raw["safety"]["refusal_rate"],
        "preference_accuracy": 100.0 * pref["accuracy"] if pref["accuracy"] is not None else None,
    }
    return {"metrics": metrics, "details": {**raw, "preference": pref}}


def decide(candidate: dict[str, float | None], production: dict[str, float | None], rules: GateRules) -> tuple[bool, list[str]]:
    """(passed, reasons): one reason per rule, saying whether and why it held."""
    reasons = []
    for metric, drop in rules.max_drop.items():
        c, p = candidate.get(metric), production.get(metric)
        if c is None or p is None:
            reasons.append(f"FAIL {metric}: not measured (candidate {c}, production {p})")
        else:
            ok = c >= p - drop
            reasons.append(f"{'ok' if ok else 'FAIL'} {metric}: candidate {c:.2f} vs production {p:.2f} (may fall at most {drop:g} points)")
    for metric, floor in rules.minimum.items():
        c = candidate.get(metric)
        if c is None:
            reasons.append(f"FAIL {metric}: not measured, must be >= {floor:g}")
        else:
            reasons.append(f"{'ok' if c >= floor else 'FAIL'} {metric}: candidate {c:.2f} (must be >= {floor:g})")
    return all(r.startswith("ok") for r in reasons), reasons


