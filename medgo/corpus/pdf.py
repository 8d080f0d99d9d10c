"""PDF text with pdfminer.six: reading order from its layout analysis, running headers, footers
and page numbers removed, and every failure named.

pdfminer groups characters into lines and text boxes and orders the boxes by position (so the
left column of a two-column page comes before the right one, whatever order the content stream
draws them in).  Within a page range, a line in the top or bottom ``MARGIN`` of the page is a
running header or footer when it is a page number (``12``, ``- 12 -``, ``第12页``, ``12/30``,
``Page 12 of 30``) or when the same line, digits aside, sits in the margins of at least half of
the range's pages (two at least; a range of fewer than ``MIN_PAGES`` pages is judged together
with its neighbours).  Lines of one text box are joined without a break (a wrapped
paragraph), boxes by a newline.

Failures raise ``PDFFailure`` with a reason: ``encrypted PDF``, ``corrupt PDF``, ``image-only
PDF`` (pages with images and no text layer: they need OCR) and ``no text`` (blank pages).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass

MARGIN = 0.1
MIN_PAGES, CONTEXT_PAGES = 4, 2
PAGE_NUMBER = re.compile(
    r"^(?:第?\d{1,4}页?(?:[/,，]?共\d{1,4}页)?|[-–—]?\d{1,4}[-–—]?|\d{1,4}/\d{1,4}|(?:page|p\.)\d{1,4}(?:(?:of|/)\d{1,4})?|[ivxlcdm]{1,6})$",
    re.I,
)
_CJK_EDGE = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")

logging.getLogger("pdfminer").setLevel(logging.ERROR)


class PDFFailure(ValueError):
    """A PDF (or page range) that gives no text; the message is the quarantine reason."""


@dataclass
class Line:
    text: str
    box: int
    margin: bool


@dataclass
class Page:
    number: int
    lines: list[Line]
    images: int


def _reason(exc: Exception) -> str:
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect

    if isinstance(exc, (PDFPasswordIncorrect, PDFEncryptionError)):
        return "encrypted PDF: a password is needed to open it"
    return f"corrupt PDF: {type(exc).__name__}: {exc}".rstrip(": ")


def page_count(path: str) -> int:
    """Number of pages (reads the page tree, not the content); a PDFFailure when it cannot open."""
    from pdfminer.pdfdocument import PDFDocument
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser

    try:
        with open(path, "rb") as f:
            return sum(1 for _ in PDFPage.create_pages(PDFDocument(PDFParser(f))))
    except Exception as exc:  # noqa: BLE001 - pdfminer raises many types on broken files
        raise PDFFailure(_reason(exc)) from None


def _walk(item):
    yield item
    if hasattr(item, "__iter__"):
        for child in item:
            yield from _walk(child)


def _page(layout, number: int) -> Page:
    from pdfminer.layout import LTImage, LTTextBox, LTTextLine

    _, y0, _, y1 = layout.bbox
    low, high = y0 + MARGIN * (y1 - y0), y1 - MARGIN * (y1 - y0)
    lines = []
    boxes = [b for b in layout if isinstance(b, LTTextBox)]
    for i, box in enumerate(boxes):
        for line in box:
            text = line.get_text().strip() if isinstance(line, LTTextLine) else ""
            if text:
                centre = (line.y0 + line.y1) / 2
                lines.append(Line(text, i, not low <= centre <= high))
    images = sum(1 for item in _walk(layout) if isinstance(item, LTImage))
    return Page(number, lines, images)


def read_pages(path: str, start: int, end: int) -> list[Page]:
    """Pages ``[start, end)`` (0-based) laid out by pdfminer; a PDFFailure if the file cannot be read."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams

    try:
        return [_page(layout, start + i + 1) for i, layout in enumerate(extract_pages(path, page_numbers=range(start, end), laparams=LAParams()))]
    except Exception as exc:  # noqa: BLE001
        raise PDFFailure(_reason(exc)) from None


def _key(text: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", "", text))


def running_keys(pages: list[Page]) -> set[str]:
    """Margin lines (digits aside) found on at least half of the pages, two at least."""
    if len(pages) < 2:
        return set()
    seen = Counter(k for p in pages for k in {_key(l.text) for l in p.lines if l.margin})
    need = max(2, math.ceil(len(pages) / 2))
    return {k for k, n in seen.items() if n >= need}


def _join(lines: list[str]) -> str:
    """Lines of one text box: no break between CJK lines, a space between others."""
    out = lines[0]
    for line in lines[1:]:
        glue = "" if _CJK_EDGE.match(out[-1]) or _CJK_EDGE.match(line[0]) else " "
        out += glue + line
    return out


def page_text(page: Page, running: set[str]) -> str:
    """The page's boxes in reading order, without running headers, footers and page numbers."""
    boxes: dict[int, list[str]] = {}
    for line in page.lines:
        if line.margin and (_key(line.text) in running or PAGE_NUMBER.match(re.sub(r"\s+", "", line.text))):
            continue
        boxes.setdefault(line.box, []).append(line.text)
    return "\n".join(_join(b) for b in boxes.values())


def pdf_text(path: str, start: int, end: int) -> str:
    """Text of pages ``[start, end)``; PDFFailure when there is none (image-only or blank).

    A range shorter than ``MIN_PAGES`` is read with up to ``CONTEXT_PAGES`` neighbours on each
    side, which count towards finding running headers and footers but give no text."""
    short = end - start < MIN_PAGES
    seen = read_pages(path, max(0, start - CONTEXT_PAGES) if short else start, end + CONTEXT_PAGES if short else end)
    pages = [p for p in seen if start < p.number <= end]
    span = f"{start + 1}-{start + len(pages)}" if pages else f"{start + 1}-{end}"
    if not any(p.lines for p in pages):
        if any(p.images for p in pages):
            raise PDFFailure(f"image-only PDF: no text layer on pages {span}; needs OCR")
        raise PDFFailure(f"no text on pages {span} (blank pages)")
    running = running_keys(seen)
    return "\n".join(t for t in (page_text(p, running) for p in pages) if t)
