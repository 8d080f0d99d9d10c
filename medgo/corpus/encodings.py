"""Decoding input bytes: a configured codec, or ``auto`` over a stated list of candidates.

``auto`` looks at a byte-order mark first (UTF-8 with BOM; UTF-16 only when its BOM says so),
then tries strict UTF-8, then strict GB18030 (a superset of GBK and GB2312).  A candidate that
decodes is still refused when the text holds control, private-use or unassigned characters
(more than ``MAX_JUNK_SHARE`` of it): that is binary data, not text in some exotic encoding.
A file no candidate decodes raises ``DecodeFailure`` with every candidate's reason.
"""

from __future__ import annotations

import codecs
import unicodedata

AUTO = "auto"
AUTO_CANDIDATES = ("utf-8", "gb18030")
BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
MAX_JUNK_SHARE = 0.01
JUNK_CATEGORIES = {"Cc", "Co", "Cn", "Cs"}
WHITESPACE_CONTROLS = set("\t\n\r\f\v")


class DecodeFailure(ValueError):
    """No candidate encoding gives text; the message names each candidate's reason."""


def junk_share(text: str) -> float:
    """Share of control (other than whitespace), private-use, unassigned and surrogate characters."""
    if not text:
        return 0.0
    junk = sum(1 for ch in text if ch not in WHITESPACE_CONTROLS and unicodedata.category(ch) in JUNK_CATEGORIES)
    return junk / len(text)


def _strict(raw: bytes, encoding: str) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DecodeFailure(f"invalid {codecs.lookup(encoding).name.upper().replace('UTF-8-SIG', 'UTF-8')} at byte {exc.start}") from None
    share = junk_share(text)
    if share > MAX_JUNK_SHARE:
        raise DecodeFailure(f"binary data under {encoding}: {share:.1%} control or unassigned characters")
    return text


def bom_encoding(raw: bytes) -> str | None:
    """The encoding a byte-order mark announces, or None."""
    for bom, name in BOMS:
        if raw.startswith(bom):
            return name
    return None


def decode(raw: bytes, encoding: str = AUTO) -> tuple[str, str]:
    """``(text, encoding used)``; ``auto`` tries the BOM, then each of ``AUTO_CANDIDATES``."""
    if encoding != AUTO:
        return _strict(raw, encoding), encoding
    announced = bom_encoding(raw)
    if announced:
        return _strict(raw, announced), announced
    reasons = []
    for candidate in AUTO_CANDIDATES:
        try:
            return _strict(raw, candidate), candidate
        except DecodeFailure as exc:
            reasons.append(str(exc))
    raise DecodeFailure("; ".join(reasons) + " (encoding auto)")
