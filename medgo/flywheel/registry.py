"""The model registry: every version of a served model, its lineage, gate results and status.

One table, ``medgo_model_versions``, in the serving database (the feedback store's; SQLite or
PostgreSQL).  A version names its parent, base model and fingerprint, adapter directory and a
hash of its files, its training config and the feedback rows it was trained on; every change of
status is written to the append-only ``medgo_audit`` table::

    reg = Registry("sqlite:///runs/serve/feedback.db")
    reg.ensure_production(model="medgo-tiny", base_model="tiny", base_fingerprint="tiny@...", adapter_dir=None, actor="ops")
    reg.register(model="medgo-tiny", parent="medgo-tiny-r0000", ..., status="canary", actor="round")
    reg.set_status("medgo-tiny-r0001", "production", actor="dr-wang", reason="acceptance up", source="medgo flywheel promote")

At most one ``production`` and one ``canary`` per model: making a version production retires
the previous production, a new canary retires the previous canary.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Float, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from medgo.serve.store import Base, FeedbackStore, iso, utcnow

STATUSES = ("candidate", "canary", "production", "rejected", "retired")
METHODS = ("dpo", "kto")
DEFAULT_CANARY_SHARE = 0.1
SINGLE = ("production", "canary")
"""Statuses at most one version of a model holds at a time."""


class ModelVersionRow(Base):
    """One version of a served model: lineage, what it was trained on, how it fared, where it stands."""

    __tablename__ = "medgo_model_versions"

    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    parent: Mapped[str | None] = mapped_column(String(128))
    base_model: Mapped[str] = mapped_column(String(1024))
    base_fingerprint: Mapped[str] = mapped_column(String(128))
    adapter_dir: Mapped[str | None] = mapped_column(String(1024))
    adapter_hash: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 over the adapter directory's files (:func:`adapter_hash`)."""
    method: Mapped[str | None] = mapped_column(String(16))
    train_config: Mapped[dict] = mapped_column(JSON)
    feedback: Mapped[dict] = mapped_column(JSON)
    """``{watermark, count, ids, sha256}``: the ``medgo_feedback`` rows it was trained on."""
    gate: Mapped[dict | None] = mapped_column(JSON)
    reasons: Mapped[list] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    canary_share: Mapped[float | None] = mapped_column(Float)
    """Share of conversations a canary serves."""
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RegistryError(ValueError):
    """A registry request that cannot be met (unknown version, forbidden change of status)."""


