"""A build over files a hospital holds: bad PDFs, Word files and web pages are quarantined with
distinct reasons beside the good files of the same source, and an EMR export is de-identified."""

from __future__ import annotations

import json
import zipfile

import pytest

from medgo.corpus.build import run
from medgo.corpus.config import CorpusConfig
from medgo.corpus.dataset import read_manifest
from medgo.corpus.samples import csv_bytes, html_page, write_docx, write_image_pdf, write_pdf

PARAS = [
    "支气管哮喘是由多种细胞和细胞组分参与的气道慢性炎症性疾病，表现为反复发作的喘息、气急、胸闷或咳嗽。",
    "规律使用吸入性糖皮质激素是控制哮喘气道炎症的基础，症状控制不佳时联合长效β2受体激动剂。",
    "患者应学会正确使用吸入装置，识别急性发作的先兆，并随身携带缓解药物，定期到门诊复查肺功能。",
    "急性发作时首选吸入短效β2受体激动剂，中重度发作应尽早使用全身糖皮质激素并评估是否需要住院。",
    "运动性哮喘患者在运动前可预防性吸入支气管扩张剂，并通过充分热身减少运动诱发的支气管收缩。",
    "妊娠期哮喘控制不佳对母婴的危害大于药物本身的风险，孕妇不应自行停用吸入性糖皮质激素。",
]
HEADER = "江东省人民医院呼吸科诊疗常规"
IDENTIFIERS = {"name": "刘振华", "phone": "13955556666", "record": "ZY20240517"}
EMR_ROWS = [
    ["V1", IDENTIFIERS["name"], f"患者{IDENTIFIERS['name']}，男，61岁，反复喘息二十年，近三天加重，夜间不能平卧，联系电话{IDENTIFIERS['phone']}，住院号{IDENTIFIERS['record']}。"],
    ["V2", "陈美玲", "患者陈美玲，女，35岁，咳嗽两周，夜间明显，接触冷空气后加重，无发热，既往过敏性鼻炎病史。"],
]


def corpus_files(root):
    (root / "pdf").mkdir()
    write_pdf(root / "pdf" / "a_good.pdf", [PARAS[:1], PARAS[1:2]], header=HEADER)  # distinct texts: none is boilerplate
    (root / "pdf" / "b_corrupt.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    write_pdf(root / "pdf" / "c_encrypted.pdf", [PARAS], encrypt="secret")
    write_image_pdf(root / "pdf" / "d_scanned.pdf", 2)
    (root / "docx").mkdir()
    write_docx(root / "docx" / "a_good.docx", ["# 哮喘患者教育", *PARAS[2:4]], header=HEADER)
    with zipfile.ZipFile(root / "docx" / "b_junk.docx", "w") as z:
        z.writestr("junk.bin", bytes(range(256)))
    (root / "html").mkdir()
    (root / "html" / "a_good.html").write_text(html_page("支气管哮喘", PARAS[4:]), encoding="utf-8")
    (root / "html" / "b_nav.html").write_text("<html><body><nav><a href='/'>首页</a><a href='/x'>疾病百科</a></nav></body></html>", encoding="utf-8")
    (root / "emr.csv").write_bytes(csv_bytes(["就诊号", "姓名", "现病史"], EMR_ROWS, "gb18030"))


@pytest.fixture(scope="module")
def built(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest")
    corpus_files(root)
    sources = [
        {"name": "pdfs", "path": str(root / "pdf" / "*.pdf"), "format": "pdf", "category": "guideline"},
        {"name": "docs", "path": str(root / "docx" / "*.docx"), "format": "docx", "category": "protocol"},
        {"name": "pages", "path": str(root / "html" / "*.html"), "format": "html", "category": "encyclopedia"},
        {"name": "emr", "path": str(root / "emr.csv"), "format": "csv", "category": "emr", "text_columns": ["现病史"]},
    ]
    cfg = CorpusConfig(output_dir=str(root / "out"), sources=sources, decontam={"enabled": False}, read={"pdf_pages": 1})
    run(cfg)
    return cfg.run_dir()


def test_bad_files_are_quarantined_with_distinct_reasons(built):
    rows = [json.loads(line) for line in (built / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]
    reasons = {r["file"].rsplit("/", 1)[1]: r["reason"] for r in rows}
    assert sorted(reasons) == ["b_corrupt.pdf", "b_junk.docx", "b_nav.html", "c_encrypted.pdf", "d_scanned.pdf"]
    assert reasons["b_corrupt.pdf"].startswith("corrupt PDF")
    assert reasons["c_encrypted.pdf"].startswith("encrypted PDF")
    assert reasons["b_junk.docx"].startswith("not a Word document")
    assert reasons["b_nav.html"] == "no main content found in the HTML page"
    scanned = [r for r in rows if r["file"].endswith("d_scanned.pdf")]
    assert [r["pages"] for r in scanned] == [[1, 1], [2, 2]]  # one read task per page here
    assert all(r["reason"] == f"image-only PDF: no text layer on pages {p}-{p}; needs OCR" for r, p in zip(scanned, (1, 2)))


def test_good_files_beside_them_are_kept_and_counted_per_format(built):
    m = read_manifest(built)
    assert m["sources"]["pdfs"]["documents_out"] == 2 and m["sources"]["pdfs"]["dropped"] == {"malformed": 4}
    assert m["sources"]["docs"]["documents_out"] == 1 and m["sources"]["docs"]["dropped"] == {"malformed": 1}
    assert m["sources"]["pages"]["documents_out"] == 1 and m["sources"]["pages"]["dropped"] == {"malformed": 1}
    assert set(m["formats"]) == {"pdf", "docx", "html", "csv"}
    assert all(m["formats"][f]["tokens"] > 0 for f in m["formats"])
    assert m["documents"]["quarantined"] == 6 and m["documents"]["in"] == m["documents"]["out"] + sum(m["drops"].values())
    files = {f["file"].rsplit("/", 1)[1]: f for f in m["files"]}
    assert m["boilerplate"]["lines"] == 0
    assert files["a_good.pdf"]["pages"] == 2 and files["emr.csv"]["encoding"] == "gb18030" and files["a_good.html"]["encoding"] == "utf-8"


def test_emr_export_is_deidentified(built, tokenizer):
    import pyarrow.parquet as pq

    m = read_manifest(built)
    blocks = [row for s in ("train", "validation") for p in m["splits"][s]["shards"] for row in pq.read_table(built / p).column("input_ids").to_pylist()]
    text = "".join(tokenizer.decode(b) for b in blocks)
    assert "喘息二十年" in text and "[姓名]" in text and "[电话]" in text and "[病历号]" in text
    for value in IDENTIFIERS.values():
        assert value not in text
    assert m["sources"]["emr"]["documents_out"] == 2
    assert m["sources"]["emr"]["phi"] == {"name": 2, "phone": 1, "record_number": 1}
    assert m["formats"]["csv"]["phi"] == m["sources"]["emr"]["phi"]
