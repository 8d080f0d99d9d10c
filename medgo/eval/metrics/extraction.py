"""Information-extraction tasks: CMeEE-V2, CMeIE, CMedCausal, CHIP-CDEE, CHIP-CDN, CHIP-MDCFNPC.

Each task has ``read_*_gold(path)``, ``read_*_pred(path)`` (the official submission layout,
which is the test file with its label fields filled in) and a pure ``score_*(gold, pred)``.
Gold and predictions are dicts keyed the same way (record text for the text-keyed tasks, as
the official checkers key them; record id otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from medgo.eval.metrics.common import (
    as_str,
    classification_scores,
    keyed_by_text,
    pct,
    prf,
    read_json_or_jsonl,
    read_tsv,
    set_f1,
)

CMEEE_TYPES = ("dis", "sym", "dru", "equ", "pro", "bod", "ite", "mic", "dep")
CMEIE_PREDICATES = (
    "预防", "阶段", "就诊科室", "同义词", "辅助治疗", "化疗", "放射治疗", "手术治疗", "实验室检查", "影像学检查",
    "辅助检查", "组织学检查", "内窥镜检查", "筛查", "多发群体", "发病率", "发病年龄", "多发地区", "发病性别倾向",
    "死亡率", "多发季节", "传播途径", "并发症", "病理分型", "相关（导致）", "鉴别诊断", "相关（转化）", "相关（症状）",
    "临床表现", "治疗后症状", "侵及周围组织转移的症状", "病因", "高危因素", "风险评估因素", "病史", "遗传因素",
    "发病机制", "病理生理", "药物治疗", "发病部位", "转移部位", "外侵部位", "预后状况", "预后生存率",
)  # fmt: skip
CAUSAL_RELATIONS = (1, 2, 3)
CDEE_TENDENCIES = ("", "否定", "不确定")
MDCFNPC_ATTRS = ("阳性", "阴性", "其他", "不标注")


def _records(path) -> list[dict]:
    data = read_json_or_jsonl(path)
    if isinstance(data, dict):  # a single record
        data = [data]
    return [r for r in data if isinstance(r, dict)]


def _safe_int(x):
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


def _pair_counts(gold: dict, pred: dict) -> dict:
    return {
        "n_gold": len(gold),
        "n_pred": sum(1 for k in gold if k in pred),
        "n_missing": sum(1 for k in gold if k not in pred),
        "n_extra": sum(1 for k in pred if k not in gold),
    }


# --------------------------------------------------------------------------- CMeEE-V2


def _cmeee_entities(record: dict) -> list[tuple[int, int, str]]:
    out = []
    for e in record.get("entities") or []:
        if not isinstance(e, dict):
            continue
        s, t = _safe_int(e.get("start_idx")), _safe_int(e.get("end_idx"))
        if s is None or t is None:
            continue
        out.append((s, t, as_str(e.get("type"))))
    return out


def read_cmeee_gold(path) -> dict:
    """``{text_key: {"text": str, "entities": [(start, end_inclusive, type)]}}``."""
    recs = _records(path)
    return {k: {"text": r.get("text", ""), "entities": _cmeee_entities(r)} for k, r in zip(keyed_by_text(r.get("text", "") for r in recs), recs)}


def read_cmeee_pred(path) -> dict:
    """``{text_key: [(start, end_inclusive, type)]}`` from a ``CMeEE-V2_test.json``-layout file."""
    recs = _records(path)
    return {k: _cmeee_entities(r) for k, r in zip(keyed_by_text(r.get("text", "") for r in recs), recs)}


def score_cmeee(gold: dict, pred: dict) -> dict:
    """Strict micro-F1 over (record, start, end, type); ``end`` is inclusive, so a span must match exactly."""
    g_units, p_units = set(), set()
    n_dup = n_oos = 0
    for key, item in gold.items():
        g_units |= {(key, *e) for e in item["entities"]}
        ents = pred.get(key, [])
        n_dup += len(ents) - len(set(ents))
        n_oos += sum(1 for e in ents if e[2] not in CMEEE_TYPES)
        p_units |= {(key, *e) for e in ents}
    r = set_f1(g_units, p_units)
    return {"score": r["f1"], "metric": "micro_f1", **r, **_pair_counts(gold, pred), "n_duplicates": n_dup, "out_of_label_set": n_oos}


# --------------------------------------------------------------------------- CMeIE


def _spo_triples(record: dict) -> list[tuple[str, str, str]]:
    out = []
    for s in record.get("spo_list") or []:
        if not isinstance(s, dict):
            continue
        obj = s.get("object")
        if isinstance(obj, dict):
            obj = obj.get("@value")
        out.append((as_str(s.get("subject")), as_str(s.get("predicate")), as_str(obj)))
    return out


def read_cmeie_gold(path) -> dict:
    """``{text_key: [(subject, predicate, object)]}`` from ``CMeIE_dev.jsonl``."""
    recs = _records(path)
    return {k: _spo_triples(r) for k, r in zip(keyed_by_text(r.get("text", "") for r in recs), recs)}


read_cmeie_pred = read_cmeie_gold


def score_cmeie(gold: dict, pred: dict) -> dict:
    """Micro-F1 over exact (record, subject, predicate, object) triples."""
    g_units, p_units = set(), set()
    n_dup = n_oos = 0
    for key, triples in gold.items():
        g_units |= {(key, *t) for t in triples}
        ps = pred.get(key, [])
        n_dup += len(ps) - len(set(ps))
        n_oos += sum(1 for t in ps if t[1] not in CMEIE_PREDICATES)
        p_units |= {(key, *t) for t in ps}
    r = set_f1(g_units, p_units)
    return {"score": r["f1"], "metric": "micro_f1", **r, **_pair_counts(gold, pred), "n_duplicates": n_dup, "out_of_label_set": n_oos}


# --------------------------------------------------------------------------- CMedCausal


def _span(m, text: str) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` of a mention; located in ``text`` (first occurrence) when indices are absent."""
    if not isinstance(m, dict):
        return None
    s, e = _safe_int(m.get("start_idx")), _safe_int(m.get("end_idx"))
    if s is not None and e is not None:
        return s, e
    mention = as_str(m.get("mention"))
    if mention and mention in text:
        s = text.index(mention)
        return s, s + len(mention)
    return None


