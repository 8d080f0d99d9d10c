"""Typed config of the corpus build (``medgo corpus build``) and resolution of its paths.

Paths in a config may start with ``medgo://``: they then resolve against the installed
``medgo`` package, so ``medgo://assets/corpus/textbook.jsonl`` names the embedded sample
corpus from any working directory (and inside a ``ray job submit`` working dir).  Any other
relative path resolves against the current working directory.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from medgo.config import CONFIG_ROOT, RayConfig, Section, StageConfig
from medgo.data.paths import PACKAGE_DIR, PACKAGE_PREFIX, expand, resolve_path

CONFIG_DIR = CONFIG_ROOT / "corpus"
FORMATS = ("jsonl", "json", "parquet", "txt", "markdown", "pdf", "docx", "html", "csv", "xlsx")
TEXT_FORMATS = ("txt", "markdown", "csv", "html")
"""Formats read as text in a configurable ``encoding`` (default ``auto``)."""
TABLE_FORMATS = ("csv", "xlsx")


def display_path(path: Path) -> str:
    """A path as reports show it: ``medgo://...`` inside the package, relative to the cwd if below it."""
    path = Path(path).resolve()
    for root, prefix in ((PACKAGE_DIR, PACKAGE_PREFIX), (Path.cwd().resolve(), "")):
        if path.is_relative_to(root):
            return prefix + path.relative_to(root).as_posix()
    return path.as_posix()


class SourceConfig(Section):
    """One input source: files of one format and one category."""

    name: str = Field(min_length=1)
    """Source name, reported per document (e.g. ``renwei_textbooks``)."""
    path: str = Field(min_length=1)
    """File, directory-free glob (``**`` allowed) or ``medgo://`` package path."""
    format: Literal["jsonl", "json", "parquet", "txt", "markdown", "pdf", "docx", "html", "csv", "xlsx"]
    """``jsonl``: one JSON object per line; ``json``: a file holding a JSON array of objects;
    ``parquet``: rows of a Parquet file; ``txt``/``markdown``/``docx``/``html``: one document per
    file; ``pdf``: one document per ``read.pdf_pages`` pages; ``csv``/``xlsx``: one document per
    row, or per value of ``group_by``."""
    category: str = Field(min_length=1)
    """Source category the statistics and the report group by (e.g. ``textbook``)."""
    text_field: str = "text"
    """Field holding the document text (jsonl, json, parquet)."""
    encoding: str | None = None
    """txt, markdown, csv, html: ``auto`` (the default) or a codec name (``utf-8``, ``gb18030``...);
    ``auto`` tries UTF-8 (BOM or not), then GB18030; UTF-16 only when a BOM says so."""
    text_columns: list[str] | None = None
    """csv, xlsx (required): the columns whose values make the document text, in this order."""
    group_by: list[str] | None = None
    """csv, xlsx: rows sharing the values of these columns make one document (e.g. a visit ID)."""
    sheet: str | None = None
    """xlsx: the worksheet to read; default: the first."""

    @field_validator("encoding")
    @classmethod
    def _codec(cls, value):
        if value not in (None, "auto"):
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown encoding {value!r} (use auto, utf-8, gb18030, ...)") from None
        return value

    @model_validator(mode="after")
    def _format_settings(self):
        if self.encoding is not None and self.format not in TEXT_FORMATS:
            raise ValueError(f"encoding applies to {', '.join(TEXT_FORMATS)} sources, not {self.format}")
        tables = self.format in TABLE_FORMATS
        if tables and not self.text_columns:
            raise ValueError(f"a {self.format} source needs text_columns (the columns holding the text)")
        for key in ("text_columns", "group_by", "sheet"):
            if getattr(self, key) is not None and not (tables and (key != "sheet" or self.format == "xlsx")):
                raise ValueError(f"{key} does not apply to a {self.format} source")
        return self

    @property
    def resolved_encoding(self) -> str | None:
        """The encoding setting in force: ``auto`` by default for text formats, None for the others."""
        if self.format in TEXT_FORMATS:
            return self.encoding or "auto"
        return None


