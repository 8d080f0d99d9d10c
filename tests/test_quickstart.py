"""The quickstart's held-out discipline and its SFT -> evaluation chain.

* No item the quickstart evaluates (the dev split of its CBLUE sets, as whole PromptCBLUE prompts
  and as the texts inside them, the held-out doctors' pairs, ClinicalQA) appears in a file its SFT
  or DPO stage reads, nor in a corpus document that the corpus build keeps (the build drops every
  document its decontamination index matches).
* The closing table's SFT rows read replies as the run's evaluator does and apply the targets.

The chain itself (pre-training -> SFT -> evaluation on held-out prompts) is tested in
``tests/train/test_quickstart_chain.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medgo.assets import iter_sample_corpus
from medgo.config import load_config
from medgo.corpus.config import CorpusConfig
from medgo.corpus.decontam import build_index
from medgo.data.files import records
from medgo.data.paths import expand, resolve_path
from medgo.eval.clinicalqa import default_files, load_questions
from medgo.eval.config import EvalConfig
from medgo.quickstart import HELD_OUT_PAIRS, PROMPTCBLUE_DEV, sample_prompt, steps
from medgo.train.dpo_config import DPOConfig
from medgo.train.sft_config import SFTConfig

CONFIGS = Path("jobs/configs")
NATIVE = "medgo://assets/quickstart/cblue"
ITEM_FIELDS = {"CHIP-STS": ("text1", "text2"), "KUAKE-QIC": ("query",), "CHIP-CTC": ("text",)}


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
    """The texts of every item the quickstart evaluates: its whole prompts, and the texts inside them."""
    cfg = load_config(EvalConfig, CONFIGS / "eval" / "quickstart.yaml")
    rows = list(records(resolve_path(cfg.cblue.promptcblue_file)))
    items = [r["input"] for r in rows]
    for task in cfg.cblue.tasks:  # the same items in the native layout name the texts the prompts hold
        native = json.loads((resolve_path(NATIVE) / task / f"{task}_dev.json").read_text(encoding="utf-8"))
        texts = [row[f] for row in native for f in ITEM_FIELDS[task]]
        prompts = "\n".join(r["input"] for r in rows if r["task_dataset"] == task)
        assert len(native) == sum(r["task_dataset"] == task for r in rows) and all(t in prompts for t in texts)
        items += texts
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
    assert [(s.path, s.format) for s in sft.data.sources] == [("medgo://assets/quickstart/promptcblue/train.json", "promptcblue")]
    trained = Counter(r["task_dataset"] for r in records(resolve_path(sft.data.sources[0].path)))
    evaluated = Counter(r["task_dataset"] for r in records(resolve_path(cfg.cblue.promptcblue_file)))
    assert sorted(trained) == sorted(evaluated) == sorted(cfg.cblue.tasks) and min(evaluated.values()) >= 50
    assert cfg.cblue.metric_set == "promptcblue" and cfg.cblue.promptcblue_file.endswith("/dev.json") and cfg.cblue.max_samples is None
    assert dpo.data.pairs == ["medgo://assets/quickstart/dpo/pairs_train.jsonl"] and dpo.data.feedback == []
    assert len(resolve_path(HELD_OUT_PAIRS).read_text(encoding="utf-8").splitlines()) >= 50
    assert list(steps("r")) == ["corpus", "pretrain", "sft", "dpo", "eval", "generate"]
    # the reply the run ends with answers a held-out item, greedily
    assert PROMPTCBLUE_DEV == cfg.cblue.promptcblue_file and sample_prompt() in [r["input"] for r in records(resolve_path(PROMPTCBLUE_DEV))]
    generate = steps("r")["generate"]
    assert f"prompt={json.dumps(sample_prompt(), ensure_ascii=False)}" in generate and "temperature=0" in generate


def test_unigram_figures_on_a_hand_computed_corpus(tmp_path):
    import math

    import pyarrow as pa
    import pyarrow.parquet as pq

    from medgo.quickstart_table import unigram_figures

    splits = {"train": [[0, 0, 1, 2]], "validation": [[0, 3]]}
    for split, blocks in splits.items():
        (tmp_path / split).mkdir()
        pq.write_table(pa.table({"input_ids": pa.array(blocks, type=pa.list_(pa.int32()))}), tmp_path / split / "part.parquet")
    manifest = {"block_size": 4, "tokenizer_fingerprint": "x", "splits": {s: {"shards": [f"{s}/part.parquet"]} for s in splits}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    entropy, cross = unigram_figures(tmp_path, vocab_size=4)
    assert entropy == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    # add-one over 4 types: p(0) = 3/8, p(3) = 1/8
    assert cross == pytest.approx(-(0.5 * math.log(3 / 8) + 0.5 * math.log(1 / 8)))


def test_the_sft_rows_read_replies_as_the_promptcblue_evaluator_and_count_the_tasks_above_the_majority_class(tmp_path):
    from medgo.config import save_config
    from medgo.quickstart_table import cblue_rows

    cfg = load_config(EvalConfig, CONFIGS / "eval" / "quickstart.yaml")
    save_config(cfg, tmp_path / "config.yaml")
    gold = list(records(resolve_path(cfg.cblue.promptcblue_file)))

    def write(model: str, reply) -> None:
        """``reply(i, gold row)`` -> the model's reply to the row."""
        out = tmp_path / "predictions" / model / "promptcblue_predictions.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"sample_id": r["sample_id"], "task_dataset": r["task_dataset"], "target": reply(i, r)} for i, r in enumerate(gold)]
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    def tuned(i: int, row: dict) -> str:
        if row["task_dataset"] == "CHIP-STS":  # every reply a label word, two in three right
            return row["target"] if i % 3 else {"是的": "不是", "不是": "是的"}[row["target"]]
        if row["task_dataset"] == "KUAKE-QIC":  # a quarter not a label
            return "我不知道" if i % 4 == 0 else row["target"] if i % 2 else "非上述类型"
        return " 年龄\n"  # CHIP-CTC: one label always, read after stripping: the majority class's accuracy at best

    for model in ("pretrained", "sft+dpo"):
        write(model, lambda i, row: "1.0.0.0.")  # digits are no PromptCBLUE label: nothing parses
    write("sft", tuned)
    rows = {r.measure.split(" (")[0]: r for r in cblue_rows(tmp_path, base="pretrained", tuned="sft")}
    assert rows["CHIP-STS parse rate"].values == {"pretrained": 0.0, "sft": 1.0, "sft+dpo": 0.0} and rows["CHIP-STS parse rate"].met is True
    assert rows["CHIP-STS accuracy"].values["sft"] == pytest.approx(40 / 60)
    assert rows["KUAKE-QIC parse rate"].met is False and rows["KUAKE-QIC parse rate"].values["sft"] == pytest.approx(0.75)
    assert rows["CHIP-CTC parse rate"].met is True and rows["CHIP-CTC accuracy"].values["sft"] == pytest.approx(1 / 10)
    counted = [r for m, r in rows.items() if m.startswith("tasks where")]
    assert len(counted) == 1 and counted[0].values == {"value": 2} and counted[0].met is True
    assert counted[0].measure.endswith("CHIP-STS, KUAKE-QIC")


