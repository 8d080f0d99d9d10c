"""Near-duplicate detection on crafted pairs, pair verification per bucket, and clustering by
connected components equal to union-find."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pytest

from medgo.corpus.config import DedupConfig
from medgo.corpus.dedup import EXACT_BAND, Signer, both_directions, bucket_keys, candidate_pairs, clusters_of, dropped_rows, jaccard, lsh_params, star_partition, verify_buckets, with_partition
from medgo.corpus.hashing import codepoints, ngram_hashes, text_hash

BASE = (
    "社区获得性肺炎是指在医院外罹患的感染性肺实质炎症，包括具有明确潜伏期的病原体感染在入院后于潜伏期内发病的肺炎。"
    "常见病原体为肺炎链球菌、流感嗜血杆菌、肺炎支原体和呼吸道病毒。临床表现为发热、咳嗽、咳痰，可伴胸痛和呼吸困难，"
    "胸部影像学检查可见新出现的斑片状浸润影、叶或段实变影。治疗上应根据病情严重程度、年龄和基础疾病选择初始经验性抗感染方案，"
    "门诊轻症患者可选用阿莫西林或多西环素，住院患者可选用β内酰胺类联合大环内酯类，疗程一般为5至7天。"
)
NEAR = BASE.replace("5至7天", "7至10天").replace("呼吸道病毒", "呼吸道合胞病毒")  # a few characters edited
APPENDED = BASE + "本文仅供参考。"
OTHER = (
    "2型糖尿病以胰岛素抵抗伴胰岛素分泌相对不足为主要特征，诊断依据空腹血糖、随机血糖、口服葡萄糖耐量试验2小时血糖或糖化血红蛋白。"
    "治疗包括生活方式干预和药物治疗，二甲双胍是一线首选药物，合并动脉粥样硬化性心血管疾病者优先选用具有心血管获益证据的药物。"
)
SAME_TOPIC = BASE[:80] + OTHER  # shares a long prefix, but most of the text differs


@pytest.fixture(scope="module")
def signer():
    return Signer(num_perm=128, ngram=5, seed=1)


def true_jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = set(ngram_hashes(codepoints(a), n).tolist()), set(ngram_hashes(codepoints(b), n).tolist())
    return len(sa & sb) / len(sa | sb)


@pytest.mark.parametrize(("a", "b", "dup"), [(BASE, NEAR, True), (BASE, APPENDED, True), (BASE, OTHER, False), (BASE, SAME_TOPIC, False)])
def test_crafted_pairs(signer, a, b, dup):
    est = jaccard(signer(a), signer(b))
    assert abs(est - true_jaccard(a, b)) < 0.15  # the MinHash estimate tracks the true Jaccard
    assert (est >= 0.8) is dup


def test_vectorised_signature_equals_datasketch_one_by_one(signer):
    from datasketch import MinHash

    reference = MinHash(num_perm=128, seed=1, hashfunc=int)
    reference.update_batch(signer.shingles(BASE * 30).tolist())  # > one chunk of shingles
    assert np.array_equal(signer(BASE * 30), reference.hashvalues)


def test_signature_is_deterministic_and_short_texts_work(signer):
    assert np.array_equal(signer(BASE), Signer(128, 5, 1)(BASE))
    assert signer("肺炎").shape == (128,) and signer("肺炎").dtype == np.uint32


def test_lsh_params_from_datasketch_or_config():
    b, r = lsh_params(DedupConfig())
    assert b * r <= 128 and b > 1 and r > 1
    assert lsh_params(DedupConfig(bands=16, rows=8)) == (16, 8)
    with pytest.raises(ValueError, match="bands\\*rows"):
        DedupConfig(bands=20, rows=8)
    with pytest.raises(ValueError, match="set together"):
        DedupConfig(bands=20)


def test_buckets_put_near_duplicates_together(signer):
    texts = [BASE, NEAR, OTHER]
    sigs = np.stack([signer(t) for t in texts])
    hashes = np.array([text_hash(t) for t in texts], dtype=np.int64)
    b, r = lsh_params(DedupConfig())
    keys, bands = bucket_keys(sigs, hashes, b, r, near=True, exact=True)
    assert keys.shape == (3, b + 1) and bands[0] == EXACT_BAND
    assert set(keys[0, 1:]) & set(keys[1, 1:])  # BASE and NEAR share a band
    assert not set(keys[0]) & set(keys[2])


def bucket_rows(buckets: dict[int, dict[int, str]], signer) -> pa.Table:
    """Rows (key, doc, doc_hash, signature) of a shuffle partition holding several buckets."""
    rows = [(key, d, text_hash(t), signer(t).tobytes()) for key, texts in buckets.items() for d, t in texts.items()]
    return pa.table({"key": [r[0] for r in rows], "doc": [r[1] for r in rows], "doc_hash": [r[2] for r in rows], "signature": pa.array([r[3] for r in rows], pa.binary())})


def test_bucket_pairs_are_verified_where_the_bucket_lands(signer):
    part = bucket_rows({7: {40: BASE, 10: BASE, 30: NEAR, 50: SAME_TOPIC}, 3: {30: NEAR, 60: OTHER}}, signer)
    rows = verify_buckets(part, threshold=0.8, near=True)
    verified = {(r["a"], r["b"]): r["verified"] for r in rows.to_pylist()}
    assert verified == {(10, 30): 1, (10, 40): 1, (30, 40): 1, (10, 50): 0, (30, 50): 0, (40, 50): 0, (30, 60): 0}
    exact_only = verify_buckets(bucket_rows({1: {40: BASE, 10: BASE, 30: NEAR}}, signer), threshold=0.8, near=False)
    assert {(r["a"], r["b"]) for r in exact_only.to_pylist() if r["verified"]} == {(10, 40)}


def components(pairs: list[tuple[int, int]], hashes: dict[int, int]) -> tuple[pa.Table, int]:
    """The distributed rounds, run in one process: three shuffle partitions by node."""
    edges = pa.table({"a": [a for a, _ in pairs], "ha": [hashes[a] for a, _ in pairs], "b": [b for _, b in pairs], "hb": [hashes[b] for _, b in pairs]})
    for rounds in range(1, 65):
        rows = with_partition(both_directions(edges), "node", 3)
        parts = [rows.filter(pa.compute.equal(rows["part"], p)) for p in range(3)]  # the shuffle
        edges = pa.concat_tables([star_partition(p) for p in parts])
        if sum(edges["unsettled"].to_pylist()) == 0:
            return dropped_rows(edges), rounds
    raise AssertionError("did not settle")


def union_find(pairs: list[tuple[int, int]]) -> dict[int, int]:
    parent: dict[int, int] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return {d: find(d) for d in parent if find(d) != d}


@pytest.mark.parametrize("seed", range(6))
def test_components_equal_union_find(seed):
    rng = np.random.default_rng(seed)
    pairs = sorted({tuple(sorted(rng.choice(60, 2, replace=False).tolist())) for _ in range(45)})
    pairs += [(100 + i, 101 + i) for i in range(12)]  # a chain: the slowest case for hash-to-min
    hashes = {d: d % 3 for p in pairs for d in p}
    dropped, rounds = components(pairs, hashes)
    got = {r["doc"]: r["kept"] for r in dropped.to_pylist()}
    assert got == union_find(pairs) and dropped.num_rows == len(got)
    assert {r["doc"]: r["reason"] for r in dropped.to_pylist()} == {d: "exact_duplicate" if hashes[d] == hashes[k] else "near_duplicate" for d, k in got.items()}
    assert rounds <= 8


def test_clusters_keep_the_first_document():
    dropped = pa.table({"doc": [40, 30, 60], "kept": [10, 10, 20], "reason": ["exact_duplicate", "near_duplicate", "near_duplicate"]})
    out = clusters_of(dropped, candidate_pairs=5, verified_pairs=3)
    assert out.clusters == [(10, [30, 40]), (20, [60])]
    assert out.dropped == {40: ("exact_duplicate", 10), 30: ("near_duplicate", 10), 60: ("near_duplicate", 20)}


def test_large_buckets_compare_to_first():
    pairs = candidate_pairs({1: list(range(40, 0, -1))})
    assert pairs == {(1, d) for d in range(2, 41)}
