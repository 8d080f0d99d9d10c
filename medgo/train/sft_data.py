"""SFT data: every source format -> validated chat ``messages`` -> Parquet in the run directory.

    records, bad = read_source(SFTSource(path="medgo://assets/sft/qa.jsonl", format="qa"))

Formats (one reader each):

``messages``        JSONL, ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}``
``qa``              JSONL, ``{"question", "answer"}``
``diagnosis``       JSONL, ``{"chief_complaint", "history", "answer"}`` (chief complaint -> diagnostic reasoning)
``instruction``     JSONL, Alpaca style ``{"instruction", "input", "output"}``
``promptcblue``     JSONL, PromptCBLUE's layout ``{"input", "target", "task_dataset", ...}`` (its ready-made
                    prompt and answer, as in PromptCBLUE's train.json)
``safety_prompts``  JSON keyed by category -> ``[{"prompt", "response", "type"}]`` (the Safety-Prompts layout)
``cblue``           a CBLUE task's native file (``task`` names it), asked and answered with the templates
                    evaluation uses (:func:`medgo.data.prompts.build_prompt` / ``target_text``), so SFT and
                    evaluation prompts are the same

A record that cannot be used becomes a :class:`BadRecord` (file, line or JSON location, reason);
reading always goes on to the end of the file.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from medgo.config import ConfigError, Section
from medgo.data.cblue import READERS, read_examples
from medgo.data.paths import resolve_path
from medgo.data.prompts import build_prompt, target_text

ROLES = ("system", "user", "assistant")
Format = Literal["messages", "qa", "diagnosis", "instruction", "promptcblue", "safety_prompts", "cblue"]


class SFTSource(Section):
    """One data source of the SFT mixture."""

    path: str
    """File to read: ``medgo://assets/...`` for an embedded sample, else a path (relative to the working directory)."""
    format: Format
    name: str | None = None
    """Name in the counts and the ``source`` column; default: the file's stem (the task for ``cblue``)."""
    task: str | None = None
    """CBLUE task for ``format: cblue`` (e.g. ``CHIP-CTC``, ``IMCS-V2-NER``)."""
    system: str | None = None
    """System prompt put before every conversation of this source; default: the chat template's."""
    max_samples: int | None = Field(None, gt=0)
    """Keep the first N valid records."""
    weight: float = Field(1.0, gt=0)
    """Mixture weight: 2 repeats every record twice, 0.5 keeps a seeded half."""

    @model_validator(mode="after")
    def _task_for_cblue(self):
        if (self.format == "cblue") != (self.task is not None):
            raise ValueError("'task' is required with format 'cblue' and only allowed there")
        return self

    @property
    def label(self) -> str:
        return self.name or self.task or Path(self.path).stem


@dataclass
class BadRecord:
    """A record that was skipped, and why."""

    source: str
    path: str
    where: str
    """``line N`` for JSONL, ``Category[i]`` for Safety-Prompts JSON, ``example i`` for CBLUE."""
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.where}: {self.reason}"


class RecordError(ValueError):
    """Raised by a reader for one record; becomes a :class:`BadRecord`."""


def data_file(path: str) -> Path:
    """The file a source names (``medgo://`` for the embedded samples); FileNotFoundError names it."""
    found = resolve_path(path)
    if not found.is_file():
        raise FileNotFoundError(f"SFT data file not found: {path}")
    return found.resolve()


# ----------------------------------------------------------------------------- validation


