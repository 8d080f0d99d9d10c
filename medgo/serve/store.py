"""Durable record of every completion and every doctor's verdict on it (SQLAlchemy).

A SQLite file by default (WAL journal, so several replicas on one machine can write), any
PostgreSQL server by URL.  Identical feedback on the same response is stored once (a unique
content digest); feedback for an unknown response id is refused.  Judgements are never edited: a reviewer's new
verdict on a response they judged before is a new row whose ``supersedes`` names the row it
replaces, so lineage stays; the current row is the reviewer's newest on that response (concurrent
posts by one reviewer may name the same earlier row; the newest still wins), and exports, the
review queue and the version statistics use current rows only.  Row ids only grow, so "rows with
id above a watermark" are the judgements given since.  The JSONL export is what the
preference (DPO/KTO) stage reads::

    medgo serve export --database sqlite:///runs/serve/feedback.db --output runs/serve/feedback.jsonl

Each line has the fields of ``medgo/assets/feedback/feedback.jsonl`` — ``{response_id, created
(ISO 8601 UTC), model, prompt, answer, verdict, corrected_answer, comment, reviewer}`` with
``prompt`` the doctor's (last user) question, or the raw prompt of a text completion — plus
``messages``: the whole chat (list of ``{role, content}``, system and earlier turns included),
``null`` for text completions.

Exports are de-identified by default (:func:`deidentify_record`: prompt, messages, answer,
corrected answer and comment pass through :func:`medgo.corpus.phi.deidentify`).  Every export
and purge is written to the append-only ``medgo_audit`` table (database triggers refuse UPDATE,
DELETE and TRUNCATE on it).  :meth:`FeedbackStore.purge` deletes completions (and their
feedback) older than a cutoff, or replaces their text by de-identified text.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from sqlalchemy import DDL, JSON, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, delete, event, func, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column

from medgo.corpus.phi import scrub
from medgo.data.feedback import VERDICTS, feedback_record

PURGE_MODES = ("delete", "deidentify")
AGE = re.compile(r"^([1-9][0-9]{0,5})([hdw])$")
AGE_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
MAX_AGE = timedelta(days=36525)
JUDGE_ATTEMPTS = 3
"""Tries to store a judgement while an identical concurrent post wins the race."""


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
    supersedes: Mapped[int | None] = mapped_column(Integer)
    """The id of the reviewer's judgement of this response that was current when this row was stored."""


class AuditRow(Base):
    """One export or purge: who (key name, or OS user), through what, with which arguments, how many rows."""

    __tablename__ = "medgo_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(64))
    """``api`` or the command (``medgo serve export``...)."""
    action: Mapped[str] = mapped_column(String(32))
    arguments: Mapped[dict] = mapped_column(JSON)
    rows: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict | None] = mapped_column(JSON)


_APPEND_ONLY = "medgo_audit is append-only"
for _ddl, _dialect in (
    (f"CREATE TRIGGER medgo_audit_no_delete BEFORE DELETE ON medgo_audit BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END", "sqlite"),
    (f"CREATE TRIGGER medgo_audit_no_update BEFORE UPDATE ON medgo_audit BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END", "sqlite"),
    (f"CREATE OR REPLACE FUNCTION medgo_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$", "postgresql"),
    ("CREATE TRIGGER medgo_audit_no_change BEFORE UPDATE OR DELETE ON medgo_audit FOR EACH ROW EXECUTE FUNCTION medgo_audit_refuse()", "postgresql"),
    ("CREATE TRIGGER medgo_audit_no_truncate BEFORE TRUNCATE ON medgo_audit FOR EACH STATEMENT EXECUTE FUNCTION medgo_audit_refuse()", "postgresql"),
):
    event.listen(AuditRow.__table__, "after_create", DDL(_ddl).execute_if(dialect=_dialect))


_LATER = aliased(FeedbackRow)
CURRENT = ~select(_LATER.id).where(_LATER.response_id == FeedbackRow.response_id, _LATER.reviewer.is_not_distinct_from(FeedbackRow.reviewer), _LATER.id > FeedbackRow.id).exists()
"""Where-clause: the feedback row is current (its reviewer's newest on its response)."""
UNJUDGED = ~select(FeedbackRow.id).where(FeedbackRow.response_id == CompletionRow.id).exists()
"""Where-clause: nobody has judged the completion."""


class UnknownResponse(LookupError):
    """Feedback names a response id the store has never seen."""


@dataclass(frozen=True)
class StoredFeedback:
    id: int
    response_id: str
    verdict: str
    created: bool
    """False when identical feedback was already stored (nothing new was written)."""
    supersedes: int | None = None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_age(text: str) -> timedelta:
    """``90d``, ``12w``, ``48h`` -> a timedelta; anything else is a ValueError naming the forms."""
    match = AGE.match(text.strip())
    age = timedelta(**{AGE_UNITS[match[2]]: int(match[1])}) if match else None
    if age is None or age > MAX_AGE:
        raise ValueError(f"age {text!r} must be a positive number of hours, days or weeks, at most 100 years: 48h, 90d, 12w")
    return age


