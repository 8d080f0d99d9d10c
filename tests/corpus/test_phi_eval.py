"""The PHI evaluation set and the de-identifier's targets on its held-out half."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from medgo.corpus.phi import is_valid_id
from tests.corpus.phi_eval_set import HELDOUT_STYLES, generate, load

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "phi.py"


@pytest.fixture(scope="module")
def records():
    return load()


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("phi_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_file_is_what_the_generator_writes(records):
    assert records == generate()


def test_set_size_spans_and_split(records):
    assert sum(not r.clean for r in records) >= 500 and sum(r.clean for r in records) >= 200
    for r in records:
        assert all(r.text[s.start : s.end] == s.text for s in r.spans)
        assert r.clean == (not r.spans)
        assert r.split == ("heldout" if r.style in HELDOUT_STYLES else "tune")
    tune = {r.template for r in records if r.split == "tune"}
    assert tune and not tune & {r.template for r in records if r.split == "heldout"}


def test_planted_id_numbers_have_valid_check_digits(records):
    full = str.maketrans({chr(c): chr(c - 0xFEE0) for c in range(0xFF10, 0xFF1A)})
    ids = [re.sub(r"\s", "", s.text.translate(full)) for r in records for s in r.spans if s.type == "id_card"]
    assert ids and all(is_valid_id(i) for i in ids)


def test_heldout_targets(records, benchmark):
    result = benchmark.score([r for r in records if r.split == "heldout"])
    targets = benchmark.TARGETS
    assert result["structured_recall"] >= targets["structured_recall"], result["recall"]
    assert result["name_recall"] >= targets["name_recall"], result["recall"]
    assert result["clean_altered"] <= targets["clean_altered"], result["clean_sentences"]
