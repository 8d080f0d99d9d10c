"""Decontamination index and the checks that run before any worker starts."""

from __future__ import annotations

import json

import pytest

from medgo.config import ConfigError, load_config
from medgo.corpus.build import prepare
from medgo.corpus.config import CONFIG_DIR, CorpusConfig
from medgo.corpus.decontam import build_index, item_texts

ITEM = "儿童急性中耳炎多继发于上呼吸道感染。"


def test_item_texts_of_every_format(tmp_path):
    (tmp_path / "a_test.json").write_text(json.dumps([{"text": ITEM, "entities": [{"entity": "中耳炎"}]}], ensure_ascii=False), encoding="utf-8")
    (tmp_path / "b_test.jsonl").write_text(json.dumps({"q": ITEM, "options": {"A": "x"}}, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "c.tsv").write_text(f"1\t{ITEM}\n", encoding="utf-8")
    (tmp_path / "d.query.txt").write_text(f"201\t{ITEM}\n", encoding="utf-8")
    assert item_texts(tmp_path / "a_test.json") == [ITEM, "中耳炎"]
    assert item_texts(tmp_path / "b_test.jsonl") == [ITEM, "x"]
    assert item_texts(tmp_path / "c.tsv") == ["1", ITEM]
    assert item_texts(tmp_path / "d.query.txt") == [f"201\t{ITEM}"]


def test_index_matches_long_overlaps_only(tmp_path):
    (tmp_path / "x_test.json").write_text(json.dumps([{"text": ITEM}, {"text": "短句"}], ensure_ascii=False), encoding="utf-8")
    index = build_index([str(tmp_path / "*_test.json")], ngram=13)
    assert len(index.items) == 1 and index.skipped_short == 1
    hit = index.first_match("病例讨论：儿童急性中耳炎多继发于上呼吸道感染，应积极治疗。")
    assert hit is not None and hit[0] == 0 and len(hit[1]) == 13 and hit[1] in ITEM
    assert index.first_match("儿童 急性中耳炎 多继发于 上呼吸道感染") is not None  # whitespace does not hide it
    assert index.first_match("儿童急性中耳炎常见，成人少见。") is None  # shorter overlap than 13 characters
    assert build_index([], 13).first_match(ITEM) is None


def test_broken_eval_file_is_named(tmp_path):
    (tmp_path / "bad_dev.jsonl").write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad_dev.jsonl, line 2"):
        build_index([str(tmp_path / "bad_dev.jsonl")], 13)


def test_shipped_configs_load():
    tiny = load_config(CorpusConfig, CONFIG_DIR / "tiny.yaml")
    prod = load_config(CorpusConfig, CONFIG_DIR / "production.yaml")
    assert tiny.block_size < prod.block_size == 4096
    assert len({s.category for s in prod.sources}) == 15
    assert CorpusConfig().sources == tiny.sources  # the default is the embedded sample corpus


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("phi.types=[name, passport]", "unknown PHI types"),
        ("dedup.threshold=1.5", "dedup.threshold"),
        ("sources=[]", "sources"),
        ("sources=[{name: a, path: x, format: pptx, category: c}]", "sources.0.format"),
        ("sources=[{name: a, path: x, format: csv, category: c}]", "sources.0.*needs text_columns"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CorpusConfig, None, [override])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tokenizer=/nonexistent/tokenizer"], "key 'tokenizer'"),
        (["decontam.eval_files=[/nonexistent/*_test.json]"], "key 'decontam.eval_files': no file matches"),
    ],
)
def test_prepare_rejects_before_any_worker(tmp_path, overrides, message):
    cfg = load_config(CorpusConfig, None, [f"output_dir={tmp_path / 'out'}", *overrides])
    with pytest.raises(ConfigError, match=message):
        prepare(cfg)


def test_prepare_refuses_to_overwrite_other_directories(tmp_path):
    taken = tmp_path / "corpus" / "default"
    taken.mkdir(parents=True)
    (taken / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a corpus directory"):
        prepare(load_config(CorpusConfig, None, [f"output_dir={tmp_path}"]))
    assert (taken / "precious.txt").read_text() == "keep me"
