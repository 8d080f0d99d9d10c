"""CBLUE examples: every task reads its native sample file, and a perfect model scores 100.

"Perfect" means replying with ``target_text`` (the SFT target) to every prompt: parsing those
replies with the task's parser and scoring them with the task's scorer must give full marks,
which pins prompts, targets, parsers, example keys and prediction assembly together.
"""

from __future__ import annotations

import pytest

from medgo.data.cblue import READERS, read_examples, restrict_gold
from medgo.data.prompts import build_prompt, target_text
from medgo.eval.cblue import add_cdn_choices, collect
from medgo.eval.config import CBLUE_TASKS
from medgo.eval.metrics import TASKS, parse

GENERATED = sorted(READERS)


def test_every_cblue_task_is_covered():
    assert set(CBLUE_TASKS) == set(TASKS)
    assert set(READERS) == set(CBLUE_TASKS) - {"KUAKE-IR"}  # KUAKE-IR is answered by retrieval


@pytest.mark.parametrize("task", GENERATED)
def test_examples_cover_every_gold_unit(task):
    spec = TASKS[task]
    examples, gold = read_examples(task, spec.gold_path)
    full = spec.read_gold(spec.gold_path)
    assert examples and gold == full
    keys = [k for ex in examples for k in ex["keys"]]
    assert len(keys) == len(set((ex.get("level"), k) for ex in examples for k in ex["keys"]))
    for ex in examples:
        (msg,) = build_prompt(task, ex)
        assert msg["role"] == "user" and len(msg["content"]) > 20


@pytest.mark.parametrize("task", GENERATED)
def test_perfect_replies_score_100(task):
    spec = TASKS[task]
    examples, gold = read_examples(task, spec.gold_path)
    results = [parse(task, target_text(task, ex), ex) for ex in examples]
    assert all(ok for _, ok in results), [target_text(task, ex) for ex, (_, ok) in zip(examples, results) if not ok][:3]
    scores = spec.score(gold, collect(task, examples, results), **spec.read_resources(spec.gold_path))
    best = 100.0
    if task == "IMCS-V2-MRG":  # two references per dialogue: a copy of the first cannot match both
        best = spec.score(gold, {k: refs[0] for k, refs in gold.items()})["score"]
        assert 50 < best < 100
    assert scores["score"] == pytest.approx(best), scores
    if task == "IMCS-V2-SR":
        assert scores["dialogue_f1"] == pytest.approx(100.0)


@pytest.mark.parametrize("task", GENERATED)
def test_garbage_replies_score_0_and_count_as_unparsed(task):
    spec = TASKS[task]
    examples, gold = read_examples(task, spec.gold_path)
    results = [parse(task, "\n\n\n嗯嗯", ex) for ex in examples]
    free_text = task in {"CHIP-CDN", "MedDG"}  # any words are a (wrong) term list or reply there
    assert [ok for _, ok in results] == [free_text] * len(examples)
    assert not any(ok for _, ok in (parse(task, "", ex) for ex in examples))
    scores = spec.score(gold, collect(task, examples, results), **spec.read_resources(spec.gold_path))
    assert scores["score"] == 0.0


def test_max_samples_restricts_gold_to_the_same_units():
    spec = TASKS["IMCS-V2-SR"]
    examples, gold = read_examples("IMCS-V2-SR", spec.gold_path, max_samples=3)
    assert [ex["level"] for ex in examples] == ["utterance"] * 3 + ["dialogue"] * 3
    assert len(gold["utterance"]) == 3 and len(gold["dialogue"]) == 3
    assert restrict_gold("IMCS-V2-SR", spec.read_gold(spec.gold_path), examples) == gold
    ex, g = read_examples("CHIP-MDCFNPC", TASKS["CHIP-MDCFNPC"].gold_path, max_samples=1)
    assert len(ex) == 1 and set(g) == set(ex[0]["keys"])


def test_cdn_prompt_shows_bm25_candidates():
    spec = TASKS["CHIP-CDN"]
    examples, _ = read_examples("CHIP-CDN", spec.gold_path)
    add_cdn_choices(examples, spec.gold_path, 5)
    assert all(len(ex["choices"]) == 5 for ex in examples)
    hits = sum(any(t in ex["choices"] for t in ex["gold"]) for ex in examples)
    assert hits >= len(examples) // 2, hits  # BM25 over the ICD-10 terms finds most gold terms
    assert "候选标准词" in build_prompt("CHIP-CDN", examples[0])[0]["content"]
