"""Deduplication: exact (hash of the normalised text) and near-duplicate (MinHash LSH).

Signatures are datasketch ``MinHash`` values over character n-grams, computed in numpy with
datasketch's permutations (the test suite checks they equal datasketch's own).  The LSH bands come from datasketch's
``MinHashLSH`` parameter optimum for the threshold, unless the config fixes them.  Over Ray,
the search is two narrow passes plus a small driver step:

1. every document emits one bucket key per band (and one for its exact hash); a Ray Data
   ``groupby(key).count()`` finds the buckets holding two documents or more;
2. the documents in those buckets are read back with their signatures (only them), one row
   per shared bucket, and grouped by bucket: each bucket's candidate pairs are verified where
   the bucket lands (estimated Jaccard >= threshold; exact pairs by hash);
3. the verified pairs are joined into clusters by distributed connected components (rounds of
   hash-to-min, a ``groupby(node)`` each, until every cluster is a star around its smallest
   document), and every cluster keeps that first document in corpus order.

No step collects documents or pairs in the driver: it only loops over the rounds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medgo.corpus.config import DedupConfig
from medgo.corpus.hashing import codepoints, combine_rows, fmix32, mix64, ngram_hashes

EXACT_BAND = -1
MAX_ALL_PAIRS = 16
"""Buckets up to this size compare all pairs; larger ones compare every member to the first."""


def lsh_params(cfg: DedupConfig) -> tuple[int, int]:
    """(bands, rows per band): the config's, or datasketch's optimum for threshold and num_perm."""
    if cfg.bands:
        return cfg.bands, cfg.rows
    from datasketch import MinHashLSH  # the driver's only use of datasketch (it imports SciPy)

    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    return lsh.b, lsh.r


SHINGLE_CHUNK = 8192
"""Shingles per vector operation (bounds the shingles x permutations temporary)."""


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of datasketch's ``affine32`` permutations ``h -> a*h + b mod 2^32`` for ``seed``."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


class Signer:
    """MinHash signatures of texts over character ``ngram``-shingles, equal to datasketch's
    ``MinHash(num_perm, seed)`` fed the 32-bit shingle hashes (its default ``affine32`` scheme).

    The permutations are applied in numpy to a chunk of shingles at a time, as datasketch's
    ``update_batch`` does, without importing datasketch (and SciPy) in every worker.
    """

    def __init__(self, num_perm: int, ngram: int, seed: int = 1):
        self.ngram = ngram
        self.a, self.b = permutations(num_perm, seed)

    def shingles(self, text: str) -> np.ndarray:
        """Distinct 32-bit hashes of the text's character n-grams (the whole text when shorter)."""
        cps = codepoints(text)
        hashes = ngram_hashes(cps, min(self.ngram, max(len(cps), 1)))
        return np.unique((hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32))

    def __call__(self, text: str) -> np.ndarray:
        mixed = fmix32(self.shingles(text))
        signature = np.full(len(self.a), np.iinfo(np.uint32).max, dtype=np.uint32)
        for i in range(0, len(mixed), SHINGLE_CHUNK):
            np.minimum(signature, (mixed[i : i + SHINGLE_CHUNK, None] * self.a + self.b).min(axis=0), out=signature)
        return signature


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


PAIR_SCHEMA = pa.schema([("a", pa.int64()), ("ha", pa.int64()), ("b", pa.int64()), ("hb", pa.int64()), ("verified", pa.int8())])
EDGE_SCHEMA = pa.schema([("a", pa.int64()), ("ha", pa.int64()), ("b", pa.int64()), ("hb", pa.int64()), ("own", pa.int8()), ("unsettled", pa.int8())])


def runs(keys: list[int]) -> list[tuple[int, int]]:
    """(start, end) of every run of equal values in a sorted list."""
    edges = [i for i in range(1, len(keys)) if keys[i] != keys[i - 1]]
    return list(zip([0, *edges], [*edges, len(keys)]))


def _table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    return pa.table([pa.array(col, f.type) for col, f in zip(zip(*rows), schema)] if rows else [[] for _ in schema], schema=schema)


