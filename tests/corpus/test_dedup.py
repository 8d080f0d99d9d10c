"""Near-duplicate detection on crafted pairs, and deterministic clustering."""

from __future__ import annotations

import numpy as np
import pytest

from medgo.corpus.config import DedupConfig
from medgo.corpus.dedup import EXACT_BAND, Signer, bucket_keys, candidate_pairs, cluster, jaccard, lsh_params
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


def test_cluster_keeps_first_and_labels_reasons(signer):
    texts = {10: BASE, 20: OTHER, 30: NEAR, 40: BASE, 50: SAME_TOPIC}
    sigs = {d: signer(t) for d, t in texts.items()}
    hashes = {d: text_hash(t) for d, t in texts.items()}
    pairs = candidate_pairs({1: [40, 10, 30], 2: [20, 50], 3: [20]})
    assert pairs == {(10, 30), (10, 40), (30, 40), (20, 50)}
    out = cluster(pairs, sigs, hashes, threshold=0.8, near=True)
    assert out.dropped == {30: ("near_duplicate", 10), 40: ("exact_duplicate", 10)}
    assert out.clusters == [(10, [30, 40])]
    assert out.candidate_pairs == 4 and out.verified_pairs == 3
    exact_only = cluster(pairs, sigs, hashes, threshold=0.8, near=False)
    assert exact_only.dropped == {40: ("exact_duplicate", 10)}


def test_large_buckets_compare_to_first():
    pairs = candidate_pairs({1: list(range(40, 0, -1))})
    assert pairs == {(1, d) for d in range(2, 41)}
