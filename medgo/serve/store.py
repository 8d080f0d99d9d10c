"""Durable record of every completion and every doctor's verdict on it (SQLAlchemy).

A SQLite file by default (WAL journal, so several replicas on one machine can write), any
PostgreSQL server by URL.  Identical feedback on the same response is stored once (a unique
content digest); feedback for an unknown response id is refused.  The JSONL export is what the
preference (DPO/KTO) stage reads::

    medgo serve export --database sqlite:///runs/serve/feedback.db --output runs/serve/feedback.jsonl

Each line has the fields of ``medgo/assets/feedback/feedback.jsonl`` — ``{response_id, created
(ISO 8601 UTC), model, prompt, answer, verdict, corrected_answer, comment, reviewer}`` with
``prompt`` the doctor's (last user) question, or the raw prompt of a text completion — plus
``messages``: the whole chat (list of ``{role, content}``, system and earlier turns included),
``null`` for text completions.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, event, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medgo.data.feedback import VERDICTS, feedback_record



class Base(DeclarativeBase):
    pass


class CompletionRow(Base):
    """One answer the API gave: who answered (model + versions), to what, with which settings."""

    __tablename__ = "medgo_completions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    endpoint: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    base_version: Mapped[str] = mapped_column(String(128))
    adapter: Mapped[str | None] = mapped_column(String(128))
    adapter_version: Mapped[str | None] = mapped_column(String(128))
    prompt: Mapped[Any] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text)
    params: Mapped[dict] = mapped_column(JSON)
    finish_reason: Mapped[str] = mapped_column(String(16))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_s: Mapped[float] = mapped_column(Float)


class FeedbackRow(Base):
    """A doctor's verdict on one completion, with an optional corrected answer."""

    __tablename__ = "medgo_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(ForeignKey("medgo_completions.id"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    corrected_answer: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str | None] = mapped_column(String(256))
    digest: Mapped[str] = mapped_column(String(64), unique=True)


class UnknownResponse(LookupError):
    """Feedback names a response id the store has never seen."""


@dataclass(frozen=True)
class StoredFeedback:
    id: int
    response_id: str
    verdict: str
    created: bool
    """False when identical feedback was already stored (nothing new was written)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def feedback_digest(response_id: str, verdict: str, corrected_answer: str | None, comment: str | None, reviewer: str | None) -> str:
    fields = [response_id, verdict, corrected_answer, comment, reviewer]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """SQLAlchemy engine; a SQLite file's directory is created and WAL + busy timeout are set."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=30)


class FeedbackStore:
    """Completions and feedback in one SQL database."""

    def __init__(self, url: str, create: bool = True):
        self.url = url
        self.engine = make_engine(url)
        if create:
            self.create_schema()

    def create_schema(self, attempts: int = 5) -> None:
        """Create missing tables (idempotent; retried when replicas race to create them)."""
        for attempt in range(attempts):
            try:
                Base.metadata.create_all(self.engine)
                return
            except (IntegrityError, OperationalError, ProgrammingError):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def add_completion(self, **fields: Any) -> None:
        """Record one completion (``id`` must be new)."""
        fields.setdefault("created", utcnow())
        with Session(self.engine) as session, session.begin():
            session.add(CompletionRow(**fields))

    def add_feedback(self, response_id: str, verdict: str, corrected_answer: str | None = None, comment: str | None = None, reviewer: str | None = None) -> StoredFeedback:
        """Store a verdict once; raises :class:`UnknownResponse` for an unknown response id."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        digest = feedback_digest(response_id, verdict, corrected_answer, comment, reviewer)
        with Session(self.engine) as session:
            if session.get(CompletionRow, response_id) is None:
                raise UnknownResponse(response_id)
            existing = session.scalar(select(FeedbackRow).where(FeedbackRow.digest == digest))
            if existing is not None:
                return StoredFeedback(existing.id, response_id, verdict, False)
            row = FeedbackRow(response_id=response_id, created=utcnow(), verdict=verdict, corrected_answer=corrected_answer, comment=comment, reviewer=reviewer, digest=digest)
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # an identical post won the race
                session.rollback()
                existing = session.scalar(select(FeedbackRow).where(FeedbackRow.digest == digest))
                if existing is None:
                    raise
                return StoredFeedback(existing.id, response_id, verdict, False)
            return StoredFeedback(row.id, response_id, verdict, True)

    def counts(self) -> tuple[int, int]:
        """(completions, feedback rows) stored."""
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(CompletionRow)), session.scalar(select(func.count()).select_from(FeedbackRow))

    def iter_preferences(self, since: datetime | None = None) -> Iterator[dict]:
        """Feedback joined with its completion, oldest first, as preference-stage records."""
        query = select(FeedbackRow, CompletionRow).join(CompletionRow, FeedbackRow.response_id == CompletionRow.id).order_by(FeedbackRow.id)
        if since is not None:
            query = query.where(FeedbackRow.created >= since)
        with Session(self.engine) as session:
            for fb, comp in session.execute(query).yield_per(500):
                yield preference_record(fb, comp)

    def export_jsonl(self, out: IO[str], since: datetime | None = None) -> int:
        """Write :meth:`iter_preferences` as JSON lines; returns the number of records."""
        n = 0
        for record in self.iter_preferences(since):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
        return n

    def close(self) -> None:
        self.engine.dispose()


def preference_record(fb: FeedbackRow, comp: CompletionRow) -> dict:
    """One export line: :mod:`medgo.data.feedback`'s record."""
    created = comp.created if comp.created.tzinfo else comp.created.replace(tzinfo=timezone.utc)
    messages = comp.prompt if isinstance(comp.prompt, list) else None
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "") if messages else comp.prompt
    return feedback_record(
        response_id=comp.id,
        created=created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        model=comp.model,
        prompt=question,
        answer=comp.answer,
        verdict=fb.verdict,
        corrected_answer=fb.corrected_answer,
        comment=fb.comment,
        reviewer=fb.reviewer,
        messages=messages,
    )