def feedback_digest(response_id: str, verdict: str, corrected_answer: str | None, comment: str | None, reviewer: str | None, supersedes: int | None = None) -> str:
    fields = [response_id, verdict, corrected_answer, comment, reviewer] + ([supersedes] if supersedes is not None else [])
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
                _add_supersedes(self.engine)
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
        """Store a judgement; it supersedes the reviewer's current one on this response, if any.

        Repeating the reviewer's current judgement stores nothing (``created`` False); raises
        :class:`UnknownResponse` for an unknown response id.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        for attempt in range(JUDGE_ATTEMPTS):
            try:
                return self._judge(response_id, verdict, corrected_answer, comment, reviewer)
            except IntegrityError:  # an identical concurrent post won: judge again against it
                if attempt == JUDGE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _judge(self, response_id: str, verdict: str, corrected_answer: str | None, comment: str | None, reviewer: str | None) -> StoredFeedback:
        with Session(self.engine) as session:
            if session.get(CompletionRow, response_id) is None:
                raise UnknownResponse(response_id)
            current = session.scalar(select(FeedbackRow).where(FeedbackRow.response_id == response_id, FeedbackRow.reviewer.is_not_distinct_from(reviewer), CURRENT))
            if current is not None and (current.verdict, current.corrected_answer, current.comment) == (verdict, corrected_answer, comment):
                return StoredFeedback(current.id, response_id, verdict, False, current.supersedes)
            old = current.id if current is not None else None
            row = FeedbackRow(response_id=response_id, created=utcnow(), verdict=verdict, corrected_answer=corrected_answer, comment=comment,
                              reviewer=reviewer, digest=feedback_digest(response_id, verdict, corrected_answer, comment, reviewer, old), supersedes=old)
            session.add(row)
            session.commit()
            return StoredFeedback(row.id, response_id, verdict, True, old)

    def counts(self) -> tuple[int, int]:
        """(completions, feedback rows) stored."""
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(CompletionRow)), session.scalar(select(func.count()).select_from(FeedbackRow))

    def iter_preferences(self, since: datetime | None = None) -> Iterator[dict]:
        """Current feedback joined with its completion, oldest first, as preference-stage records."""
        query = select(FeedbackRow, CompletionRow).join(CompletionRow, FeedbackRow.response_id == CompletionRow.id).where(CURRENT).order_by(FeedbackRow.id)
        if since is not None:
            query = query.where(FeedbackRow.created >= since)
        with Session(self.engine) as session:
            for fb, comp in session.execute(query).yield_per(500):
                yield preference_record(fb, comp)

    def export_jsonl(self, out: IO[str], since: datetime | None = None, raw: bool = False, limit: int | None = None, counts: Counter | None = None) -> int:
        """Write :meth:`iter_preferences` (at most ``limit``) as JSON lines, de-identified unless ``raw``.

        Returns the number of records; replacements by type are added to ``counts``.
        """
        n, counts = 0, counts if counts is not None else Counter()
        for record in self.iter_preferences(since):
            if limit is not None and n >= limit:
                break
            out.write(json.dumps(record if raw else deidentify_record(record, counts), ensure_ascii=False) + "\n")
            n += 1
        return n

    def review_queue(self, limit: int = 50, offset: int = 0, model: str | None = None) -> tuple[list[dict], Counter]:
        """Completions nobody has judged yet (of the served ``model`` when given: the base or an adapter),
        newest first, de-identified; and the replacements by type."""
        query = select(CompletionRow).where(UNJUDGED).order_by(CompletionRow.created.desc(), CompletionRow.id).offset(offset).limit(limit)
        if model is not None:
            query = query.where(CompletionRow.model == model)
        counts: Counter = Counter()
        with Session(self.engine) as session:
            rows = session.scalars(query).all()
            return [deidentify_record(review_record(c), counts) for c in rows], counts

    def queue_models(self) -> list[str]:
        """The served model names that have completions awaiting judgement."""
        with Session(self.engine) as session:
            return list(session.scalars(select(CompletionRow.model).where(UNJUDGED).distinct().order_by(CompletionRow.model)))

    def audit(self, actor: str, source: str, action: str, arguments: dict, rows: int, detail: dict | None = None, session: Session | None = None) -> None:
        """Append one row to the audit table (in ``session``'s transaction when given)."""
        row = AuditRow(created=utcnow(), actor=actor, source=source, action=action, arguments=arguments, rows=rows, detail=detail)
        if session is not None:
            session.add(row)
            return
        with Session(self.engine) as own, own.begin():
            own.add(row)

    def audit_log(self, limit: int = 100) -> list[dict]:
        """The newest audit rows first."""
        with Session(self.engine) as session:
            rows = session.scalars(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)).all()
            return [{"id": r.id, "created": iso(r.created), "actor": r.actor, "source": r.source, "action": r.action,
                     "arguments": r.arguments, "rows": r.rows, "detail": r.detail} for r in rows]

    def purge(self, before: datetime, mode: str, actor: str, source: str, arguments: dict) -> dict:
        """Delete completions created before ``before`` with their feedback, or de-identify their text;
        the audit row is written in the same transaction.

        Returns ``{completions, feedback, replaced}``: rows deleted or rewritten, replacements by type.
        """
        if mode not in PURGE_MODES:
            raise ValueError(f"purge mode must be one of {PURGE_MODES}, got {mode!r}")
        old = select(CompletionRow.id).where(CompletionRow.created < before)
        with Session(self.engine) as session, session.begin():
            if mode == "delete":
                feedback = session.execute(delete(FeedbackRow).where(FeedbackRow.response_id.in_(old))).rowcount
                completions = session.execute(delete(CompletionRow).where(CompletionRow.created < before)).rowcount
                result = {"completions": completions, "feedback": feedback, "replaced": {}}
            else:
                result = _deidentify_rows(session, old)
            self.audit(actor, source, "purge", arguments, result["completions"], {"feedback": result["feedback"], "replaced": result["replaced"]}, session)
        return result

    def close(self) -> None:
        self.engine.dispose()


