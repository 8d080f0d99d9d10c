"""Writers of sample files in every binary or non-UTF-8 format the corpus build reads, and the
embedded samples they make (``medgo/assets/corpus/formats/``).

    python -m medgo.corpus.samples        # regenerate the embedded samples

The texts are written for this project.  PDFs are drawn with ReportLab in its built-in
``STSong-Light`` CJK font (a standard Adobe CID font, referenced and not embedded, so no font
file is needed); Word files with python-docx, workbooks with openpyxl.  The tests use the same
writers to make files with known text and planted headers, footers and boilerplate.
ReportLab is a test dependency: only regenerating the samples (or running the tests) needs it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from medgo.assets import CORPUS_DIR

FORMATS_DIR = CORPUS_DIR / "formats"
CJK_FONT = "STSong-Light"
PAGE_W, PAGE_H = 595.27, 841.89  # A4 in points
MARGIN_X, CHARS_PER_LINE, LINE_H = 60, 38, 15


def _wrap(paragraph: str, width: int) -> list[str]:
    return [paragraph[i : i + width] for i in range(0, len(paragraph), width)] or [""]


def _canvas(path: Path, encrypt: str | None = None):
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    if CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    c = canvas.Canvas(str(path), pagesize=(PAGE_W, PAGE_H), encrypt=encrypt, invariant=1)
    c.setTitle(path.stem)
    return c


def _column(c, paragraphs: list[str], x: float, width: int) -> None:
    y = PAGE_H - 110
    for paragraph in paragraphs:
        for line in _wrap(paragraph, width):
            c.drawString(x, y, line)
            y -= LINE_H
        y -= LINE_H / 2


def write_pdf(path: Path, pages: list[list[str]], header: str | None = None, page_numbers: bool = True, two_columns: bool = False, encrypt: str | None = None) -> Path:
    """A PDF of ``pages`` (each a list of paragraphs), with a running ``header`` and ``第 n 页 共 N
    页`` footers.  ``two_columns`` splits each page's paragraphs into two columns, drawing the
    right column first (reading order must still put the left one first)."""
    c = _canvas(path, encrypt)
    for n, paragraphs in enumerate(pages, 1):
        c.setFont(CJK_FONT, 9)
        if header:
            c.drawString(MARGIN_X, PAGE_H - 45, header)
        if page_numbers:
            c.drawCentredString(PAGE_W / 2, 35, f"第 {n} 页 共 {len(pages)} 页")
        c.setFont(CJK_FONT, 11)
        if two_columns:
            half = (len(paragraphs) + 1) // 2
            _column(c, paragraphs[half:], PAGE_W / 2 + 10, CHARS_PER_LINE // 2 - 2)
            _column(c, paragraphs[:half], MARGIN_X, CHARS_PER_LINE // 2 - 2)
        else:
            _column(c, paragraphs, MARGIN_X, CHARS_PER_LINE)
        c.showPage()
    c.save()
    return path


def write_image_pdf(path: Path, pages: int = 2) -> Path:
    """A scanned-looking PDF: one image per page and no text layer."""
    from PIL import Image, ImageDraw
    from reportlab.lib.utils import ImageReader

    c = _canvas(path)
    for n in range(pages):
        image = Image.new("L", (600, 800), 255)
        draw = ImageDraw.Draw(image)
        for y in range(60, 760, 24):
            draw.line((40, y, 560 - (y * 7 + n * 13) % 200, y), fill=30, width=9)
        c.drawImage(ImageReader(image), 40, 40, PAGE_W - 80, PAGE_H - 80)
        c.showPage()
    c.save()
    return path


def write_docx(path: Path, blocks: list, header: str | None = None) -> Path:
    """A Word file of ``blocks``: a string is a paragraph (``# `` makes it a heading), a list of
    rows is a table.  ``header`` goes into the section header, which is not body text."""
    import docx

    document = docx.Document()
    if header:
        document.sections[0].header.paragraphs[0].text = header
    for block in blocks:
        if isinstance(block, list):
            table = document.add_table(rows=len(block), cols=len(block[0]))
            for row, values in zip(table.rows, block):
                for cell, value in zip(row.cells, values):
                    cell.text = value
        elif block.startswith("# "):
            document.add_heading(block[2:], level=1)
        else:
            document.add_paragraph(block)
    document.core_properties.author = "MedGo"
    document.save(str(path))
    return path


def html_page(title: str, paragraphs: list[str], site: str = "健康科普百科") -> str:
    """A web page: navigation, a sidebar, a script and a footer around an article."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{title} - {site}</title>'
        '<script>window.dataLayer = [{"page": "disease", "note": "统计脚本内容"}];</script><style>.nav{color:#333}</style></head><body>'
        f'<nav class="nav"><ul><li><a href="/">首页</a></li><li><a href="/disease">疾病百科</a></li><li><a href="/doctor">找医生</a></li><li><a href="/app">下载客户端</a></li></ul></nav>'
        '<aside class="sidebar"><h3>热门推荐</h3><ul><li><a href="/hot/1">春季过敏怎么办</a></li><li><a href="/hot/2">体检报告怎么看</a></li></ul></aside>'
        f"<main><article><h1>{title}</h1>{body}</article></main>"
        f'<footer><p>版权所有 © 2024 {site} 未经授权禁止转载</p><p><a href="/about">关于我们</a> | <a href="/contact">联系我们</a></p></footer>'
        "</body></html>"
    )


def csv_bytes(header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> bytes:
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerows([header, *rows])
    return buf.getvalue().encode(encoding)


def write_xlsx(path: Path, header: list[str], rows: list[list], sheet: str = "Sheet1") -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = sheet
    ws.append(header)
    for row in rows:
        ws.append(row)
    book.properties.creator = "MedGo"
    book.save(str(path))
    return path


def main() -> None:
    """Regenerate ``medgo/assets/corpus/formats/`` from the texts in ``medgo.corpus.sample_texts``."""
    from medgo.corpus import sample_texts as t

    for sub in ("pdf", "docx", "html", "emr", "text"):
        (FORMATS_DIR / sub).mkdir(parents=True, exist_ok=True)
    for name, pages in t.PDF_GUIDELINES.items():
        write_pdf(FORMATS_DIR / "pdf" / f"{name}.pdf", pages, header=t.PDF_HEADER)
    for name, blocks in t.DOCX_PROTOCOLS.items():
        write_docx(FORMATS_DIR / "docx" / f"{name}.docx", blocks, header=t.DOCX_HEADER)
    for name, (title, paragraphs) in t.HTML_PAGES.items():
        (FORMATS_DIR / "html" / f"{name}.html").write_text(html_page(title, paragraphs), encoding="utf-8")
    (FORMATS_DIR / "emr" / "outpatient_visits.csv").write_bytes(csv_bytes(t.CSV_HEADER, t.CSV_ROWS, "gb18030"))
    write_xlsx(FORMATS_DIR / "emr" / "progress_notes.xlsx", t.XLSX_HEADER, t.XLSX_ROWS, sheet="病程记录")
    for name, text in t.GB18030_TEXTS.items():
        (FORMATS_DIR / "text" / f"{name}.txt").write_bytes(text.encode("gb18030"))
    print(f"wrote {sum(1 for p in FORMATS_DIR.rglob('*') if p.is_file())} files under {FORMATS_DIR}")


if __name__ == "__main__":
    main()