def _causal_units(record: dict) -> list[tuple]:
    text = as_str(record.get("text"))
    out = []
    for r in record.get("relation_of_mention") or []:
        if not isinstance(r, dict):
            continue
        rel = _safe_int(r.get("relation"))
        head, tail = _span(r.get("head"), text), r.get("tail")
        if head is None or not isinstance(tail, dict):
            continue
        if rel in (1, 3):
            t = _span(tail, text)
            if t is not None:
                out.append((head, rel, t))
        elif rel == 2:
            sub_rel = _safe_int(tail.get("relation"))
            sh, st = _span(tail.get("head"), text), _span(tail.get("tail"), text)
            if sh is not None and st is not None:
                out.append((head, 2, (sh, sub_rel, st)))
        else:
            out.append((head, rel, _span(tail, text)))
    return out


def read_causal_gold(path) -> dict:
    """``{text_key: [relation units]}``; a unit is ``((hs, he), 1|3, (ts, te))`` or ``((hs, he), 2, ((s, e), 1, (s, e)))``."""
    recs = _records(path)
    return {k: _causal_units(r) for k, r in zip(keyed_by_text(r.get("text", "") for r in recs), recs)}


read_causal_pred = read_causal_gold


def score_causal(gold: dict, pred: dict) -> dict:
    """Macro-F1 over the three relation types (causal, conditional, hypernym): per-type micro-F1, summed, divided by 3.

    Arguments are matched by their character spans (end exclusive), as the CBLUE baseline scorer does.
    """
    per = {}
    n_dup = n_oos = 0
    for key in gold:
        ps = pred.get(key, [])
        n_dup += len(ps) - len(set(ps))
        n_oos += sum(1 for u in ps if u[1] not in CAUSAL_RELATIONS)
    for rel in CAUSAL_RELATIONS:
        g = {(k, u) for k, us in gold.items() for u in us if u[1] == rel}
        p = {(k, u) for k, us in pred.items() if k in gold for u in us if u[1] == rel}
        per[rel] = set_f1(g, p)
    g_all = {(k, u) for k, us in gold.items() for u in us}
    p_all = {(k, u) for k, us in pred.items() if k in gold for u in us}
    micro = set_f1(g_all, p_all)
    macro = round(sum(per[r]["f1"] for r in CAUSAL_RELATIONS) / 3, 4)
    return {
        "score": macro,
        "metric": "macro_f1",
        "macro_f1": macro,
        "f1_causal": per[1]["f1"],
        "f1_conditional": per[2]["f1"],
        "f1_hypernym": per[3]["f1"],
        "micro_f1": micro["f1"],
        "n_gold_units": micro["n_gold_units"],
        "n_pred_units": micro["n_pred_units"],
        **_pair_counts(gold, pred),
        "n_duplicates": n_dup,
        "out_of_label_set": n_oos,
    }


# --------------------------------------------------------------------------- CHIP-CDEE


def _events(record: dict) -> list[tuple]:
    out = []
    for e in record.get("event") or []:
        if not isinstance(e, dict):
            continue
        ch = e.get("character") or []
        an = e.get("anatomy_list") or []
        ch = [ch] if isinstance(ch, str) else ch
        an = [an] if isinstance(an, str) else an
        out.append((as_str(e.get("core_name")), as_str(e.get("tendency")), frozenset(map(as_str, ch)), frozenset(map(as_str, an))))
    return out


def read_cdee_gold(path) -> dict:
    """``{id: [(core_name, tendency, frozenset(character), frozenset(anatomy_list))]}``."""
    return {as_str(r.get("id")): _events(r) for r in _records(path)}


read_cdee_pred = read_cdee_gold