class ReadConfig(Section):
    """How input files are split into read tasks."""

    chunk_mb: float = Field(32, gt=0)
    """JSONL files larger than this are read as several line-aligned byte ranges in parallel."""
    group_mb: float = Field(64, gt=0)
    """Input bytes per read group: one task per group in every step, and the unit the packer
    reads back and orders (its memory bound)."""
    block_mb: float = Field(16, gt=0)
    """Largest Ray Data block; with ``batch_rows`` it bounds the memory of each worker."""
    batch_rows: int = Field(512, gt=0)
    """Documents per batch in every step: bounds the memory of each worker."""
    pdf_pages: int = Field(16, gt=0)
    """PDF pages per read task; each page range is one document."""


class CleanConfig(Section):
    """Normalisation, markup removal, boilerplate lines and quality filters."""

    fullwidth_to_halfwidth: bool = True
    """Map full-width letters, digits and symbols to ASCII (Chinese ，：；？！（） are kept)."""
    strip_markup: bool = True
    """Remove HTML tags, comments and entities, and Markdown syntax (links keep their text)."""
    boilerplate_min_docs: int = Field(3, ge=0)
    """A line found in at least this many distinct documents is boilerplate and removed (0: off)."""
    boilerplate_min_chars: int = Field(8, ge=1)
    """Shorter lines never count as boilerplate (headings such as ``【诊断】`` are kept)."""
    min_chars: int = Field(40, ge=0)
    """Documents with fewer characters after cleaning are dropped (``too_short``)."""
    min_content_share: float = Field(0.6, ge=0, le=1)
    """Minimum share of CJK, letter and digit characters among non-space characters."""
    max_repetition: float = Field(0.3, ge=0, le=1)
    """Maximum share of repeated character 10-grams (``repetitive`` above it)."""


