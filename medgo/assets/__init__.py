"""The embedded default: sample data written for this project, in every format the pipeline reads.

``corpus/``      sample pre-training corpus (JSONL per source category, Markdown and TXT files;
                 ``corpus/formats/``: PDF, Word, HTML, CSV/XLSX and GB18030 samples)
``sft/``         consultations, guideline QA, diagnosis, task instructions, safety prompts
``dpo/``         preference triples; ``feedback/`` doctors' acceptable/unacceptable judgements
``cblue/``       CBLUE samples in each task's native files; ``promptcblue/`` PromptCBLUE JSONL
``clinicalqa/``  four-option clinical multiple-choice questions (JSONL and CMMLU-style CSV)
``architectures/``  the public Qwen2 sizes as ``config.json`` files (``medgo plan``'s presets)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
CORPUS_DIR = ASSETS / "corpus"


def asset_path(*parts: str) -> Path:
    """Path of an embedded asset, e.g. ``asset_path("sft", "qa.jsonl")``."""
    path = ASSETS.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"embedded asset missing: {path.relative_to(ASSETS)}")
    return path


def sample_corpus_files() -> list[Path]:
    """Every UTF-8 file of the sample corpus, in a stable order (``formats/`` holds the samples in
    other formats and encodings, which only the corpus build reads)."""
    return sorted(p for p in CORPUS_DIR.rglob("*") if p.suffix in {".jsonl", ".txt", ".md"} and "formats" not in p.relative_to(CORPUS_DIR).parts)


def iter_sample_corpus() -> Iterator[str]:
    """Texts of the sample corpus: the ``text`` field of JSONL records, whole TXT/Markdown files."""
    for path in sample_corpus_files():
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)["text"]
        else:
            yield path.read_text(encoding="utf-8")
