"""KUAKE-IR: BM25 top-k passage retrieval (``rank_bm25``), optionally reranked by the model.

    medgo eval run --config jobs/configs/eval/tiny.yaml --set cblue.tasks=[KUAKE-IR] --set retrieval.rerank=true

Files (CBLUE native): ``corpus.tsv`` (``pid<TAB>passage``), ``<split>.query.txt``
(``qid<TAB>query``) and the judgements ``<split>.tsv`` or ``KUAKE-IR_<split>.tsv``
(``qid<TAB>pid``).  Texts become tokens by ``char_bigram`` (every character plus every
adjacent pair, punctuation dropped: no word segmenter needed for Chinese) or ``model`` (the
model tokenizer's BPE pieces, which the embedded tokenizer learned from medical text).

Reranking scores each of the first ``rerank_depth`` BM25 candidates by the model's query
likelihood, log P(query | passage) per token, and mixes per-query z-scores of both signals
(``rerank_weight``).  The ranking is written as ``qid<TAB>pid`` lines, best first, ``top_k``
per query; MRR@10 is computed by :mod:`medgo.eval.metrics` with every judged query counted.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi
from tqdm import tqdm

from medgo.eval.config import RetrievalConfig

_KEEP = re.compile(r"[\w]", re.UNICODE)


class RetrievalError(ValueError):
    """A KUAKE-IR file that cannot be used; the message names the file and line."""


def read_tsv(path: Path) -> dict[str, str]:
    """``id<TAB>text`` lines into a dict (first column unique); the error names the line."""
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            key, sep, text = line.rstrip("\n").partition("\t")
            if not sep or not key.strip() or not text.strip():
                raise RetrievalError(f"{path}:{n}: expected 'id<TAB>text'")
            if key in out:
                raise RetrievalError(f"{path}:{n}: id {key!r} appears twice")
            out[key.strip()] = text.strip()
    return out


def char_bigrams(text: str) -> list[str]:
    chars = [c for c in text.lower() if _KEEP.match(c) and c != "_"]
    return chars + [a + b for a, b in zip(chars, chars[1:])]


def make_tokenizer(mode: str, tokenizer=None):
    if mode == "char_bigram":
        return char_bigrams
    if tokenizer is None:
        raise ValueError("retrieval.tokens=model needs the model tokenizer")
    return lambda text: model_pieces(tokenizer, text)


def model_pieces(tokenizer, text: str) -> list[str]:
    """The text spans of the tokenizer's pieces (byte fragments of one character merge into it)."""
    text = text.lower()
    spans = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    pieces: list[str] = []
    last = None
    for start, end in spans:
        if (start, end) != last and end > start and text[start:end].strip():
            pieces.append(text[start:end].strip())
        last = (start, end)
    return pieces


def bm25_candidates(corpus: dict[str, str], queries: dict[str, str], cfg: RetrievalConfig, tokenizer=None) -> dict[str, list[tuple[str, float]]]:
    """The best ``max(top_k, rerank_depth)`` passages per query with their BM25 scores."""
    tok = make_tokenizer(cfg.tokens, tokenizer)
    pids = list(corpus)
    index = BM25Okapi([tok(corpus[p]) for p in tqdm(pids, desc="KUAKE-IR index", unit="doc", leave=False)], k1=cfg.k1, b=cfg.b)
    depth = min(len(pids), max(cfg.top_k, cfg.rerank_depth if cfg.rerank else 0))
    out = {}
    for qid, query in tqdm(queries.items(), desc="KUAKE-IR BM25", unit="query", leave=False):
        scores = index.get_scores(tok(query))
        best = np.argsort(-scores, kind="stable")[:depth]
        out[qid] = [(pids[i], float(scores[i])) for i in best]
    return out


def rerank_prompt(passage: str) -> str:
    """The text the model reads before the query whose likelihood it scores."""
    return f"医学文章：{passage}\n用户搜索的问题："


def _z(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def rerank(candidates: dict[str, list[tuple[str, float]]], model_scores: dict[tuple[str, str], float], weight: float) -> dict[str, list[tuple[str, float]]]:
    """Mix per-query z-scores: ``weight`` x model + (1 - weight) x BM25, best first."""
    out = {}
    for qid, cands in candidates.items():
        bm25 = np.array([s for _, s in cands])
        lm = np.array([model_scores[(qid, pid)] for pid, _ in cands])
        mixed = weight * _z(lm) + (1 - weight) * _z(bm25)
        order = np.argsort(-mixed, kind="stable")
        out[qid] = [(cands[i][0], float(mixed[i])) for i in order]
    return out


def write_ranking(path: Path, ranking: dict[str, list[tuple[str, float]]], top_k: int) -> Path:
    """``qid<TAB>pid`` lines, ``top_k`` per query, best first (the CBLUE submission layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for qid, ranked in ranking.items():
            for pid, _ in ranked[:top_k]:
                f.write(f"{qid}\t{pid}\n")
    return path
