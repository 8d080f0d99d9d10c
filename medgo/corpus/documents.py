"""Text of Word documents, web pages and spreadsheet exports, each through a maintained library.

``docx`` (python-docx): the body's paragraphs and tables in document order; a table row becomes
one line, its cells joined by `` | `` (a merged cell once).  Section headers and footers are not
part of the body and are not read.

``html`` (trafilatura): the main content only, with precision favoured and no fallback
extractor, so navigation, sidebars, footers, scripts and styles are dropped; a page with no main
content is a failure, not an empty document.  Tables come out as rows of cells joined by `` | ``.

``csv``/``xlsx`` (the csv module / openpyxl): one document per row, or per distinct value of the
``group_by`` columns (rows joined in file order); the text is the ``text_columns`` of the row,
each prefixed ``column：`` when there are several.  Rows are numbered as a spreadsheet shows
them: the header is row 1.  A row with the wrong number of fields is a failure of that row only.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator

CELL_SEP = " | "
_TABLE_RULE = re.compile(r"^\|?(?:\s*:?-{3,}:?\s*\|)+\s*$")


class DocumentFailure(ValueError):
    """A file (or row) that gives no document; the message is the quarantine reason."""


# --- docx -------------------------------------------------------------------------------------


def _cells(row) -> list[str]:
    out, seen = [], set()
    for cell in row.cells:
        if id(cell._tc) in seen:  # a merged cell is repeated once per grid column it spans
            continue
        seen.add(id(cell._tc))
        out.append(" ".join(p.text.strip() for p in cell.paragraphs if p.text.strip()))
    return out


def docx_text(path: str) -> str:
    """Paragraphs and table rows of a .docx body, in document order, one per line."""
    import docx
    from docx.table import Table

    try:
        document = docx.Document(path)
    except Exception as exc:  # noqa: BLE001 - a bad package raises zipfile, KeyError, lxml errors...
        raise DocumentFailure(f"not a Word document: {type(exc).__name__}: {exc}") from None
    lines = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            lines.extend(CELL_SEP.join(c for c in _cells(row) if c) for row in block.rows)
        else:
            lines.append(block.text.strip())
    return "\n".join(line for line in lines if line)


# --- html -------------------------------------------------------------------------------------


def _table_line(line: str) -> str | None:
    """trafilatura writes tables as Markdown pipes: keep the cells, drop the rule lines."""
    if _TABLE_RULE.match(line):
        return None
    if line.startswith("|") and line.rstrip().endswith("|"):
        return CELL_SEP.join(c.strip() for c in line.strip().strip("|").split("|"))
    return line


def html_text(html: str) -> str:
    """Main content of a web page; a DocumentFailure when the page has none."""
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_precision=True, fast=True)
    if not text or not text.strip():
        raise DocumentFailure("no main content found in the HTML page")
    return "\n".join(line for line in map(_table_line, text.splitlines()) if line)


# --- csv / xlsx -------------------------------------------------------------------------------


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value).strip()


def _column_indexes(header: list[str], names: list[str]) -> list[int]:
    missing = [n for n in names if n not in header]
    if missing:
        raise DocumentFailure(f"missing column(s) {missing} (the header has {header}); whole file skipped")
    return [header.index(n) for n in names]


def _row_text(cells: list[str], columns: list[int], labels: list[str] | None) -> str:
    parts = []
    for j, i in enumerate(columns):
        if cells[i]:
            parts.append(f"{labels[j]}：{cells[i]}" if labels else cells[i])
    return "\n".join(parts)


def table_documents(rows: Iterable[list], text_columns: list[str], group_by: list[str] | None, ragged_ok: bool) -> Iterator[tuple[int, str | None, str | None]]:
    """``(row, text, reason)`` for each document of a table whose first row is the header.

    ``ragged_ok`` pads short rows (spreadsheets omit trailing empty cells); otherwise a row whose
    field count differs from the header's is a failure of that row."""
    it = iter(rows)
    header = [_cell(c) for c in next(it, [])]
    text_idx = _column_indexes(header, text_columns)
    key_idx = _column_indexes(header, group_by or [])
    labels = text_columns if len(text_columns) > 1 else None
    groups: dict[tuple, list] = {}
    number = 1
    try:
        for number, raw in enumerate(it, 2):
            if not any(_cell(c) for c in raw):
                continue  # an empty line or row is no record
            if len(raw) != len(header) and not (ragged_ok and len(raw) < len(header)):
                yield number, None, f"row has {len(raw)} fields, the header has {len(header)}"
                continue
            cells = [_cell(c) for c in raw] + [""] * (len(header) - len(raw))
            text = _row_text(cells, text_idx, labels)
            if key_idx:
                groups.setdefault(tuple(cells[i] for i in key_idx), [number, []])[1].append(text)
            else:
                yield number, text, None
    except DocumentFailure as exc:  # the documents read so far are kept
        yield number + 1, None, str(exc)
    for first, texts in groups.values():
        yield first, "\n".join(t for t in texts if t), None


def csv_rows(text: str) -> Iterator[list[str]]:
    """Records of decoded CSV text (quoted fields may span lines)."""
    try:
        yield from csv.reader(io.StringIO(text, newline=""))
    except csv.Error as exc:
        raise DocumentFailure(f"malformed CSV: {exc}; the rest of the file skipped") from None


def xlsx_rows(path: str, sheet: str | None) -> Iterator[tuple]:
    """Rows of one worksheet (the first by default) as cell values."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - zipfile, KeyError, InvalidFileException...
        raise DocumentFailure(f"not an Excel workbook: {type(exc).__name__}: {exc}") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise DocumentFailure(f"no worksheet {sheet!r} (the workbook has {book.sheetnames})")
        yield from (book[sheet] if sheet else book.worksheets[0]).iter_rows(values_only=True)
    finally:
        book.close()
