"""KUAKE-IR retrieval: BM25 finds the judged passages of the embedded samples; reranking mixes scores."""

from __future__ import annotations

import pytest

from medgo.assets import ASSETS
from medgo.eval import retrieval
from medgo.eval.config import RetrievalConfig

IR = ASSETS / "cblue" / "KUAKE-IR"


def mrr10(ranking, qrels):
    total = 0.0
    for qid, pids in qrels.items():
        ranked = [p for p, _ in ranking.get(qid, [])][:10]
        total += next((1 / (i + 1) for i, p in enumerate(ranked) if p in pids), 0.0)
    return 100 * total / len(qrels)


def test_char_bigrams_drop_punctuation():
    assert retrieval.char_bigrams("头痛，发热!") == ["头", "痛", "发", "热", "头痛", "痛发", "发热"]


def test_bm25_mrr10_on_the_25_passage_sample(tokenizer):
    corpus = retrieval.read_tsv(IR / "corpus.tsv")
    queries = retrieval.read_tsv(IR / "dev.query.txt")
    qrels = {}
    for line in (IR / "dev.tsv").read_text(encoding="utf-8").splitlines():
        q, p = line.split("\t")
        qrels.setdefault(q, set()).add(p)
    for tokens in ("char_bigram", "model"):
        cands = retrieval.bm25_candidates(corpus, queries, RetrievalConfig(tokens=tokens), tokenizer)
        assert all(len(c) == 10 for c in cands.values())
        assert all(a[1] >= b[1] for c in cands.values() for a, b in zip(c, c[1:]))
        assert mrr10(cands, qrels) > 50, tokens  # 25 sample passages, not the KUAKE-IR benchmark


def test_rerank_mixes_z_scores():
    cands = {"q": [("a", 3.0), ("b", 2.0), ("c", 1.0)]}
    lm = {("q", "a"): -3.0, ("q", "b"): -1.0, ("q", "c"): -2.0}
    assert [p for p, _ in retrieval.rerank(cands, lm, 1.0)["q"]] == ["b", "c", "a"]
    assert [p for p, _ in retrieval.rerank(cands, lm, 0.0)["q"]] == ["a", "b", "c"]


def test_bad_tsv_line_is_named(tmp_path):
    p = tmp_path / "corpus.tsv"
    p.write_text("1\t头痛\n2 没有制表符\n", encoding="utf-8")
    with pytest.raises(retrieval.RetrievalError, match=r"corpus.tsv:2"):
        retrieval.read_tsv(p)


def test_write_ranking_keeps_top_k(tmp_path):
    path = retrieval.write_ranking(tmp_path / "r.tsv", {"q1": [(str(i), -i) for i in range(15)]}, 10)
    lines = path.read_text().splitlines()
    assert len(lines) == 10 and lines[0] == "q1\t0"
