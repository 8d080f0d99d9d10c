"""Deduplication: exact (hash of the normalised text) and near-duplicate (MinHash LSH).

Signatures are datasketch ``MinHash`` values over character n-grams (the n-gram hashes are
computed vectorised and fed to ``update_batch``).  The LSH bands come from datasketch's
``MinHashLSH`` parameter optimum for the threshold, unless the config fixes them.  Over Ray,
the search is two narrow passes plus a small driver step:

1. every document emits one bucket key per band (and one for its exact hash); a Ray Data
   ``groupby(key).count()`` finds the buckets holding two documents or more;
2. the documents in those buckets are read back with their signatures (only them);
3. candidate pairs are verified (estimated Jaccard >= threshold; exact pairs by hash), joined
   into clusters with union-find, and every cluster keeps its first document in corpus order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from datasketch import MinHash, MinHashLSH

from medgo.corpus.config import DedupConfig
from medgo.corpus.hashing import codepoints, combine_rows, mix64, ngram_hashes

EXACT_BAND = -1
MAX_ALL_PAIRS = 16
"""Buckets up to this size compare all pairs; larger ones compare every member to the first."""


def lsh_params(cfg: DedupConfig) -> tuple[int, int]:
    """(bands, rows per band): the config's, or datasketch's optimum for threshold and num_perm."""
    if cfg.bands:
        return cfg.bands, cfg.rows
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    return lsh.b, lsh.r


SHINGLE_CHUNK = 8192
"""Shingles per ``update_batch`` call (bounds the shingles x permutations temporary)."""


def _as_hashes(values):
    """datasketch ``hashfunc`` for pre-hashed input: the 32-bit shingle hashes pass through."""
    return values


class Signer:
    """MinHash signatures of texts over character ``ngram``-shingles (one reusable MinHash).

    Shingles are hashed to 32 bits in numpy and handed to datasketch's ``update_batch`` a chunk
    at a time (``hashfunc`` passes the array through), so datasketch applies its permutations
    to the whole chunk in one vector operation instead of one Python call per shingle.
    """

    def __init__(self, num_perm: int, ngram: int, seed: int = 1):
        self.ngram = ngram
        self.minhash = MinHash(num_perm=num_perm, seed=seed, hashfunc=_as_hashes)

    def shingles(self, text: str) -> np.ndarray:
        """Distinct 32-bit hashes of the text's character n-grams (the whole text when shorter)."""
        cps = codepoints(text)
        hashes = ngram_hashes(cps, min(self.ngram, max(len(cps), 1)))
        return np.unique((hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32))

    def __call__(self, text: str) -> np.ndarray:
        shingles = self.shingles(text)
        self.minhash.clear()
        for i in range(0, len(shingles), SHINGLE_CHUNK):
            self.minhash.update_batch([shingles[i : i + SHINGLE_CHUNK]])
        return self.minhash.hashvalues.astype(np.uint32, copy=True)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity estimated from two signatures (datasketch's estimator)."""
    return float(np.count_nonzero(a == b)) / len(a)


def bucket_keys(signatures: np.ndarray, doc_hashes: np.ndarray, bands: int, rows: int, near: bool, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """Bucket keys of a batch: (n, k) int64 keys and the (k,) band of each column (-1: exact hash)."""
    cols, band_ids = [], []
    if exact:
        cols.append(mix64(doc_hashes.astype(np.int64).view(np.uint64))[:, None])
        band_ids.append(EXACT_BAND)
    if near:
        n = signatures.shape[0]
        sig = signatures[:, : bands * rows].reshape(n, bands, rows)
        for b in range(bands):
            cols.append(combine_rows(sig[:, b, :], np.full(n, b + 1, dtype=np.uint64))[:, None])
            band_ids.append(b)
    keys = np.hstack(cols).view(np.int64) if cols else np.empty((len(doc_hashes), 0), np.int64)
    return keys, np.array(band_ids, dtype=np.int16)


@dataclass
class Clusters:
    """Outcome of deduplication: which documents go, and why."""

    dropped: dict[int, tuple[str, int]] = field(default_factory=dict)  # doc -> (reason, kept doc)
    clusters: list[tuple[int, list[int]]] = field(default_factory=list)  # (kept doc, dropped docs)
    candidate_pairs: int = 0
    verified_pairs: int = 0


def candidate_pairs(bucket_members: dict[int, list[int]]) -> set[tuple[int, int]]:
    """Pairs (a < b) to verify from every bucket of two documents or more."""
    pairs = set()
    for docs in bucket_members.values():
        docs = sorted(set(docs))
        if len(docs) <= MAX_ALL_PAIRS:
            pairs.update(combinations(docs, 2))
        else:
            pairs.update((docs[0], d) for d in docs[1:])
    return pairs


def _find(parent: dict[int, int], x: int) -> int:
    while parent.setdefault(x, x) != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def cluster(pairs: set[tuple[int, int]], signatures: dict[int, np.ndarray], doc_hashes: dict[int, int], threshold: float, near: bool) -> Clusters:
    """Verify candidate pairs, union them, keep the first document of every cluster."""
    out = Clusters(candidate_pairs=len(pairs))
    parent: dict[int, int] = {}
    for a, b in sorted(pairs):
        same = doc_hashes[a] == doc_hashes[b]
        if same or (near and jaccard(signatures[a], signatures[b]) >= threshold):
            out.verified_pairs += 1
            ra, rb = _find(parent, a), _find(parent, b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = defaultdict(list)
    for doc in parent:
        members[_find(parent, doc)].append(doc)
    for root, docs in sorted(members.items()):
        kept, rest = root, sorted(d for d in docs if d != root)
        if not rest:
            continue
        out.clusters.append((kept, rest))
        for d in rest:
            reason = "exact_duplicate" if doc_hashes[d] == doc_hashes[kept] else "near_duplicate"
            out.dropped[d] = (reason, kept)
    return out
