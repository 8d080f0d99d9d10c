"""Reading the configured sources into one stream of documents, quarantining malformed records.

The driver only lists files and plans *read units* (a whole file, a line-aligned byte range of
a large JSONL file, or a page range of a PDF); each unit is read by a Ray task.  What the plan
needs from inside the files is found by *probe* tasks first: the newlines before each JSONL
range, the page count of each PDF, the encoding of each ``auto`` text file.  Every output row
carries the document's position ``doc = file_index << 40 | line`` (``line`` is the 1-based line
of a JSONL record, the 1-based element of a JSON array or Parquet file, the first page of a PDF
range, the spreadsheet row of a CSV/XLSX record, 1 for a whole-file format), which orders the
corpus deterministically.  A record that cannot be used keeps its row with ``text = null`` and
a ``reason`` (broken JSON, undecodable bytes, a missing text field, an encrypted or image-only
PDF, a page with no main content...); it is counted and written to ``quarantine.jsonl`` with its
file and position, never with its content.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medgo.config import ConfigError
from medgo.corpus import documents, pdf
from medgo.corpus.config import CorpusConfig, SourceConfig, display_path, expand
from medgo.corpus.encodings import AUTO, DecodeFailure, decode

LINE_BITS = 40
RAW_SCHEMA = pa.schema(
    [
        ("doc", pa.int64()),
        ("category", pa.string()),
        ("source", pa.string()),
        ("markdown", pa.bool_()),
        ("text", pa.string()),
        ("reason", pa.string()),
    ]
)


def doc_id(file_index: int, line: int) -> int:
    return (file_index << LINE_BITS) | line


def split_doc_id(doc: int) -> tuple[int, int]:
    return doc >> LINE_BITS, doc & ((1 << LINE_BITS) - 1)


@dataclass(frozen=True)
class ReadUnit:
    """One read task: a file, or the byte range ``[start, end)`` of a JSONL file."""

    path: str
    file_index: int
    format: str
    category: str
    source: str
    text_field: str
    start: int = 0
    end: int = -1
    first_line: int = 1
    encoding: str | None = None
    text_columns: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    sheet: str | None = None

    @classmethod
    def of(cls, path: Path, file_index: int, src: SourceConfig, start: int = 0, end: int = -1) -> ReadUnit:
        """A unit of ``path`` with the settings of its source."""
        tables = {"text_columns": tuple(src.text_columns or ()), "group_by": tuple(src.group_by or ()), "sheet": src.sheet}
        return cls(str(path), file_index, src.format, src.category, src.name, src.text_field, start, end, 1, src.resolved_encoding, **tables)


def list_files(cfg: CorpusConfig) -> list[tuple[Path, int]]:
    """Every input file with the index of its source; a source matching nothing is a ConfigError."""
    files, seen = [], set()
    for i, src in enumerate(cfg.sources):
        matched = expand(src.path)
        if not matched:
            raise ConfigError(f"source '{src.name}': no file matches path {src.path!r}")
        for path in matched:
            if path.resolve() in seen:
                raise ConfigError(f"source '{src.name}': file {path} is already read by an earlier source")
            seen.add(path.resolve())
            files.append((path, i))
    return files


def _ranges(path: Path, chunk_bytes: int) -> list[tuple[int, int]]:
    size = path.stat().st_size
    if size <= chunk_bytes:
        return [(0, -1)]
    return [(s, min(s + chunk_bytes, size)) for s in range(0, size, chunk_bytes)]


def plan_units(cfg: CorpusConfig, files: list[tuple[Path, int]]) -> list[ReadUnit]:
    """Read units in corpus order: whole files, and large JSONL files as byte ranges."""
    units = []
    chunk = int(cfg.read.chunk_mb * 1024 * 1024)
    for file_index, (path, s) in enumerate(files):
        src = cfg.sources[s]
        spans = _ranges(path, chunk) if src.format == "jsonl" else [(0, -1)]
        units.extend(ReadUnit.of(path, file_index, src, start, end) for start, end in spans)
    return units


def needs_probe(unit: ReadUnit) -> bool:
    """JSONL byte ranges (first line), PDF files (page count), ``auto`` text files (encoding)."""
    return unit.end >= 0 or unit.format == "pdf" or unit.encoding == AUTO


def probe(unit: dict) -> dict:
    """Ray task body: what the plan needs from inside one file (see ``needs_probe``)."""
    key = {"path": unit["path"], "start": unit["start"]}
    if unit["format"] == "pdf":
        try:
            return {**key, "pages": pdf.page_count(unit["path"])}
        except pdf.PDFFailure:
            return {**key, "pages": None}  # the read task quarantines it with the reason
    if unit["encoding"] == AUTO:
        try:
            return {**key, "encoding": decode(Path(unit["path"]).read_bytes(), AUTO)[1]}
        except DecodeFailure:
            return {**key, "encoding": None}
    return count_newlines(unit)


def count_newlines(unit: dict) -> dict:
    """Newlines in ``[0, start)`` are the sum over earlier ranges; this counts one range."""
    n = 0
    with open(unit["path"], "rb") as f:
        f.seek(unit["start"])
        left = unit["end"] - unit["start"]
        while left > 0:
            buf = f.read(min(left, 1 << 24))
            if not buf:
                break
            n += buf.count(b"\n")
            left -= len(buf)
    return {"path": unit["path"], "start": unit["start"], "newlines": n}


def resolve_first_lines(units: list[ReadUnit], counts: list[dict]) -> list[ReadUnit]:
    """Give each byte range the line number its first full line will have."""
    by_key = {(c["path"], c["start"]): c["newlines"] for c in counts if "newlines" in c}
    out, base, current = [], 0, None
    for u in units:
        if u.end == -1 or u.format == "pdf":
            out.append(u)
            continue
        if u.path != current:
            current, base = u.path, 0
        out.append(replace(u, first_line=base + 1))
        base += by_key[(u.path, u.start)]
    return out


def resolve_units(units: list[ReadUnit], probes: list[dict], pdf_pages: int) -> tuple[list[ReadUnit], dict[int, dict]]:
    """Apply the probes: first lines of byte ranges, detected encodings, PDFs cut into page ranges
    of ``pdf_pages``.  Also returns what the manifest records per file index (encoding, pages)."""
    found = {(p["path"], p["start"]): p for p in probes}
    out, info = [], {}
    for u in resolve_first_lines(units, probes):
        got = found.get((u.path, u.start), {})
        if u.format == "pdf":
            info[u.file_index] = {"pages": got.get("pages")}
            out.extend(_page_ranges(u, got.get("pages"), pdf_pages))
            continue
        if u.encoding is not None:
            encoding = got.get("encoding", u.encoding) if u.encoding == AUTO else u.encoding
            info[u.file_index] = {"encoding": encoding}
            u = replace(u, encoding=encoding or AUTO)  # undecodable: the read task names why
        out.append(u)
    return out, info


def _page_ranges(unit: ReadUnit, pages: int | None, per_unit: int) -> list[ReadUnit]:
    if not pages:  # unreadable (or no pages): one unit, which the read task quarantines
        return [unit]
    return [replace(unit, start=s, end=min(s + per_unit, pages), first_line=s + 1) for s in range(0, pages, per_unit)]


def group_units(units: list[ReadUnit], group_bytes: int) -> list[list[ReadUnit]]:
    """Consecutive read units of about ``group_bytes`` input bytes: one read task each, and one
    packing group (documents keep their corpus order across groups, so packing can read and
    order one group at a time).  A PDF page range, whose parsing costs far more than its bytes
    suggest, is a group of its own."""
    groups: list[list[ReadUnit]] = []
    size = group_bytes
    for u in units:
        if size >= group_bytes or u.format == "pdf":
            groups.append([])
            size = 0
        groups[-1].append(u)
        size += group_bytes if u.format == "pdf" else (u.end - u.start) if u.end >= 0 else os.path.getsize(u.path)
    return groups


def group_starts(groups: list[list[ReadUnit]]) -> np.ndarray:
    """Position of the first document of each group (sorted)."""
    return np.array([doc_id(g[0].file_index, g[0].first_line) for g in groups], dtype=np.int64)


class _Rows:
    """Accumulates output rows of one read unit and yields them as Arrow tables."""

    def __init__(self, unit: ReadUnit, batch_rows: int):
        self.unit, self.batch_rows = unit, batch_rows
        self.cols: dict[str, list] = {f.name: [] for f in RAW_SCHEMA}
        self.markdown = unit.format == "markdown"

    def add(self, line: int, text: str | None, reason: str | None = None) -> pa.Table | None:
        c = self.cols
        c["doc"].append(doc_id(self.unit.file_index, line))
        c["category"].append(self.unit.category)
        c["source"].append(self.unit.source)
        c["markdown"].append(self.markdown)
        c["text"].append(text)
        c["reason"].append(reason)
        return self.flush() if len(c["doc"]) >= self.batch_rows else None

    def flush(self) -> pa.Table | None:
        if not self.cols["doc"]:
            return None
        table = pa.Table.from_pydict(self.cols, schema=RAW_SCHEMA)
        self.cols = {f.name: [] for f in RAW_SCHEMA}
        return table


def _record_text(obj, field: str) -> tuple[str | None, str | None]:
    if not isinstance(obj, dict):
        return None, f"record is a JSON {type(obj).__name__}, not an object"
    if field not in obj:
        return None, f"missing text field '{field}'"
    value = obj[field]
    if not isinstance(value, str):
        return None, f"text field '{field}' is {type(value).__name__}, not a string"
    return value, None


def _jsonl_lines(unit: ReadUnit) -> Iterator[tuple[int, bytes]]:
    with open(unit.path, "rb") as f:
        line_no = unit.first_line
        if unit.start > 0:
            f.seek(unit.start - 1)
            line_no += f.readline()[1:].count(b"\n")  # finish the line the previous range owns
        end = unit.end if unit.end >= 0 else float("inf")
        while f.tell() < end:
            raw = f.readline()
            if not raw:
                break
            yield line_no, raw
            line_no += 1


def _read_jsonl(unit: ReadUnit, rows: _Rows) -> Iterator[pa.Table | None]:
    for line_no, raw in _jsonl_lines(unit):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield rows.add(line_no, None, f"invalid UTF-8 at byte {exc.start}")
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield rows.add(line_no, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        text, reason = _record_text(obj, unit.text_field)
        yield rows.add(line_no, text, reason)


def _read_json(unit: ReadUnit, rows: _Rows) -> Iterator[pa.Table | None]:
    try:
        records = json.loads(Path(unit.path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        yield rows.add(1, None, f"invalid UTF-8 at byte {exc.start}")
        return
    except json.JSONDecodeError as exc:
        yield rows.add(exc.lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno}); whole file skipped")
        return
    if not isinstance(records, list):
        yield rows.add(1, None, "a json source must hold an array of objects")
        return
    for i, obj in enumerate(records, 1):
        yield rows.add(i, *_record_text(obj, unit.text_field))


def _read_parquet(unit: ReadUnit, rows: _Rows) -> Iterator[pa.Table | None]:
    pf = pq.ParquetFile(unit.path)
    if unit.text_field not in pf.schema_arrow.names:
        yield rows.add(1, None, f"missing text column '{unit.text_field}'; whole file skipped")
        return
    i = 0
    for batch in pf.iter_batches(columns=[unit.text_field], batch_size=rows.batch_rows):
        for value in batch.column(0).to_pylist():
            i += 1
            if isinstance(value, str):
                yield rows.add(i, value)
            else:
                yield rows.add(i, None, f"text column '{unit.text_field}' is {'null' if value is None else type(value).__name__}")


def _decoded(unit: ReadUnit) -> str:
    return decode(Path(unit.path).read_bytes(), unit.encoding or AUTO)[0]


def _read_whole(unit: ReadUnit, rows: _Rows) -> Iterator[pa.Table | None]:
    """txt, markdown, html, docx: one document per file."""
    try:
        yield rows.add(1, WHOLE_FILE[unit.format](unit))
    except (DecodeFailure, documents.DocumentFailure) as exc:
        yield rows.add(1, None, str(exc))


def _read_pdf(unit: ReadUnit, rows: _Rows) -> Iterator[pa.Table | None]:
    """One document per page range; a file whose page count failed is read (and fails) whole."""
    try:
        end = unit.end if unit.end >= 0 else pdf.page_count(unit.path)
        yield rows.add(unit.first_line, pdf.pdf_text(unit.path, unit.start, end))
    except pdf.PDFFailure as exc:
        yield rows.add(unit.first_line, None, str(exc))


def _table_rows(unit: ReadUnit):
    if unit.format == "xlsx":
        return documents.xlsx_rows(unit.path, unit.sheet)
    return documents.csv_rows(_decoded(unit))


def _read_table(unit: ReadUnit, rows: _Rows) -> Iterator[pa.Table | None]:
    """csv, xlsx: one document per row or per ``group_by`` value; a bad row fails alone."""
    try:
        for row, text, reason in documents.table_documents(_table_rows(unit), list(unit.text_columns), list(unit.group_by), unit.format == "xlsx"):
            yield rows.add(row, text, reason)
    except (DecodeFailure, documents.DocumentFailure) as exc:
        yield rows.add(1, None, str(exc))


WHOLE_FILE = {
    "txt": _decoded,
    "markdown": _decoded,
    "html": lambda unit: documents.html_text(_decoded(unit)),
    "docx": lambda unit: documents.docx_text(unit.path),
}
READERS = {
    "jsonl": _read_jsonl,
    "json": _read_json,
    "parquet": _read_parquet,
    **dict.fromkeys(WHOLE_FILE, _read_whole),
    "pdf": _read_pdf,
    "csv": _read_table,
    "xlsx": _read_table,
}


def read_unit(unit: ReadUnit, batch_rows: int) -> Iterator[pa.Table]:
    """All rows of one read unit, in order, as Arrow tables of at most ``batch_rows`` rows."""
    rows = _Rows(unit, batch_rows)
    for table in READERS[unit.format](unit, rows):
        if table is not None:
            yield table
    tail = rows.flush()
    if tail is not None:
        yield tail


def read_group_batch(batch: dict, batch_rows: int, transform=None, **kwargs) -> Iterator[pa.Table]:
    """Ray Data ``map_batches`` body: ``batch["units"]`` holds groups of read units as JSON;
    every table read is passed through ``transform(table, **kwargs)`` in the same task."""
    for group in batch["units"]:
        for unit in json.loads(str(group)):
            for table in read_unit(ReadUnit(**unit), batch_rows):
                yield transform(table, **kwargs) if transform else table


def file_table(files: list[tuple[Path, int]], cfg: CorpusConfig, info: dict[int, dict] | None = None) -> list[dict]:
    """The manifest's list of input files (index order), shown relative to the package or cwd,
    with their format and what the probes found (encoding of text files, pages of PDFs)."""
    info = info or {}
    return [
        {"file": display_path(p), "source": cfg.sources[s].name, "format": cfg.sources[s].format, "bytes": os.path.getsize(p), **info.get(i, {})}
        for i, (p, s) in enumerate(files)
    ]


def doc_ref(files: list[dict], doc: int, pdf_pages: int) -> dict:
    """Where a document comes from: its file, and its line, row or page range (PDF)."""
    file_index, line = split_doc_id(doc)
    entry = files[file_index]
    ref = {"file": entry["file"]}
    fmt = entry.get("format")
    if fmt == "pdf":
        pages = entry.get("pages")
        ref["pages"] = [line, min(line + pdf_pages - 1, pages)] if pages else None
    elif fmt in ("csv", "xlsx"):
        ref["row"] = line
    elif fmt not in ("docx", "html"):
        ref["line"] = line
    return ref
