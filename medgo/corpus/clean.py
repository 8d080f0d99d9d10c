"""Cleaning: Unicode normalisation, markup removal, boilerplate lines and quality filters.

Each function takes and returns plain strings so it can be table-tested; the Ray Data steps in
:mod:`medgo.corpus.build` apply them batch by batch.  Filters return the name of the reason a
document is dropped (``too_short``, ``low_content``, ``repetitive``) or ``None``.
"""

from __future__ import annotations

import html
import re
import unicodedata

import numpy as np

from medgo.corpus.hashing import codepoints, ngram_hashes, text_hash

# Full-width ASCII forms (U+FF01..U+FF5E) map to ASCII, except the ones Chinese text uses as
# its own punctuation; the ideographic space becomes a plain space.
CJK_PUNCTUATION_KEPT = "，！？：；（）"
_HALFWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F) if chr(cp) not in CJK_PUNCTUATION_KEPT}
_HALFWIDTH[0x3000] = 0x20

# Control characters (all C0/C1 but tab and newline) and invisible format characters vanish.
_INVISIBLE = {cp: None for cp in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)]}
_INVISIBLE.update({cp: None for cp in [0x00AD, *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2065), 0xFEFF]})
_SPACES = {cp: 0x20 for cp in [0x09, 0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F]}
_TABLE_FULL = {**_INVISIBLE, **_SPACES, **_HALFWIDTH}
_TABLE_KEEP_WIDTH = {**_INVISIBLE, **_SPACES, 0x3000: 0x20}

_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HTML_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.S | re.I)
_HTML_BLOCK_TAG = re.compile(r"</?(?:p|div|br|li|ul|ol|tr|table|h[1-6]|section|article|blockquote)\b[^<>]*/?>", re.I)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_MD_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\([^)\n]*\)")
_MD_LINE_PREFIX = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+(?=\S)|\d+\.[ \t]+(?=\S))", re.M)
_MD_RULE = re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$|^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$", re.M)
_MD_EMPHASIS = re.compile(r"\*\*|__|`+")
_MD_TABLE_PIPE = re.compile(r"[ \t]*\|[ \t]*")

_HSPACE_RUN = re.compile(r" {2,}")
_LINE_EDGE_SPACES = re.compile(r" *\n *")
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}，。、；：？！）（“”]) (?=[{_CJK}，。、；：？！（）“”])")
_BLANK_LINES = re.compile(r"\n{3,}")
_NON_CONTENT = re.compile(r"[\W_]+")
_WHITESPACE = re.compile(r"\s+")


def normalise_unicode(text: str, fullwidth_to_halfwidth: bool = True) -> str:
    """NFC, full-width ASCII to half-width, no control/invisible characters, clean whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    text = text.translate(_TABLE_FULL if fullwidth_to_halfwidth else _TABLE_KEEP_WIDTH)
    if " " in text:
        text = _LINE_EDGE_SPACES.sub("\n", _HSPACE_RUN.sub(" ", text))
        text = _SPACE_BETWEEN_CJK.sub("", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def strip_html(text: str) -> str:
    """Drop HTML comments, scripts, tags (block tags become line breaks) and decode entities."""
    if "<" in text:
        text = _HTML_COMMENT.sub("", text)
        text = _HTML_SCRIPT.sub("", text)
        text = _HTML_BLOCK_TAG.sub("\n", text)
        text = _HTML_TAG.sub("", text)
    return html.unescape(text) if "&" in text else text


def strip_markdown(text: str) -> str:
    """Markdown to plain text: images dropped, links keep their text, no heading/list/emphasis marks."""
    text = _MD_IMAGE.sub("", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_RULE.sub("", text)
    text = _MD_LINE_PREFIX.sub("", text)
    text = _MD_EMPHASIS.sub("", text)
    return "\n".join(_MD_TABLE_PIPE.sub(" ", line).strip() if "|" in line else line for line in text.split("\n"))


def normalise(text: str, markdown: bool = False, strip_markup: bool = True, fullwidth_to_halfwidth: bool = True) -> str:
    """The whole per-document normalisation applied before boilerplate removal and filters."""
    if strip_markup:
        text = strip_html(text)
        if markdown:
            text = strip_markdown(text)
    return normalise_unicode(text, fullwidth_to_halfwidth)


def candidate_lines(text: str, min_chars: int) -> set[str]:
    """Distinct lines long enough to count as possible boilerplate."""
    return {line for line in text.split("\n") if len(line) >= min_chars}


def line_hashes(text: str, min_chars: int) -> list[int]:
    return [text_hash(line) for line in candidate_lines(text, min_chars)]


def remove_lines(text: str, boilerplate: np.ndarray, min_chars: int) -> tuple[str, int]:
    """Remove lines whose hash is in the sorted array ``boilerplate``; return text and lines removed."""
    if boilerplate.size == 0:
        return text, 0
    kept, removed = [], 0
    for line in text.split("\n"):
        if len(line) >= min_chars:
            h = text_hash(line)
            i = np.searchsorted(boilerplate, h)
            if i < boilerplate.size and boilerplate[i] == h:
                removed += 1
                continue
        kept.append(line)
    return (_BLANK_LINES.sub("\n\n", "\n".join(kept)).strip() if removed else text), removed


def content_share(text: str) -> float:
    """Share of letters, digits and CJK characters among the non-space characters."""
    visible = len(_WHITESPACE.sub("", text))
    return len(_NON_CONTENT.sub("", text)) / visible if visible else 0.0


def repetition(text: str, n: int = 10) -> float:
    """Share of character n-grams that repeat an earlier n-gram of the same text."""
    h = ngram_hashes(codepoints(text), n)
    return 1.0 - np.unique(h).size / h.size if h.size else 0.0


def quality_reason(text: str, min_chars: int, min_content_share: float, max_repetition: float) -> str | None:
    """Why a cleaned document fails the quality filters, or ``None`` when it passes."""
    if len(text) < min_chars:
        return "too_short"
    if content_share(text) < min_content_share:
        return "low_content"
    if repetition(text) > max_repetition:
        return "repetitive"
    return None