class DedupConfig(Section):
    """Exact and MinHash-LSH near-duplicate removal."""

    exact: bool = True
    """Drop documents whose normalised text hashes equal an earlier document's."""
    near: bool = True
    """Drop near-duplicates found by MinHash LSH over character n-grams."""
    threshold: float = Field(0.8, gt=0, le=1)
    """Jaccard similarity (estimated from the signatures) at which two documents are duplicates."""
    ngram: int = Field(5, ge=1)
    """Character n-gram (shingle) length."""
    num_perm: int = Field(128, ge=8)
    """MinHash permutations (signature length)."""
    seed: int = 1
    """Seed of the MinHash permutations."""
    bands: int | None = Field(None, gt=0)
    """LSH bands; default: datasketch's optimum for ``threshold`` and ``num_perm``."""
    rows: int | None = Field(None, gt=0)
    """Rows per band; set together with ``bands``."""
    shuffle_partitions: int = Field(8, gt=0)
    """Partitions of the group-by shuffles (boilerplate lines, LSH buckets)."""

    @model_validator(mode="after")
    def _bands_rows(self):
        if (self.bands is None) != (self.rows is None):
            raise ValueError("dedup.bands and dedup.rows must be set together")
        if self.bands and self.bands * self.rows > self.num_perm:
            raise ValueError(f"dedup.bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class PHIConfig(Section):
    """De-identification of Chinese clinical text."""

    enabled: bool = True
    types: list[str] | None = None
    """Identifier types to replace; default: all (see ``medgo.corpus.phi.PHI_TYPES``)."""

    @field_validator("types")
    @classmethod
    def _known(cls, value):
        from medgo.corpus.phi import PHI_TYPES

        unknown = sorted(set(value or []) - set(PHI_TYPES))
        if unknown:
            raise ValueError(f"unknown PHI types {unknown}; known: {sorted(PHI_TYPES)}")
        return value


class DecontamConfig(Section):
    """Removal of documents that overlap evaluation items."""

    enabled: bool = True
    ngram: int = Field(13, ge=4)
    """A document sharing one character n-gram of this length with an evaluation item is dropped."""
    eval_files: list[str] = Field(default_factory=lambda: list(SAMPLE_EVAL_FILES))
    """Evaluation files or globs (JSON, JSONL, CSV/TSV, TXT); every string value is an item text.
    Default: the embedded CBLUE dev/test files and ClinicalQA questions."""


SAMPLE_CATEGORIES = ("textbook", "guideline", "consensus", "case_report", "exam_bank", "review", "abstract", "protocol")
SAMPLE_EVAL_FILES = [
    "medgo://assets/cblue/*/*_dev.json*",
    "medgo://assets/cblue/*/*_test.json*",
    "medgo://assets/cblue/*/dev.query.txt",
    "medgo://assets/cblue/*/test.query.txt",
    "medgo://assets/clinicalqa/questions.jsonl",
]


FORMAT_SAMPLES = "medgo://assets/corpus/formats"


def format_sample_sources() -> list[SourceConfig]:
    """The embedded samples of the other formats: PDF guidelines, Word protocols, web pages, an
    outpatient CSV export (GB18030), inpatient progress notes (XLSX, one document per admission)
    and GB18030 lecture notes."""
    emr = {"category": "emr", "path": f"{FORMAT_SAMPLES}/emr/outpatient_visits.csv"}
    return [
        SourceConfig(name="guideline_pdf", path=f"{FORMAT_SAMPLES}/pdf/*.pdf", format="pdf", category="guideline"),
        SourceConfig(name="protocol_docx", path=f"{FORMAT_SAMPLES}/docx/*.docx", format="docx", category="protocol"),
        SourceConfig(name="encyclopedia_html", path=f"{FORMAT_SAMPLES}/html/*.html", format="html", category="encyclopedia"),
        SourceConfig(name="emr_csv", format="csv", text_columns=["主诉", "现病史", "诊断", "处理意见"], **emr),
        SourceConfig(
            name="emr_xlsx", path=f"{FORMAT_SAMPLES}/emr/progress_notes.xlsx", format="xlsx", category="emr", text_columns=["记录日期", "病程记录"], group_by=["住院号"]
        ),
        SourceConfig(name="lecture_gb18030", path=f"{FORMAT_SAMPLES}/text/*.txt", format="txt", category="lecture"),
    ]


def sample_sources() -> list[SourceConfig]:
    """The embedded sample corpus: one JSONL per category, encyclopedia Markdown, lecture text,
    and the samples of every other format."""
    jsonl = [SourceConfig(name=c, path=f"medgo://assets/corpus/{c}.jsonl", format="jsonl", category=c) for c in SAMPLE_CATEGORIES]
    return jsonl + [
        SourceConfig(name="encyclopedia", path="medgo://assets/corpus/encyclopedia/*.md", format="markdown", category="encyclopedia"),
        SourceConfig(name="lecture", path="medgo://assets/corpus/lecture/*.txt", format="txt", category="lecture"),
        *format_sample_sources(),
    ]


class CorpusConfig(StageConfig):
    """The corpus build: sources in, cleaned/deduplicated/de-identified packed shards out."""

    stage: ClassVar[str] = "corpus"

    output_dir: str = "runs"
    """Parent of the corpus directory ``<output_dir>/corpus/<run_name>`` this build writes (``manifest.json``, ``shards/``, report)."""
    sources: list[SourceConfig] = Field(default_factory=sample_sources, min_length=1)
    """Inputs; default: the embedded sample corpus."""
    tokenizer: str = "tiny"
    """``tiny`` for the embedded tokenizer, or a Hugging Face tokenizer directory (e.g. Qwen2's)."""
    block_size: int = Field(256, ge=8)
    """Tokens per packed training block (4096 for Qwen2 pre-training)."""
    validation_fraction: float = Field(0.02, ge=0, lt=1)
    """Share of documents (by a hash of their text) that go to the validation split."""
    read: ReadConfig = ReadConfig()
    clean: CleanConfig = CleanConfig()
    dedup: DedupConfig = DedupConfig()
    phi: PHIConfig = PHIConfig()
    decontam: DecontamConfig = DecontamConfig()
    ray: RayConfig = RayConfig()
    shuffle_strategy: Literal["sort_shuffle_pull_based", "sort_shuffle_push_based", "hash_shuffle"] = "sort_shuffle_pull_based"
    """Ray Data shuffle used by the group-bys of this build (boilerplate lines, LSH buckets)."""
    keep_work: bool = False
    """Keep the intermediate Parquet files under ``<output_dir>/_work`` (for debugging)."""

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, value):
        names = [s.name for s in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return value