def verify_bucket(docs: list[int], hashes: dict[int, int], sigs: dict[int, np.ndarray], threshold: float, near: bool) -> list[tuple]:
    """One LSH bucket's candidate pairs (a < b), each marked verified when the texts hash the
    same or the estimated Jaccard reaches ``threshold``."""
    rows = []
    for a, b in sorted(candidate_pairs({0: docs})):
        same = hashes[a] == hashes[b]
        rows.append((a, hashes[a], b, hashes[b], int(same or (near and jaccard(sigs[a], sigs[b]) >= threshold))))
    return rows


def verify_buckets(part: pa.Table, threshold: float, near: bool) -> pa.Table:
    """The candidate pairs of every LSH bucket in a shuffle partition (rows ``key``, ``doc``,
    ``doc_hash``, ``signature``), verified where the bucket lands."""
    part = part.sort_by([("key", "ascending"), ("doc", "ascending")])
    keys, docs = part.column("key").to_pylist(), part.column("doc").to_pylist()
    hashes = dict(zip(docs, part.column("doc_hash").to_pylist()))
    sigs = dict(zip(docs, (np.frombuffer(s, np.uint32) for s in part.column("signature").to_pylist())))
    rows = [r for start, end in runs(keys) for r in verify_bucket(docs[start:end], hashes, sigs, threshold, near)]
    return _table(rows, PAIR_SCHEMA)


def both_directions(edges: pa.Table) -> pa.Table:
    """Edges (a, b) as neighbour rows (node, other) seen from both ends."""
    fwd = {"node": edges["a"], "hnode": edges["ha"], "other": edges["b"], "hother": edges["hb"]}
    back = {"node": edges["b"], "hnode": edges["hb"], "other": edges["a"], "hother": edges["ha"]}
    return pa.concat_tables([pa.table(fwd), pa.table(back)])


def star_step(node: int, members: dict[int, int]) -> list[tuple]:
    """One round of connected components for one node (hash-to-min): the node and its neighbours
    (``members``: document -> text hash, the node included) are linked to the smallest of them.
    ``unsettled`` marks a node that still has several neighbours without being the smallest;
    when no node is unsettled, every component is a star around its smallest document and the
    rows with ``own`` set list each other member once."""
    root = min(members)
    unsettled = int(node != root and len(members) > 2)
    return [(x, hx, root, members[root], int(x == node), unsettled) for x, hx in sorted(members.items()) if x != root]


def star_partition(part: pa.Table) -> pa.Table:
    """``star_step`` for every node of a shuffle partition (rows ``node``, ``hnode``, ``other``,
    ``hother``)."""
    part = part.sort_by([("node", "ascending"), ("other", "ascending")])
    nodes, hnodes = part.column("node").to_pylist(), part.column("hnode").to_pylist()
    others, hothers = part.column("other").to_pylist(), part.column("hother").to_pylist()
    rows = []
    for start, end in runs(nodes):
        members = dict(zip(others[start:end], hothers[start:end]))
        members[nodes[start]] = hnodes[start]
        rows += star_step(nodes[start], members)
    return _table(rows, EDGE_SCHEMA)


def with_partition(table: pa.Table, column: str, partitions: int) -> pa.Table:
    """``table`` with a ``part`` column: a hash of ``column`` modulo ``partitions``, so a group-by
    on it hands each task whole buckets (or nodes) by the thousand instead of one per call."""
    values = table.column(column).to_numpy().astype(np.int64).view(np.uint64)
    return table.append_column("part", pa.array((mix64(values) % np.uint64(partitions)).astype(np.int64)))


def dropped_rows(edges: pa.Table) -> pa.Table:
    """Settled star edges as the documents to drop: (doc, kept, reason)."""
    own = edges.filter(pc.equal(edges["own"], 1))
    reason = pc.if_else(pc.equal(own["ha"], own["hb"]), "exact_duplicate", "near_duplicate")
    return pa.table({"doc": own["a"], "kept": own["b"], "reason": reason})


def clusters_of(dropped: pa.Table, candidate_pairs: int, verified_pairs: int) -> Clusters:
    """The ``Clusters`` the manifest and ``duplicates.jsonl`` report, from the dropped rows."""
    out = Clusters(candidate_pairs=candidate_pairs, verified_pairs=verified_pairs)
    members: dict[int, list[int]] = defaultdict(list)
    for doc, kept, reason in zip(*(dropped.column(c).to_pylist() for c in ("doc", "kept", "reason"))):
        members[kept].append(doc)
        out.dropped[doc] = (reason, kept)
    out.clusters = [(kept, sorted(docs)) for kept, docs in sorted(members.items())]
    return out