def test_the_sft_rows_of_a_native_run_want_the_parse_rate_to_rise(tmp_path):
    from medgo.config import save_config
    from medgo.eval.cblue import gold_file
    from medgo.quickstart_table import cblue_rows

    cfg = load_config(EvalConfig, CONFIGS / "eval" / "quickstart.yaml", ["cblue.metric_set=native", f"cblue.data_dir={NATIVE}", "cblue.promptcblue_file=null"])
    save_config(cfg, tmp_path / "config.yaml")
    gold = {t: json.loads(gold_file(cfg, t).read_text(encoding="utf-8")) for t in cfg.cblue.tasks}

    def write(model: str, task: str, reply) -> None:
        """``reply(i, gold label)`` -> the parsed label, or None for an unparsed reply."""
        out = tmp_path / "predictions" / model / f"{task}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"keys": [r["id"]], "parsed": reply(i, r["label"]), "parse_ok": reply(i, r["label"]) is not None} for i, r in enumerate(gold[task])]
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    for model in ("pretrained", "sft+dpo"):
        write(model, "CHIP-STS", lambda i, y: "1")  # babble that the native parser reads as label 1
        write(model, "KUAKE-QIC", lambda i, y: None)
        write(model, "CHIP-CTC", lambda i, y: None)
    write("sft", "CHIP-STS", lambda i, y: y if i % 3 else "0")  # every reply parses; two in three right
    write("sft", "KUAKE-QIC", lambda i, y: y)
    write("sft", "CHIP-CTC", lambda i, y: "Age")
    rows = {r.measure.split(" (")[0]: r for r in cblue_rows(tmp_path, base="pretrained", tuned="sft")}
    assert rows["CHIP-STS parse rate"].met is False, "a base already at 100% leaves no room to rise: not met"
    assert rows["KUAKE-QIC parse rate"].met is True and rows["CHIP-CTC parse rate"].met is True
    assert rows["KUAKE-QIC accuracy"].values["sft"] == 1.0
