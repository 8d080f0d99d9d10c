"""PDF, Word, HTML, CSV/XLSX and encodings: each format reads back its known text, minus the
headers, footers and boilerplate planted around it; bad files are quarantined with their reason."""

from __future__ import annotations

import codecs
import random
import zipfile
from dataclasses import asdict

import pytest

from medgo.config import ConfigError, load_config
from medgo.corpus.config import CorpusConfig, SourceConfig
from medgo.corpus.encodings import DecodeFailure, decode
from medgo.corpus.samples import csv_bytes, html_page, write_docx, write_image_pdf, write_pdf, write_xlsx
from medgo.corpus.sources import ReadUnit, probe, read_unit, resolve_units, split_doc_id

PARAS = [
    "慢性阻塞性肺疾病是一种以持续气流受限为特征的可以预防和治疗的疾病，气流受限多呈进行性发展。",
    "吸烟是最重要的环境发病因素，戒烟是所有患者都应采取的干预措施，也是唯一能延缓肺功能下降的措施。",
    "稳定期治疗以长效支气管扩张剂为主，频繁急性加重且血嗜酸粒细胞升高者可联合吸入糖皮质激素。",
    "急性加重期应评估严重程度，给予短效支气管扩张剂、全身糖皮质激素，有细菌感染证据时使用抗菌药物。",
]
HEADER = "江东省人民医院呼吸与危重症医学科诊疗常规"


def unit(path, fmt, **kw) -> ReadUnit:
    return ReadUnit(str(path), 0, fmt, "cat", "src", "text", **kw)


def rows(u: ReadUnit) -> list[tuple[int, str | None, str | None]]:
    return [(split_doc_id(r["doc"])[1], r["text"], r["reason"]) for t in read_unit(u, 4) for r in t.to_pylist()]


def pdf_rows(path, pages_per_unit: int = 16) -> list[tuple[int, str | None, str | None]]:
    """Probe, cut into page ranges and read, as the build does."""
    units, info = resolve_units([unit(path, "pdf")], [probe(asdict(unit(path, "pdf")))], pages_per_unit)
    return [r for u in units for r in rows(u)]


# --- PDF ----------------------------------------------------------------------------------------


def test_pdf_round_trip_drops_running_header_and_page_numbers(tmp_path):
    pages = [PARAS[:2], PARAS[2:], [PARAS[0][:20] + "。"]]
    path = write_pdf(tmp_path / "g.pdf", pages, header=HEADER)
    assert pdf_rows(path) == [(1, "\n".join(p for page in pages for p in page), None)]
    # in ranges of two pages: two documents, the single-page range keeps no page number
    assert pdf_rows(path, 2) == [(1, "\n".join(PARAS), None), (3, PARAS[0][:20] + "。", None)]


def test_pdf_keeps_reading_order_of_two_columns(tmp_path):
    path = write_pdf(tmp_path / "cols.pdf", [PARAS, PARAS[::-1]], header=HEADER, two_columns=True)
    (_, text, reason), *_ = pdf_rows(path)
    assert reason is None and text == "\n".join(PARAS + PARAS[::-1])  # left column first, then right


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8), "corrupt PDF: PDFSyntaxError"),
        (lambda p: write_pdf(p, [PARAS], encrypt="secret"), "encrypted PDF: a password is needed"),
        (lambda p: write_image_pdf(p, 2), "image-only PDF: no text layer on pages 1-2; needs OCR"),
    ],
)
def test_unreadable_pdfs_are_named(tmp_path, make, reason):
    path = tmp_path / "bad.pdf"
    make(path)
    [(line, text, why)] = pdf_rows(path)
    assert line == 1 and text is None and why.startswith(reason)


def test_truncated_pdf_is_corrupt(tmp_path):
    good = write_pdf(tmp_path / "g.pdf", [PARAS, PARAS])
    (tmp_path / "cut.pdf").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    [(_, text, why)] = pdf_rows(tmp_path / "cut.pdf")
    assert text is None and why.startswith("corrupt PDF")


# --- Word, HTML ---------------------------------------------------------------------------------


def test_docx_paragraphs_and_tables_in_order_without_section_header(tmp_path):
    table = [["药物", "剂量"], ["沙美特罗", "50微克 每日两次"]]
    path = write_docx(tmp_path / "p.docx", ["# 慢阻肺稳定期用药", PARAS[0], table, PARAS[1]], header=HEADER)
    assert rows(unit(path, "docx")) == [(1, "\n".join(["慢阻肺稳定期用药", PARAS[0], "药物 | 剂量", "沙美特罗 | 50微克 每日两次", PARAS[1]]), None)]


def test_docx_that_is_a_zip_of_junk_is_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "junk.docx", "w") as z:
        z.writestr("payload.bin", bytes(range(256)))
    [(_, text, why)] = rows(unit(tmp_path / "junk.docx", "docx"))
    assert text is None and why.startswith("not a Word document")


def test_html_main_content_only(tmp_path):
    path = tmp_path / "copd.html"
    path.write_text(html_page("慢性阻塞性肺疾病", PARAS), encoding="utf-8")
    [(_, text, why)] = rows(unit(path, "html", encoding="auto"))
    assert why is None and text == "\n".join(["慢性阻塞性肺疾病", *PARAS])
    for planted in ("首页", "热门推荐", "版权所有", "统计脚本", "color"):
        assert planted not in text


