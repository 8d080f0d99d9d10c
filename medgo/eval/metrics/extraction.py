"""Information-extraction tasks: CMeEE-V2, CMeIE, CMedCausal, CHIP-CDEE, CHIP-CDN, CHIP-MDCFNPC.

Each task has ``read_*_gold(path)``, ``read_*_pred(path)`` (the official submission layout,
which is the test file with its label fields filled in) and a pure ``score_*(gold, pred)``.
Gold and predictions are dicts keyed the same way (record text for the text-keyed tasks, as
the official checkers key them; record id otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from medgo.data.cblue_gold import (
    CAUSAL_RELATIONS,
    CDEE_TENDENCIES,
    CMEEE_TYPES,
    CMEIE_PREDICATES,
    MDCFNPC_ATTRS,
    cmeee_entities,
    read_causal_gold,
    read_cdee_gold,
    read_cdn_gold,
    read_cmeie_gold,
    read_mdcfnpc_gold,
)
from medgo.data.files import keyed_by_text, read_tsv, records
from medgo.eval.metrics.common import classification_scores, pct, prf, set_f1


def _pair_counts(gold: dict, pred: dict) -> dict:
    return {
        "n_gold": len(gold),
        "n_pred": sum(1 for k in gold if k in pred),
        "n_missing": sum(1 for k in gold if k not in pred),
        "n_extra": sum(1 for k in pred if k not in gold),
    }


# --------------------------------------------------------------------------- CMeEE-V2


def read_cmeee_pred(path) -> dict:
    """``{text_key: [(start, end_inclusive, type)]}`` from a ``CMeEE-V2_test.json``-layout file."""
    recs = records(path)
    return {k: cmeee_entities(r) for k, r in zip(keyed_by_text(r.get("text", "") for r in recs), recs)}


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