def score_cdee(gold: dict, pred: dict) -> dict:
    """Event-level micro-F1: an event counts when all four fields match (list fields as sets)."""
    g_units, p_units = set(), set()
    g_core, p_core = set(), set()
    n_dup = n_oos = 0
    for key, evs in gold.items():
        g_units |= {(key, e) for e in evs}
        g_core |= {(key, e[0]) for e in evs}
        ps = pred.get(key, [])
        n_dup += len(ps) - len(set(ps))
        n_oos += sum(1 for e in ps if e[1] not in CDEE_TENDENCIES)
        p_units |= {(key, e) for e in ps}
        p_core |= {(key, e[0]) for e in ps}
    r = set_f1(g_units, p_units)
    return {"score": r["f1"], "metric": "micro_f1", **r, "core_name_f1": set_f1(g_core, p_core)["f1"],
            **_pair_counts(gold, pred), "n_duplicates": n_dup, "out_of_label_set": n_oos}


# --------------------------------------------------------------------------- CHIP-CDN


def _terms(value) -> list[str]:
    if isinstance(value, list):
        return [as_str(v).strip() for v in value if as_str(v).strip()]
    return [t.strip() for t in as_str(value).split("##") if t.strip()]


def read_cdn_gold(path) -> dict:
    """``{text_key: [standard terms]}`` (``normalized_result`` split at ``##``)."""
    recs = _records(path)
    return {k: _terms(r.get("normalized_result")) for k, r in zip(keyed_by_text(r.get("text", "") for r in recs), recs)}


read_cdn_pred = read_cdn_gold


def read_cdn_vocab(gold_path) -> dict:
    """``{"vocab": set of standard terms}`` from ``icd10_vocab.tsv`` beside the gold file (empty when absent)."""
    p = Path(gold_path).with_name("icd10_vocab.tsv")
    if not p.exists():
        return {"vocab": None}
    return {"vocab": {row[1].strip() for row in read_tsv(p)}}


def score_cdn(gold: dict, pred: dict, vocab: Iterable[str] | None = None) -> dict:
    """Micro-F1 over (record, standard term) pairs; terms outside ``vocab`` are counted (and can only be wrong)."""
    vocab = set(vocab) if vocab else None
    g_units, p_units = set(), set()
    n_dup = n_oos = 0
    for key, terms in gold.items():
        g_units |= {(key, t) for t in terms}
        ps = pred.get(key, [])
        n_dup += len(ps) - len(set(ps))
        if vocab is not None:
            n_oos += sum(1 for t in set(ps) if t not in vocab)
        p_units |= {(key, t) for t in ps}
    r = set_f1(g_units, p_units)
    return {"score": r["f1"], "metric": "micro_f1", **r, **_pair_counts(gold, pred), "n_duplicates": n_dup, "out_of_label_set": n_oos}


# --------------------------------------------------------------------------- CHIP-MDCFNPC


def _mdcfnpc_rows(path) -> list[dict]:
    data = read_json_or_jsonl(path)
    return [d for d in (data if isinstance(data, list) else [data]) if isinstance(d, dict)]


def _mdcfnpc_units(dialogs: list[dict]) -> dict:
    out = {}
    for d in dialogs:
        did = as_str(d.get("dialog_id"))
        for s in d.get("dialog_info") or []:
            if not isinstance(s, dict):
                continue
            sid = as_str(s.get("sentence_id"))
            for n in s.get("ner") or []:
                rng = n.get("range") if isinstance(n, dict) else None
                if not isinstance(rng, (list, tuple)) or len(rng) != 2:
                    continue
                a, b = _safe_int(rng[0]), _safe_int(rng[1])
                if a is None or b is None:
                    continue
                out[(did, sid, a, b)] = as_str(n.get("attr"))
    return out


def read_mdcfnpc_gold(path) -> dict:
    """``{(dialog_id, sentence_id, start, end_exclusive): attr}`` for every annotated finding."""
    return _mdcfnpc_units(_mdcfnpc_rows(path))


read_mdcfnpc_pred = read_mdcfnpc_gold


def score_mdcfnpc(gold: dict, pred: dict) -> dict:
    """Micro-F1 over (finding, attribute) pairs; also accuracy and macro-F1 over the four attributes."""
    g_units = {(k, v) for k, v in gold.items()}
    p_units = {(k, v) for k, v in pred.items()}
    tp = len(g_units & p_units)
    p, r, f = prf(tp, len(p_units), len(g_units))
    cls = classification_scores(gold, pred, MDCFNPC_ATTRS)
    return {
        "score": pct(f), "metric": "micro_f1", "precision": pct(p), "recall": pct(r), "f1": pct(f),
        "accuracy": cls["accuracy"], "macro_f1": cls["macro_f1"], "per_class_f1": cls["per_class_f1"],
        "n_gold": len(gold), "n_pred": sum(1 for k in gold if k in pred), "n_missing": cls["n_missing"],
        "n_extra": sum(1 for k in pred if k not in gold), "out_of_label_set": cls["out_of_label_set"],
    }