def test_html_page_without_main_content_is_named(tmp_path):
    path = tmp_path / "nav.html"
    path.write_text('<html><body><nav><a href="/">首页</a><a href="/d">疾病百科</a></nav><footer>版权所有 © 2024</footer></body></html>', encoding="utf-8")
    assert rows(unit(path, "html", encoding="auto")) == [(1, None, "no main content found in the HTML page")]


# --- CSV / XLSX ---------------------------------------------------------------------------------

EMR_HEADER = ["就诊号", "姓名", "主诉", "现病史"]
EMR_ROWS = [
    ["V1", "赵建国", "咳嗽3天", "患者赵建国，男，58岁，受凉后咳嗽。"],
    ["V2", "钱秀英", "口干两月", "多饮多尿，体重下降。"],
    ["V1", "赵建国", "复诊", "咳嗽好转。"],
]


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_csv_one_document_per_row_in_any_encoding(tmp_path, encoding):
    path = tmp_path / "emr.csv"
    path.write_bytes(csv_bytes(EMR_HEADER, EMR_ROWS, encoding) + "V3,孙立新,头晕\r\n".encode(encoding))
    got = rows(unit(path, "csv", encoding="auto", text_columns=("主诉", "现病史")))
    assert got == [
        (2, "主诉：咳嗽3天\n现病史：患者赵建国，男，58岁，受凉后咳嗽。", None),
        (3, "主诉：口干两月\n现病史：多饮多尿，体重下降。", None),
        (4, "主诉：复诊\n现病史：咳嗽好转。", None),
        (5, None, "row has 3 fields, the header has 4"),
    ]


def test_csv_and_xlsx_group_rows_by_key(tmp_path):
    (tmp_path / "emr.csv").write_bytes(csv_bytes(EMR_HEADER, EMR_ROWS))
    write_xlsx(tmp_path / "emr.xlsx", EMR_HEADER, EMR_ROWS, sheet="门诊")
    want = [(2, "患者赵建国，男，58岁，受凉后咳嗽。\n咳嗽好转。", None), (3, "多饮多尿，体重下降。", None)]
    assert rows(unit(tmp_path / "emr.csv", "csv", encoding="auto", text_columns=("现病史",), group_by=("就诊号",))) == want
    assert rows(unit(tmp_path / "emr.xlsx", "xlsx", text_columns=("现病史",), group_by=("就诊号",), sheet="门诊")) == want
    assert rows(unit(tmp_path / "emr.xlsx", "xlsx", text_columns=("病程",)))[0][2].startswith("missing column(s) ['病程']")
    assert rows(unit(tmp_path / "emr.xlsx", "xlsx", text_columns=("现病史",), sheet="住院"))[0][2].startswith("no worksheet '住院'")


# --- encodings ----------------------------------------------------------------------------------

GUIDE = "高血压患者应低盐饮食，规律服用降压药物，定期监测血压。"


def test_gb18030_text_decodes_under_auto_and_explicit(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes(GUIDE.encode("gb18030"))
    assert probe(asdict(unit(path, "txt", encoding="auto")))["encoding"] == "gb18030"
    assert rows(unit(path, "txt", encoding="auto")) == rows(unit(path, "txt", encoding="gb18030")) == [(1, GUIDE, None)]
    assert rows(unit(path, "txt", encoding="utf-8"))[0][2].startswith("invalid UTF-8 at byte 0")


def test_auto_candidates_and_byte_order_marks():
    assert decode(GUIDE.encode("utf-8")) == (GUIDE, "utf-8")
    assert decode(codecs.BOM_UTF8 + GUIDE.encode("utf-8")) == (GUIDE, "utf-8-sig")
    assert decode(GUIDE.encode("utf-16")) == (GUIDE, "utf-16")  # Python writes the BOM
    with pytest.raises(DecodeFailure):
        decode(GUIDE.encode("utf-16-le"))  # UTF-16 without a BOM is not guessed


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_never_become_text(seed):
    junk = random.Random(seed).randbytes(2048)
    with pytest.raises(DecodeFailure, match=r"\(encoding auto\)$"):
        decode(junk)


def test_undecodable_text_file_is_quarantined_with_every_reason(tmp_path):
    (tmp_path / "junk.txt").write_bytes(random.Random(1).randbytes(512))
    [(_, text, why)] = rows(unit(tmp_path / "junk.txt", "txt", encoding="auto"))
    assert text is None and "UTF-8" in why and "GB18030" in why


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"format": "csv"}, "needs text_columns"),
        ({"format": "pdf", "encoding": "gb18030"}, "encoding applies to txt, markdown, csv, html"),
        ({"format": "txt", "encoding": "klingon"}, "unknown encoding 'klingon'"),
        ({"format": "docx", "text_columns": ["a"]}, "text_columns does not apply to a docx source"),
        ({"format": "csv", "text_columns": ["a"], "sheet": "x"}, "sheet does not apply to a csv source"),
    ],
)
def test_bad_source_settings_are_named(source, message):
    with pytest.raises(ConfigError, match=f"sources.0.*{message}"):
        load_config(CorpusConfig, None, [f"sources=[{ {'name': 'a', 'path': 'x', 'category': 'c', **source} }]".replace("'", "")])


def test_text_formats_default_to_auto():
    assert SourceConfig(name="a", path="x", format="txt", category="c").resolved_encoding == "auto"
    assert SourceConfig(name="a", path="x", format="docx", category="c").resolved_encoding is None
