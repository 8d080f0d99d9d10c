"""The doctors' feedback record: one judgement per line of ``medgo serve export``, read by the DPO preference builder.

    record = feedback_record(response_id="c1", created="2025-01-01T08:00:00Z", model="medgo", prompt="...",
                             answer="...", verdict="acceptable", messages=[{"role": "user", "content": "..."}])
    context, reason = feedback_context(record)       # the chat before the answer, or None and why

Fields: ``response_id, created`` (ISO 8601 UTC), ``model, prompt`` (the last user turn),
``answer, verdict`` (``acceptable`` | ``unacceptable``), ``corrected_answer, comment, reviewer``
and ``messages`` (the chat before the answer; ``null`` for a raw text completion).
"""

from __future__ import annotations

import re

ACCEPTABLE, UNACCEPTABLE = "acceptable", "unacceptable"
VERDICTS = (ACCEPTABLE, UNACCEPTABLE)
ROLES = ("system", "user", "assistant")
FIELDS = ("response_id", "created", "model", "prompt", "answer", "verdict", "corrected_answer", "comment", "reviewer", "messages")


def feedback_record(**values) -> dict:
    """One export line, every field in order (a missing one is null); an unknown field or verdict is a ValueError."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"feedback record: unknown fields {sorted(unknown)}")
    if values.get("verdict") not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {values.get('verdict')!r}")
    return {key: values.get(key) for key in FIELDS}


_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalise_text(text: str) -> str:
    """Collapse runs of spaces/tabs (full-width spaces included), strip every line, keep at most one blank line."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def text_field(record: dict, key: str) -> str | None:
    """The normalised string at ``key``; None when absent, null, empty or not a string."""
    value = record.get(key)
    if not isinstance(value, str):
        return None
    return normalise_text(value) or None


def parse_messages(value) -> tuple[tuple[str, str], ...] | None:
    """A chat as ``((role, content), ...)``; None unless a non-empty list of well-formed messages."""
    if not isinstance(value, list) or not value:
        return None
    out = []
    for m in value:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return None
        out.append((m["role"], normalise_text(m["content"])))
    return tuple(out)


def feedback_context(record: dict) -> tuple[tuple[tuple[str, str], ...] | None, str]:
    """``(context, reason)``: the chat before the answer, or None and why it cannot be used."""
    if "messages" in record and record["messages"] is None:
        return None, "text_completion"
    if record.get("messages") is not None:
        context = parse_messages(record["messages"])
        return context, "" if context else "bad_messages"
    prompt = text_field(record, "prompt")
    return ((("user", prompt),), "") if prompt else (None, "missing_prompt")
