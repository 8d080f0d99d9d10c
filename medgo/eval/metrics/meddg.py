"""MedDG: next doctor response generation, scored by entity F1 and the MedDG authors' BLEU.

Gold (``MedDG_dev.json``) and predictions (``MedDG_test.json`` layout) are ``{id: response}``.
Entities of a response are found the way the MedDG authors do it for both reference and
hypothesis: every vocabulary entity (``entity_list.txt``) that occurs in the text, plus the
four attribute entities (时长, 位置, 性质, 诱因) detected by keyword rules.  Entity P/R/F1 is
micro-averaged over all responses.

BLEU follows the authors' generation metric: characters as tokens, NLTK ``sentence_bleu`` with
``SmoothingFunction().method7`` per response, a hypothesis of 4 tokens or fewer scores 0, and
the mean over responses.  With that smoothing a perfect hypothesis scores above 1 (BLEU-1 of an
exact copy is 4/3), which is why the task's score is the entity F1 and BLEU is reported next to it.
"""

from __future__ import annotations

import re
from pathlib import Path

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from medgo.data.cblue_gold import strip_speaker
from medgo.data.files import as_str, read_json
from medgo.eval.metrics.common import pct, prf

ATTRIBUTE_RULES = {
    "时长": re.compile(r"多久|多长时间|几天了|几周了|几个月了|有多长|持续多少天"),
    "位置": re.compile(r"哪个部位|哪个位置|什么部位|什么位置|哪里(疼|痛|不舒服)|具体部位|具体位置|哪一块"),
    "性质": re.compile(r"绞痛|隐痛|胀痛|钝痛|刺痛|烧灼样|(什么样|哪种|怎么样|怎样)的(疼|痛)|疼痛的性质"),
    "诱因": re.compile(r"诱因|(吃|喝|进食).{0,8}(后|以后).{0,4}(疼|痛|加重|难受|不舒服)|饮食(规律|习惯)|熬夜|受凉|喝酒|吸烟|压力大"),
}
SMOOTHING = SmoothingFunction().method7
BLEU_WEIGHTS = {"bleu-1": (1, 0, 0, 0), "bleu-2": (0, 1, 0, 0), "bleu-4": (0, 0, 0, 1), "bleu-avg": (0.25, 0.25, 0.25, 0.25)}


def read_meddg_pred(path) -> dict:
    """``{id: response}`` from the submission layout (``MedDG_test.json`` with ``output`` filled in)."""
    data = read_json(path)
    if isinstance(data, dict):  # also accept a plain {id: response} mapping
        return {as_str(k): strip_speaker(v) for k, v in data.items() if isinstance(v, str)}
    return {as_str(r.get("id")): strip_speaker(r.get("output")) for r in data if isinstance(r, dict) and r.get("output") is not None} if isinstance(data, list) else {}


def read_meddg_vocab(gold_path) -> dict:
    """``{"entities": [...]}`` from ``entity_list.txt`` beside the gold file (empty list if absent)."""
    p = Path(gold_path).with_name("entity_list.txt")
    if not p.exists():
        return {"entities": []}
    return {"entities": [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]}


def response_entities(text: str, entities) -> set[str]:
    """Vocabulary entities occurring in ``text`` plus the attribute entities its keywords reveal."""
    found = {e for e in entities if e and e not in ATTRIBUTE_RULES and e in text}
    found |= {name for name, rule in ATTRIBUTE_RULES.items() if rule.search(text)}
    return found


def score_meddg(gold: dict, pred: dict, entities=()) -> dict:
    """Entity micro-F1 (the score) and the authors' BLEU-1/2/4/avg (character tokens, method7 smoothing)."""
    entities = list(entities)
    n_true = n_pred = n_right = 0
    bleu = {k: 0.0 for k in BLEU_WEIGHTS}
    for key, ref in gold.items():
        hyp = pred.get(key, "")
        r_ents, h_ents = response_entities(ref, entities), response_entities(hyp, entities)
        n_true += len(r_ents)
        n_pred += len(h_ents)
        n_right += len(r_ents & h_ents)
        ref_toks, hyp_toks = list(ref), list(hyp)
        for name, w in BLEU_WEIGHTS.items():
            if len(hyp_toks) > 4 and ref_toks:
                bleu[name] += sentence_bleu([ref_toks], hyp_toks, w, smoothing_function=SMOOTHING)
    n = len(gold) or 1
    p, r, f = prf(n_right, n_pred, n_true)
    return {
        "score": pct(f), "metric": "entity_f1", "entity_precision": pct(p), "entity_recall": pct(r), "entity_f1": pct(f),
        **{k: pct(v / n) for k, v in bleu.items()},
        "n_gold_units": n_true, "n_pred_units": n_pred,
        "n_gold": len(gold), "n_pred": sum(1 for k in gold if k in pred), "n_missing": sum(1 for k in gold if k not in pred),
        "out_of_label_set": 0,
    }
