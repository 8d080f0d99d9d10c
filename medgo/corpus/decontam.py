"""Decontamination: drop training documents that share a long character n-gram with an eval item.

Evaluation files are read generically, so every CBLUE task's native format works: JSON and
JSONL (every string value of at least ``ngram`` characters is an item text, keys excluded),
CSV/TSV (every cell) and TXT (every line).  Texts are normalised like the corpus and
whitespace is removed on both sides before hashing, so a reformatted copy still matches.

    index = build_index(["medgo://assets/cblue/*/*_test.json*"], ngram=13)
    hit = index.first_match("...document text...")   # None, or (item number, position)
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

import numpy as np

from medgo.corpus.clean import normalise
from medgo.corpus.config import display_path, expand, resolve_path
from medgo.corpus.hashing import codepoints, ngram_hashes

_WHITESPACE = re.compile(r"\s+")


def canonical(text: str) -> str:
    """The form both sides are compared in: normalised, without whitespace."""
    return _WHITESPACE.sub("", normalise(text))


def _strings(value, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def item_texts(path) -> list[str]:
    """Every text of one evaluation file, in file order."""
    try:
        raw = resolve_path(str(path)).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"evaluation file {path} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    name = str(path).lower()
    out: list[str] = []
    if name.endswith((".json", ".jsonl")):
        try:
            _strings(json.loads(raw), out)
        except json.JSONDecodeError:
            for number, line in enumerate(raw.splitlines(), 1):
                if line.strip():
                    try:
                        _strings(json.loads(line), out)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"evaluation file {path}, line {number}: not valid JSON ({exc.msg})") from None
    elif name.endswith((".csv", ".tsv")):
        dialect = "excel-tab" if name.endswith(".tsv") else "excel"
        for row in csv.reader(io.StringIO(raw), dialect=dialect):
            out.extend(row)
    else:
        out.extend(raw.splitlines())
    return out


@dataclass
class EvalIndex:
    """Sorted n-gram hashes of all eval items, each with the item it came from."""

    ngram: int
    hashes: np.ndarray  # uint64, sorted
    item_of: np.ndarray  # int32, item number of each hash
    items: list[tuple[str, int]]  # (eval file, index of the text within that file)
    skipped_short: int = 0

    def first_match(self, text: str, normalised: bool = False) -> tuple[int, str] | None:
        """(item number, the shared n-gram) of the first n-gram ``text`` shares with an item.

        ``normalised=True`` skips the normalisation for text the cleaning step already normalised.
        """
        if self.hashes.size == 0:
            return None
        canon = _WHITESPACE.sub("", text) if normalised else canonical(text)
        h = ngram_hashes(codepoints(canon), self.ngram)
        if h.size == 0:
            return None
        pos = np.searchsorted(self.hashes, h)
        pos[pos == self.hashes.size] = 0
        hit = np.flatnonzero(self.hashes[pos] == h)
        if hit.size == 0:
            return None
        first = int(hit[0])
        return int(self.item_of[pos[first]]), canon[first : first + self.ngram]


def build_index(patterns: list[str], ngram: int) -> EvalIndex:
    """Hash every n-gram of every eval item of the files matching ``patterns``."""
    hashes, owners, items, short = [], [], [], 0
    for pattern in patterns:
        for path in expand(pattern):
            for j, text in enumerate(item_texts(path)):
                h = np.unique(ngram_hashes(codepoints(canonical(text)), ngram))
                if h.size == 0:
                    short += bool(text.strip())
                    continue
                hashes.append(h)
                owners.append(np.full(h.size, len(items), dtype=np.int32))
                items.append((display_path(path), j))
    if not hashes:
        return EvalIndex(ngram, np.empty(0, np.uint64), np.empty(0, np.int32), items, short)
    h, o = np.concatenate(hashes), np.concatenate(owners)
    order = np.argsort(h, kind="stable")
    return EvalIndex(ngram, h[order], o[order], items, short)


def missing_patterns(patterns: list[str]) -> list[str]:
    """Patterns that match no file (reported before any worker starts)."""
    return [p for p in patterns if not expand(p)]