def _add_supersedes(engine: Engine) -> None:
    """Give a feedback table made before judgements could be superseded its ``supersedes`` column."""
    if "supersedes" in {c["name"] for c in inspect(engine).get_columns("medgo_feedback")}:
        return
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE medgo_feedback ADD COLUMN supersedes INTEGER"))


def _deidentify_rows(session: Session, old) -> dict:
    """Replace the text of the completions selected by ``old`` and of their feedback by de-identified text."""
    counts: Counter = Counter()
    completions = feedback = 0
    for comp in session.scalars(select(CompletionRow).where(CompletionRow.id.in_(old))).yield_per(500):
        comp.prompt = deidentify_prompt(comp.prompt, counts)
        comp.answer = scrub(comp.answer, counts)
        completions += 1
    for fb in session.scalars(select(FeedbackRow).where(FeedbackRow.response_id.in_(old))).yield_per(500):
        fb.corrected_answer, fb.comment = scrub(fb.corrected_answer, counts), scrub(fb.comment, counts)
        feedback += 1
    return {"completions": completions, "feedback": feedback, "replaced": dict(sorted(counts.items()))}


def deidentify_prompt(prompt: Any, counts: Counter) -> Any:
    """A stored prompt (chat messages or raw text) de-identified."""
    if isinstance(prompt, list):
        return [{**m, "content": scrub(m.get("content"), counts)} if isinstance(m, dict) else m for m in prompt]
    return scrub(prompt, counts) if isinstance(prompt, str) else prompt


def deidentify_record(record: dict, counts: Counter) -> dict:
    """An export or review record with prompt, messages, answer, corrected answer and comment de-identified."""
    out = dict(record)
    chat = isinstance(out.get("messages"), list)
    if chat:
        out["messages"] = deidentify_prompt(out["messages"], counts)
    for key in ("prompt", "answer", "corrected_answer", "comment"):
        if isinstance(out.get(key), str):  # a chat's prompt repeats its last question: not counted twice
            out[key] = scrub(out[key], Counter() if chat and key == "prompt" else counts)
    return out


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a Z (SQLite gives back naive UTC datetimes)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_prompt(prompt: Any) -> tuple[list | None, str]:
    """(chat messages or None, the last user question or the raw text prompt)."""
    messages = prompt if isinstance(prompt, list) else None
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "") if messages else prompt
    return messages, question


def review_record(comp: CompletionRow) -> dict:
    """A completion awaiting judgement, as the review queue lists it (before de-identification)."""
    messages, question = split_prompt(comp.prompt)
    return {"response_id": comp.id, "created": iso(comp.created), "model": comp.model, "endpoint": comp.endpoint,
            "base_version": comp.base_version, "adapter": comp.adapter, "adapter_version": comp.adapter_version,
            "prompt": question, "messages": messages, "answer": comp.answer}


def preference_record(fb: FeedbackRow, comp: CompletionRow) -> dict:
    """One export line: :mod:`medgo.data.feedback`'s record."""
    messages, question = split_prompt(comp.prompt)
    return feedback_record(
        response_id=comp.id,
        created=iso(comp.created),
        model=comp.model,
        prompt=question,
        answer=comp.answer,
        verdict=fb.verdict,
        corrected_answer=fb.corrected_answer,
        comment=fb.comment,
        reviewer=fb.reviewer,
        messages=messages,
    )
