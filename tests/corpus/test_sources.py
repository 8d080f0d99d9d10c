"""Reading: every format, malformed records quarantined with file, line and reason; byte ranges."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medgo.config import ConfigError
from medgo.corpus.config import CorpusConfig, display_path, expand, resolve_path
from medgo.corpus.sources import ReadUnit, count_newlines, list_files, read_unit, resolve_first_lines, split_doc_id

GOOD = "高血压患者应规律服药并监测血压变化情况。"
MALFORMED_LINES = [
    json.dumps({"id": 1, "text": GOOD}, ensure_ascii=False).encode(),
    b'{"id": 2, "text": broken',
    b'{"id": 3}',
    b'{"id": 4, "text": 5}',
    b'\xff\xfe{"text": "not utf-8"}',
    b"[1, 2]",
    b"",
    json.dumps({"id": 7, "text": GOOD + "二"}, ensure_ascii=False).encode(),
]
EXPECTED = [
    (1, None),
    (2, "invalid JSON"),
    (3, "missing text field 'text'"),
    (4, "text field 'text' is int, not a string"),
    (5, "invalid UTF-8 at byte 0"),
    (6, "record is a JSON list, not an object"),
    (8, None),
]


def rows(unit: ReadUnit) -> list[tuple[int, str | None, str | None]]:
    return [(split_doc_id(r["doc"])[1], r["reason"], r["text"]) for t in read_unit(unit, 3) for r in t.to_pylist()]


@pytest.fixture
def malformed(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(MALFORMED_LINES))
    return path


def check(got):
    assert [(line, (reason or "")[: len(want or "")] or None) for (line, reason, _), (_, want) in zip(got, EXPECTED)] == EXPECTED
    assert [text for _, reason, text in got if reason is None] == [GOOD, GOOD + "二"]


def test_jsonl_quarantines_and_keeps_good_records(malformed):
    got = rows(ReadUnit(str(malformed), 3, "jsonl", "cat", "src", "text"))
    check(got)
    assert all(split_doc_id(doc)[0] == 3 for doc in [r["doc"] for t in read_unit(ReadUnit(str(malformed), 3, "jsonl", "c", "s", "text"), 3) for r in t.to_pylist()])


@pytest.mark.parametrize("chunk", [1, 5, 17, 40, 10_000])
def test_byte_ranges_give_the_same_rows_and_lines(malformed, chunk):
    size = os.path.getsize(malformed)
    units = [ReadUnit(str(malformed), 0, "jsonl", "c", "s", "text", s, min(s + chunk, size)) for s in range(0, size, chunk)]
    units = resolve_first_lines(units, [count_newlines({"path": u.path, "start": u.start, "end": u.end}) for u in units])
    check([r for u in units for r in rows(u)])


def test_json_array_parquet_txt_markdown(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"body": GOOD}, {"body": None}, "x"], ensure_ascii=False), encoding="utf-8")
    got = rows(ReadUnit(str(tmp_path / "a.json"), 0, "json", "c", "s", "body"))
    assert got == [(1, None, GOOD), (2, "text field 'body' is NoneType, not a string", None), (3, "record is a JSON str, not an object", None)]
    (tmp_path / "broken.json").write_text('[{"body": "x"},\n{"body": ', encoding="utf-8")
    assert rows(ReadUnit(str(tmp_path / "broken.json"), 0, "json", "c", "s", "body"))[0][:2] == (2, "invalid JSON: Expecting value (column 10); whole file skipped")
    pq.write_table(pa.table({"content": [GOOD, None]}), tmp_path / "a.parquet")
    assert rows(ReadUnit(str(tmp_path / "a.parquet"), 0, "parquet", "c", "s", "content")) == [(1, None, GOOD), (2, "text column 'content' is null", None)]
    (tmp_path / "a.md").write_text("# 标题\n" + GOOD, encoding="utf-8")
    assert rows(ReadUnit(str(tmp_path / "a.md"), 0, "markdown", "c", "s", "text")) == [(1, None, "# 标题\n" + GOOD)]
    (tmp_path / "b.txt").write_bytes(b"\xc3\x28")
    assert rows(ReadUnit(str(tmp_path / "b.txt"), 0, "txt", "c", "s", "text")) == [(1, "invalid UTF-8 at byte 0; invalid GB18030 at byte 0 (encoding auto)", None)]


def test_package_paths_resolve_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = expand("medgo://assets/corpus/*.jsonl")
    assert files and all(f.is_file() for f in files)
    assert display_path(files[0]).startswith("medgo://assets/corpus/")
    assert resolve_path("relative/x.jsonl") == resolve_path("relative/x.jsonl")  # cwd-relative, unchanged


def test_missing_source_is_named_before_any_work(tmp_path):
    cfg = CorpusConfig(sources=[{"name": "notes", "path": str(tmp_path / "nope*.jsonl"), "format": "jsonl", "category": "c"}])
    with pytest.raises(ConfigError, match="source 'notes': no file matches"):
        list_files(cfg)
    (tmp_path / "a.jsonl").write_text("{}\n")
    dup = [{"name": n, "path": str(tmp_path / "a.jsonl"), "format": "jsonl", "category": "c"} for n in ("x", "y")]
    with pytest.raises(ConfigError, match="already read by an earlier source"):
        list_files(CorpusConfig(sources=dup))