def adapter_hash(path: str | Path) -> str:
    """SHA-256 over every file of an adapter directory (relative names and contents, sorted)."""
    root, h = Path(path), hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def feedback_lineage(ids: list[int]) -> dict:
    """The ``feedback`` field for a version trained on these ``medgo_feedback`` ids."""
    ids = sorted(int(i) for i in ids)
    return {"watermark": max(ids, default=0), "count": len(ids), "ids": ids, "sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest()}


def as_dict(row: ModelVersionRow) -> dict:
    out = {c.name: getattr(row, c.name) for c in ModelVersionRow.__table__.columns}
    out["created"], out["updated"] = iso(row.created), iso(row.updated)
    return out


class Registry:
    """Model versions in the serving database; tables are created when missing."""

    def __init__(self, database_url: str):
        self.store = FeedbackStore(database_url)
        self.engine = self.store.engine

    def close(self) -> None:
        self.store.close()

    def register(self, *, model: str, parent: str | None, base_model: str, base_fingerprint: str, adapter_dir: str | None, adapter_hash: str | None,
                 method: str | None, train_config: dict, feedback: dict, gate: dict | None, reasons: list[str], status: str, actor: str,
                 version: str | None = None, canary_share: float | None = None, source: str = "medgo flywheel") -> dict:
        """Record a new version (named ``<model>-rNNNN`` unless ``version`` is given); audited."""
        _check_status(status)
        if method is not None and method not in METHODS:
            raise RegistryError(f"method must be one of {METHODS} or None, got {method!r}")
        for attempt in range(5):  # two rounds racing for the same number: the loser takes the next
            try:
                return self._insert(dict(
                    version=version, model=model, parent=parent, base_model=base_model, base_fingerprint=base_fingerprint, adapter_dir=adapter_dir,
                    adapter_hash=adapter_hash, method=method, train_config=train_config, feedback=feedback, gate=gate, reasons=list(reasons),
                ), status, canary_share, actor, source)
            except IntegrityError:
                if version is not None or attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _insert(self, fields: dict, status: str, share: float | None, actor: str, source: str) -> dict:
        with Session(self.engine) as session, session.begin():
            model = fields["model"]
            if fields["parent"] is not None and session.get(ModelVersionRow, fields["parent"]) is None:
                raise RegistryError(f"parent version {fields['parent']!r} is not registered")
            fields["version"] = fields["version"] or _next_name(session, model)
            now = utcnow()
            row = ModelVersionRow(**fields, status="candidate", canary_share=None, created=now, updated=now)
            session.add(row)
            session.flush()
            self.store.audit(actor, source, "flywheel register", {"version": row.version, "status": status}, 1,
                             {"parent": row.parent, "method": row.method, "feedback_count": (row.feedback or {}).get("count"), "reasons": row.reasons}, session)
            if status != "candidate":
                _move(self.store, session, row, status, actor, "registered", source, share)
            session.flush()
            return as_dict(row)

    def get(self, version: str) -> dict | None:
        with Session(self.engine) as session:
            row = session.get(ModelVersionRow, version)
            return as_dict(row) if row else None

    def versions(self, model: str | None = None) -> list[dict]:
        """Newest first."""
        query = select(ModelVersionRow).order_by(ModelVersionRow.created.desc(), ModelVersionRow.version.desc())
        if model is not None:
            query = query.where(ModelVersionRow.model == model)
        with Session(self.engine) as session:
            return [as_dict(r) for r in session.scalars(query)]

    def live(self, model: str) -> dict:
        """``{production, canary, canary_share}`` of ``model`` (versions as dicts, or None)."""
        with Session(self.engine) as session:
            prod, canary = (_holder(session, model, s) for s in SINGLE)
            return {"production": as_dict(prod) if prod else None, "canary": as_dict(canary) if canary else None,
                    "canary_share": float(canary.canary_share or 0.0) if canary else 0.0}

    def watermark(self, model: str) -> int:
        """The highest ``medgo_feedback.id`` any registered version of ``model`` consumed (0 if none)."""
        with Session(self.engine) as session:
            rows = session.scalars(select(ModelVersionRow.feedback).where(ModelVersionRow.model == model))
            return max((int((f or {}).get("watermark") or 0) for f in rows), default=0)

    def set_status(self, version: str, status: str, *, actor: str, reason: str, source: str, canary_share: float | None = None) -> dict:
        """Change a version's status (and a canary's share); the displaced production/canary is retired; audited."""
        _check_status(status)
        with Session(self.engine) as session, session.begin():
            row = _row(session, version)
            _move(self.store, session, row, status, actor, reason, source, canary_share)
            session.flush()
            return as_dict(row)

    def rollback(self, version: str, *, actor: str, reason: str, source: str) -> dict:
        """Undo a version: a canary is rejected; a production is rejected and its parent restored to production.

        Returns the live versions after the change (as :meth:`live`).
        """
        with Session(self.engine) as session, session.begin():
            row = _row(session, version)
            parent = session.get(ModelVersionRow, row.parent) if row.parent else None
            if row.status == "production" and parent is None:
                raise RegistryError(f"{version} has no parent version to roll back to")
            if row.status not in ("production", "canary"):
                raise RegistryError(f"only a canary or the production version can be rolled back; {version} is {row.status}")
            was = row.status
            _move(self.store, session, row, "rejected", actor, reason, source)
            if was == "production":
                _move(self.store, session, parent, "production", actor, f"restored: rollback of {version}", source)
            model = row.model
        return self.live(model)

    def ensure_production(self, *, model: str, base_model: str, base_fingerprint: str, adapter_dir: str | None, actor: str) -> dict:
        """The production version of ``model``; when it has none, register what is served now (an adapter or the bare base)."""
        current = self.live(model)["production"]
        if current is not None:
            return current
        return self.register(
            model=model, parent=None, base_model=base_model, base_fingerprint=base_fingerprint, adapter_dir=adapter_dir,
            adapter_hash=adapter_hash(adapter_dir) if adapter_dir else None, method=None, train_config={}, feedback=feedback_lineage([]),
            gate=None, reasons=["bootstrap: the model served before the flywheel"], status="production", actor=actor, source="medgo flywheel init",
        )


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise RegistryError(f"status must be one of {STATUSES}, got {status!r}")


def _row(session: Session, version: str) -> ModelVersionRow:
    row = session.get(ModelVersionRow, version)
    if row is None:
        raise RegistryError(f"no model version {version!r}; see medgo flywheel status")
    return row


def _holder(session: Session, model: str, status: str) -> ModelVersionRow | None:
    query = select(ModelVersionRow).where(ModelVersionRow.model == model, ModelVersionRow.status == status).order_by(ModelVersionRow.updated.desc())
    return session.scalars(query).first()


def _next_name(session: Session, model: str) -> str:
    names = session.scalars(select(ModelVersionRow.version).where(ModelVersionRow.model == model)).all()
    numbers = [int(n.rsplit("-r", 1)[1]) for n in names if n.rsplit("-r", 1)[-1].isdigit() and n.startswith(f"{model}-r")]
    return f"{model}-r{max(numbers, default=-1) + 1:04d}"


def _move(store: FeedbackStore, session: Session, row: ModelVersionRow, status: str, actor: str, reason: str, source: str, share: float | None = None) -> None:
    """Set ``row``'s status (retiring the version it displaces) and write the audit rows, in ``session``."""
    if status in SINGLE:
        other = _holder(session, row.model, status)
        if other is not None and other.version != row.version:
            _set(store, session, other, "retired", actor, f"replaced by {row.version}", source)
    if status == "canary":
        share = DEFAULT_CANARY_SHARE if share is None and row.canary_share is None else share
        if share is not None and not 0.0 <= share <= 1.0:
            raise RegistryError(f"canary share must be between 0 and 1, got {share}")
        row.canary_share = share if share is not None else row.canary_share
    _set(store, session, row, status, actor, reason, source)


def _set(store: FeedbackStore, session: Session, row: ModelVersionRow, status: str, actor: str, reason: str, source: str) -> None:
    before = row.status
    row.status, row.updated = status, utcnow()
    row.reasons = [*(row.reasons or []), f"{status}: {reason}"] if status != before else row.reasons
    args: dict[str, Any] = {"version": row.version, "from": before, "to": status, "reason": reason}
    if status == "canary":
        args["canary_share"] = row.canary_share
    store.audit(actor, source, f"flywheel {status}", args, 1, {"model": row.model}, session)
    session.flush()
