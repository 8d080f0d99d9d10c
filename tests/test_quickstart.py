"""The quickstart's held-out discipline and its SFT -> evaluation chain.

* No item the quickstart evaluates (the dev splits of its CBLUE sets, the held-out doctors'
  pairs, ClinicalQA) appears in a file its SFT or DPO stage reads, nor in a corpus document
  that the corpus build keeps (the build drops every document its decontamination index matches).
* A smaller version of the chain: the quickstart's SFT stage (its config, one CBLUE task, a few
  steps, the 2-layer tiny model) and then its evaluation (its config, the base and the tuned
  model, the dev split): the parse rate of replies to held-out prompts rises.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgo.assets import iter_sample_corpus
from medgo.config import ModelConfig, load_config
from medgo.corpus.config import CorpusConfig
from medgo.corpus.decontam import build_index
from medgo.data.paths import expand, resolve_path
from medgo.eval.clinicalqa import default_files, load_questions
from medgo.eval.config import EvalConfig
from medgo.quickstart import HELD_OUT_PAIRS, steps
from medgo.quickstart_table import task_figures
from medgo.train.dpo_config import DPOConfig
from medgo.train.sft_config import SFTConfig

CONFIGS = Path("jobs/configs")
ITEM_FIELDS = {"CHIP-STS": ("text1", "text2"), "KUAKE-QIC": ("query",), "KUAKE-QQR": ("query1", "query2")}


def training_texts() -> dict[str, str]:
    """Every file the quickstart's SFT and DPO stages train on, and every corpus document the build keeps."""
    sft = load_config(SFTConfig, CONFIGS / "sft" / "quickstart.yaml")
    dpo = load_config(DPOConfig, CONFIGS / "dpo" / "quickstart.yaml")
    corpus = load_config(CorpusConfig, CONFIGS / "corpus" / "tiny.yaml")
    paths = [resolve_path(s.path) for s in sft.data.sources]
    paths += [p for pattern in [*dpo.data.pairs, *dpo.data.feedback] for p in expand(pattern)]
    index = build_index(corpus.decontam.eval_files, corpus.decontam.ngram)
    kept = [doc for doc in iter_sample_corpus() if index.first_match(doc) is None]
    assert len(kept) > 100
    return {str(p): p.read_text(encoding="utf-8") for p in paths} | {f"corpus document {i}": doc for i, doc in enumerate(kept)}


def eval_items() -> list[str]:
    """The texts of every item the quickstart evaluates."""
    cfg = load_config(EvalConfig, CONFIGS / "eval" / "quickstart.yaml")
    items = []
    for task in cfg.cblue.tasks:
        rows = json.loads((resolve_path(cfg.cblue.data_dir) / task / f"{task}_{cfg.cblue.split}.json").read_text(encoding="utf-8"))
        items += [row[f] for row in rows for f in ITEM_FIELDS[task]]
    for line in resolve_path(HELD_OUT_PAIRS).read_text(encoding="utf-8").splitlines():
        pair = json.loads(line)
        items += [pair["prompt"][-1]["content"], pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]]
    # A ClinicalQA stem shorter than the decontamination n-gram (e.g. "胎盘早剥最常见的诱因是") is a
    # phrase any textbook uses, not an exam item; the build's own rule leaves it, and so does this check.
    ngram = load_config(CorpusConfig, CONFIGS / "corpus" / "tiny.yaml").decontam.ngram
    return items + [q.question for q in load_questions(default_files()) if len(q.question) >= ngram]


def test_no_evaluated_item_is_in_a_training_file():
    texts, items = training_texts(), eval_items()
    assert len(texts) > 100 and len(items) >= 3 * 2 * 50 + 3 * 50 + 40
    leaked = [(item, path) for item in items for path, text in texts.items() if item in text]
    assert leaked == []


def test_the_quickstart_trains_on_train_splits_and_evaluates_dev_splits():
    sft = load_config(SFTConfig, CONFIGS / "sft" / "quickstart.yaml")
    dpo = load_config(DPOConfig, CONFIGS / "dpo" / "quickstart.yaml")
    cfg = load_config(EvalConfig, CONFIGS / "eval" / "quickstart.yaml")
    assert sorted(s.task for s in sft.data.sources) == sorted(cfg.cblue.tasks)
    assert all(s.path.endswith(f"{s.task}_train.json") for s in sft.data.sources)
    assert dpo.data.pairs == ["medgo://assets/quickstart/dpo/pairs_train.jsonl"] and dpo.data.feedback == []
    assert cfg.cblue.split == "dev" and cfg.cblue.max_samples is None
    for task in cfg.cblue.tasks:
        assert len(json.loads((resolve_path(cfg.cblue.data_dir) / task / f"{task}_dev.json").read_text(encoding="utf-8"))) >= 50
    assert len(resolve_path(HELD_OUT_PAIRS).read_text(encoding="utf-8").splitlines()) >= 50
    assert list(steps("r")) == ["corpus", "pretrain", "sft", "dpo", "eval", "generate"]


@pytest.fixture(scope="module")
def sft_then_eval(ray_session, tmp_path_factory):
    """The quickstart's SFT on CHIP-STS from the random tiny model, then its evaluation of base and tuned."""
    from medgo.eval.run import run as evaluate
    from medgo.model.loading import load_model_and_tokenizer
    from medgo.train.base_model import write_model_dir
    from medgo.train.sft import run as sft

    out = tmp_path_factory.mktemp("runs")
    base = write_model_dir(*load_model_and_tokenizer(ModelConfig(base_model="tiny")), out / "base")
    cfg = load_config(SFTConfig, CONFIGS / "sft" / "quickstart.yaml", [f"model.base_model={base}", f"output_dir={out}", "train.max_steps=30", "train.learning_rate=1e-2"])
    result = sft(cfg.model_copy(update={"data": cfg.data.model_copy(update={"sources": cfg.data.sources[:1]})}))
    ev = load_config(EvalConfig, CONFIGS / "eval" / "quickstart.yaml", [f"output_dir={out}", "cblue.tasks=[CHIP-STS]", "cblue.max_samples=50", "clinicalqa.enabled=false",
                                                                      f"models.0.model.base_model={base}", f"models.1.model.base_model={base}", f"models.1.model.adapter={result.adapter_dir}"])  # fmt: skip
    evaluate(ev.model_copy(update={"models": ev.models[:2]}))
    return out, result


def test_sft_raises_the_parse_rate_on_held_out_prompts(sft_then_eval):
    out, result = sft_then_eval
    saved = (result.run_dir / "config.yaml").read_text(encoding="utf-8")
    assert "CHIP-STS_train.json" in saved and "_dev" not in saved  # the split is recorded in the run's config
    eval_dir = out / "eval" / "quickstart"
    assert "split: dev" in (eval_dir / "config.yaml").read_text(encoding="utf-8")
    gold = resolve_path("medgo://assets/quickstart/cblue/CHIP-STS/CHIP-STS_dev.json")
    parse, _, _ = task_figures(eval_dir, "CHIP-STS", gold, ["pretrained", "sft"])
    assert parse["sft"] > parse["pretrained"] and parse["sft"] >= 0.5, parse
