"""How each served model version fares with the doctors: answers served, judgements, acceptance.

A version is what a completion recorded about who answered it: the served ``model`` name, the
base model's version, and the LoRA ``adapter`` and its ``adapter_version`` (both None for the
base model).  Only current judgements count (a reviewer's newest on a response, see
:mod:`medgo.serve.store`); the acceptance rate comes with its 95% Wilson score interval::

    GET /v1/versions/stats            (scope admin)

The rows are keyed by (model, base_version, adapter, adapter_version).  An answer routed by the
flywheel records its registry version as ``adapter``; such rows also carry that version's
``status`` and ``parent`` from the model registry (:mod:`medgo.flywheel.registry`), None otherwise.
"""

from __future__ import annotations

from scipy.stats import binomtest
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from medgo.flywheel.registry import ModelVersionRow
from medgo.serve.store import CURRENT, CompletionRow, FeedbackRow, FeedbackStore, iso

VERSION_KEY = (CompletionRow.model, CompletionRow.base_version, CompletionRow.adapter, CompletionRow.adapter_version)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion; None without trials."""
    if trials == 0:
        return None
    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def version_stats(store: FeedbackStore) -> list[dict]:
    """One row per served version, the most recently used first."""
    acceptable = func.sum(case((FeedbackRow.verdict == "acceptable", 1), else_=0))
    query = (
        select(*VERSION_KEY, ModelVersionRow.status, ModelVersionRow.parent, func.count(func.distinct(CompletionRow.id)), func.count(FeedbackRow.id),
               acceptable, func.max(CompletionRow.created))
        .select_from(CompletionRow)
        .outerjoin(FeedbackRow, (FeedbackRow.response_id == CompletionRow.id) & CURRENT)
        .outerjoin(ModelVersionRow, (ModelVersionRow.version == CompletionRow.adapter) & (ModelVersionRow.model == CompletionRow.model))
        .group_by(*VERSION_KEY, ModelVersionRow.status, ModelVersionRow.parent)
        .order_by(func.max(CompletionRow.created).desc())
    )
    with Session(store.engine) as session:
        return [_stats_row(*row) for row in session.execute(query)]


def _stats_row(model, base_version, adapter, adapter_version, status, parent, answers, judgements, acceptable, last_served) -> dict:
    acceptable = int(acceptable or 0)
    return {
        "model": model, "base_version": base_version, "adapter": adapter, "adapter_version": adapter_version, "status": status, "parent": parent,
        "answers": answers, "judgements": judgements, "acceptable": acceptable,
        "acceptance_rate": acceptable / judgements if judgements else None,
        "interval_95": wilson_interval(acceptable, judgements), "last_served": iso(last_served),
    }
