"""Doctors' acceptance per model version, its 95% interval, the auto-rollback test and the Ray metric.

An answer belongs to the version that produced it (``medgo_completions.adapter`` holds the
registry version of every flywheel-routed answer); a judgement counts for the version of the
answer it judges.  Acceptance = acceptable judgements / judgements, with a Wilson interval.

The auto-rollback rule compares a canary with production by a one-sided two-proportion z-test
(pooled variance): H1 "the canary's acceptance is below production's"; it fires when the
p-value is below ``alpha`` and both versions have at least ``min_judgements`` judgements.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pydantic import Field
from scipy.stats import binomtest, norm
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from medgo.config import Section
from medgo.data.feedback import ACCEPTABLE
from medgo.serve.store import CompletionRow, FeedbackRow


class AutoRollbackConfig(Section):
    """When a canary is rolled back without a person: significantly worse acceptance than production."""

    enabled: bool = True
    alpha: float = Field(0.05, gt=0, lt=1)
    """Significance level of the one-sided two-proportion test."""
    min_judgements: int = Field(30, gt=0)
    """Judgements each version needs before the rule may fire."""


@dataclass(frozen=True)
class Acceptance:
    """One version's answers and judgements."""

    version: str
    answers: int
    judgements: int
    accepted: int

    @property
    def rate(self) -> float | None:
        return self.accepted / self.judgements if self.judgements else None

    def interval(self, confidence: float = 0.95) -> tuple[float, float] | None:
        """Wilson score interval of the acceptance rate (None without judgements)."""
        if not self.judgements:
            return None
        ci = binomtest(self.accepted, self.judgements).proportion_ci(confidence, method="wilson")
        return ci.low, ci.high

    def as_dict(self) -> dict:
        return {**asdict(self), "rate": self.rate, "interval": self.interval()}


def acceptance(engine, versions: list[str]) -> dict[str, Acceptance]:
    """Answers served, judgements received and accepted, per version (one query each)."""
    with Session(engine) as session:
        answers = dict(session.execute(
            select(CompletionRow.adapter, func.count()).where(CompletionRow.adapter.in_(versions)).group_by(CompletionRow.adapter)).all())
        judged = {v: (n, a) for v, n, a in session.execute(
            select(CompletionRow.adapter, func.count(), func.sum(case((FeedbackRow.verdict == ACCEPTABLE, 1), else_=0)))
            .join(FeedbackRow, FeedbackRow.response_id == CompletionRow.id).where(CompletionRow.adapter.in_(versions)).group_by(CompletionRow.adapter))}
    return {v: Acceptance(v, int(answers.get(v, 0)), int(judged.get(v, (0, 0))[0]), int(judged.get(v, (0, 0))[1] or 0)) for v in versions}


def worse_p_value(canary: Acceptance, production: Acceptance) -> float | None:
    """One-sided p-value of "canary acceptance < production acceptance" (pooled z-test); None if undefined."""
    n1, n2 = canary.judgements, production.judgements
    if not n1 or not n2:
        return None
    pooled = (canary.accepted + production.accepted) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.5 if canary.rate == production.rate else float(canary.rate > production.rate)
    return float(norm.cdf((canary.rate - production.rate) / se))


def rollback_verdict(canary: Acceptance, production: Acceptance, rule: AutoRollbackConfig) -> tuple[bool, str]:
    """(fire?, why) for the auto-rollback rule."""
    if not rule.enabled:
        return False, "auto-rollback disabled"
    short = [a.version for a in (canary, production) if a.judgements < rule.min_judgements]
    if short:
        return False, f"waiting for {rule.min_judgements} judgements on {', '.join(short)}"
    p = worse_p_value(canary, production)
    why = f"canary {canary.accepted}/{canary.judgements} vs production {production.accepted}/{production.judgements}, one-sided p={p:.3g}, alpha={rule.alpha}"
    return p < rule.alpha, why


class AcceptanceGauge:
    """``ray_medgo_flywheel_acceptance_rate{model, version, status}`` (and judgements), via ``ray.util.metrics``."""

    def __init__(self):
        from ray.util.metrics import Gauge

        tags = ("model", "version", "status")
        self.rate = Gauge("medgo_flywheel_acceptance_rate", description="Doctors' acceptance rate of a live model version", tag_keys=tags)
        self.judgements = Gauge("medgo_flywheel_judgements", description="Judgements received by a live model version", tag_keys=tags)

    def set(self, model: str, stats: dict[str, Acceptance], status: dict[str, str]) -> dict[str, float]:
        """Export each version's rate (versions without judgements are skipped); the values set."""
        out = {}
        for version, a in stats.items():
            tags = {"model": model, "version": version, "status": status[version]}
            self.judgements.set(a.judgements, tags=tags)
            if a.rate is not None:
                self.rate.set(a.rate, tags=tags)
                out[version] = a.rate
        return out
