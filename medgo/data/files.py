"""Reading task files: JSON, JSONL and TSV with errors that name the file and line, and record keys.

    from medgo.data.files import records, keyed_by_text
    recs = records("CMeEE-V2_dev.json")                        # JSON array, one object or JSONL
    keys = keyed_by_text(r["text"] for r in recs)              # "text", "text#2", ... for repeats

Used by the CBLUE gold readers (:mod:`medgo.data.cblue_gold`), the SFT data and the scorers.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path


class TaskFileError(ValueError):
    """A task file (gold, prediction, PromptCBLUE) that cannot be read; the message names the file (and line)."""


def read_json(path) -> object:
    """A JSON document; the error names the file and position."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise TaskFileError(f"{path}: no such file") from e
    except json.JSONDecodeError as e:
        raise TaskFileError(f"{path}: not valid JSON ({e})") from e


def read_jsonl(path) -> list:
    """One JSON value per non-empty line; the error names the file and line."""
    path = Path(path)
    rows = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise TaskFileError(f"{path}:{n}: not valid JSON ({e})") from e
    except FileNotFoundError as e:
        raise TaskFileError(f"{path}: no such file") from e
    return rows


def read_json_or_jsonl(path) -> list:
    """Records of a JSON array, a single JSON object (a one-element list) or JSONL (one object per line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise TaskFileError(f"{path}: no such file") from e
    stripped = text.lstrip()
    try:
        data = json.loads(text)  # a JSON array, a JSON object or single-record JSONL
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError as e:
        if stripped.startswith("["):
            raise TaskFileError(f"{path}: not valid JSON ({e})") from e
    return read_jsonl(path)


def read_tsv(path, min_cols: int = 2) -> list[list[str]]:
    """Tab-separated rows (blank lines skipped); rows with fewer than ``min_cols`` fields are errors."""
    path = Path(path)
    rows = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n").rstrip("\r")
                if not line.strip():
                    continue
                cols = line.split("\t")
                if len(cols) < min_cols:
                    raise TaskFileError(f"{path}:{n}: expected {min_cols} tab-separated fields, got {len(cols)}")
                rows.append(cols)
    except FileNotFoundError as e:
        raise TaskFileError(f"{path}: no such file") from e
    return rows


def keyed_by_text(texts: Iterable[str]) -> list[str]:
    """Keys for records identified by their text (CMeEE, CMeIE, CDN, CMedCausal, Text2DT).

    The official checkers key records by text; a text seen again gets ``text#2``, ``#3``...
    so repeated texts stay distinct and still pair up in file order.
    """
    seen: Counter = Counter()
    keys = []
    for t in texts:
        seen[t] += 1
        keys.append(t if seen[t] == 1 else f"{t}#{seen[t]}")
    return keys


def as_str(x) -> str:
    return "" if x is None else str(x)



def records(path) -> list[dict]:
    """The JSON objects of a JSON array, single JSON object or JSONL file (anything else dropped)."""
    return [r for r in read_json_or_jsonl(path) if isinstance(r, dict)]