def validate_messages(messages) -> list[dict]:
    """Normalised ``[{"role", "content"}]``: optional leading system, user/assistant alternating, ending with the assistant."""
    if not isinstance(messages, list) or not messages:
        raise RecordError("'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RecordError(f"message {i} is not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise RecordError(f"message {i} has role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise RecordError(f"message {i} ({role}) has empty or non-text content")
        out.append({"role": role, "content": content.strip()})
    turns = out[1:] if out[0]["role"] == "system" else out
    expected = ["user", "assistant"] * (len(turns) // 2 + 1)
    if not turns or [t["role"] for t in turns] != expected[: len(turns)]:
        raise RecordError("turns must alternate user, assistant (after an optional first system message)")
    if turns[-1]["role"] != "assistant":
        raise RecordError("the conversation must end with an assistant reply")
    return out


def _text(record: dict, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"missing or empty field '{key}'")
    return value.strip()


def _turn(user: str, assistant: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


# ----------------------------------------------------------------------------- record -> messages


def from_messages(r: dict) -> list[dict]:
    return r.get("messages")


def from_qa(r: dict) -> list[dict]:
    return _turn(_text(r, "question"), _text(r, "answer"))


def from_diagnosis(r: dict) -> list[dict]:
    prompt = f"主诉：{_text(r, 'chief_complaint')}\n病史及检查：{_text(r, 'history')}\n请给出诊断思路、主要鉴别诊断和下一步检查建议。"
    return _turn(prompt, _text(r, "answer"))


def from_instruction(r: dict) -> list[dict]:
    extra = r.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RecordError("field 'input' must be text")
    prompt = _text(r, "instruction") + (f"\n\n{extra.strip()}" if extra and extra.strip() else "")
    return _turn(prompt, _text(r, "output"))


def from_promptcblue(r: dict) -> list[dict]:
    return _turn(_text(r, "input"), _text(r, "target"))


def from_safety(r: dict) -> list[dict]:
    return _turn(_text(r, "prompt"), _text(r, "response"))


JSONL_READERS: dict[str, Callable[[dict], list[dict]]] = {
    "messages": from_messages, "qa": from_qa, "diagnosis": from_diagnosis, "instruction": from_instruction, "promptcblue": from_promptcblue,
}  # fmt: skip


# ----------------------------------------------------------------------------- file -> (where, record)


def iter_jsonl(path: Path) -> Iterator[tuple[str, object]]:
    """``("line N", record)``; a line that is not JSON yields a RecordError in place of the record."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"line {n}", json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"line {n}", RecordError(f"not valid JSON ({exc.msg})")


def iter_safety(path: Path) -> Iterator[tuple[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        yield f"line {exc.lineno}", RecordError(f"not valid JSON ({exc.msg}); the whole file was skipped")
        return
    if not isinstance(data, dict):
        yield "top level", RecordError("expected an object keyed by category")
        return
    for category, records in data.items():
        if not isinstance(records, list):
            yield category, RecordError("a category must hold a list of records")
            continue
        for i, r in enumerate(records):
            yield f"{category}[{i}]", r


def iter_cblue(source: SFTSource, path: Path) -> Iterator[tuple[str, object]]:
    """``("example i", messages)`` from a CBLUE task's native file, through the shared prompt templates."""
    if source.task not in READERS:
        raise ConfigError(f"data source {source.path}: unknown CBLUE task {source.task!r}; known: {', '.join(READERS)}")
    try:
        examples, _ = read_examples(source.task, path, source.max_samples)
    except (ValueError, KeyError, TypeError) as exc:
        yield "file", RecordError(f"cannot read as {source.task}: {exc}")
        return
    for i, ex in enumerate(examples):
        try:
            yield f"example {i}", {"messages": build_prompt(source.task, ex) + [{"role": "assistant", "content": target_text(source.task, ex)}]}
        except (KeyError, TypeError, ValueError) as exc:
            yield f"example {i}", RecordError(f"cannot render: {exc!r}")


def iter_source(source: SFTSource, path: Path) -> Iterator[tuple[str, object]]:
    if source.format == "cblue":
        return iter_cblue(source, path)
    if source.format == "safety_prompts":
        return iter_safety(path)
    return iter_jsonl(path)


def to_messages(source: SFTSource, item: object) -> list[dict]:
    """One raw record -> validated messages (with the source's system prompt); RecordError otherwise."""
    if isinstance(item, RecordError):
        raise item
    if not isinstance(item, dict):
        raise RecordError("record is not a JSON object")
    reader = from_messages if source.format == "cblue" else from_safety if source.format == "safety_prompts" else JSONL_READERS[source.format]
    messages = validate_messages(reader(item))
    if source.system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": source.system}, *messages]
    return messages


def read_source(source: SFTSource, check: Callable[[list[dict]], None] | None = None) -> tuple[list[list[dict]], list[BadRecord]]:
    """Valid conversations of one source (the first ``max_samples``) and its bad records.

    ``check(messages)`` may add a rule of the caller's (e.g. a length limit) by raising ValueError.
    """
    path = data_file(source.path)
    good: list[list[dict]] = []
    bad: list[BadRecord] = []
    for where, item in iter_source(source, path):
        if source.max_samples and len(good) >= source.max_samples:
            break
        try:
            messages = to_messages(source, item)
            if check is not None:
                check(messages)
            good.append(messages)
        except (RecordError, ValueError) as exc:
            bad.append(BadRecord(source.label, str(path), where, str(exc)))
    return good, bad


def apply_weight(records: list, weight: float, seed: int) -> list:
    """Repeat each record ``floor(weight)`` times plus a seeded sample for the fraction."""
    whole, frac = int(weight), weight - int(weight)
    extra = random.Random(seed).sample(records, round(frac * len(records))) if frac else []
    return records * whole + extra


def bad_records_jsonl(bad: list[BadRecord]) -> str:
    return "".join(json.dumps(asdict(b), ensure_ascii=False) + "\n" for b in bad)
