"""IMCS-V2 (one dialogue file, four tasks): NER, DAC, SR, MRG — scored as the IMCS-V2 authors' scripts do.

The gold for every task comes from ``IMCS-V2_dev.json`` (dialogue id -> record); predictions are
the CBLUE submission layouts:

* NER: ``{dialogue_id: {sentence_id: "B-Symptom I-Symptom O ..."}}`` (one tag per character);
* DAC: ``{dialogue_id: {sentence_id: act}}``;
* SR:  ``{dialogue_id: {sentence_id: {normalised_symptom: "0"|"1"|"2"}, "global": {...}}}``
  (``global``, the dialogue-level prediction, is optional);
* MRG: ``{dialogue_id: {"主诉": ..., "现病史": ..., "辅助检查": ..., "既往史": ..., "诊断": ..., "建议": ...}}``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from nltk.translate.bleu_score import corpus_bleu
from rouge import Rouge

from medgo.data.cblue_gold import DAC_LABELS, MRG_SECTIONS, NER_TAGS, SR_LABELS, bio_chunks
from medgo.data.files import as_str, read_json
from medgo.eval.metrics.common import classification_scores, pct, prf


def _nested(path) -> dict:
    """A ``{dialogue_id: {sentence_id: value}}`` prediction file (non-dict dialogues are dropped)."""
    data = read_json(path)
    if not isinstance(data, dict):
        return {}
    return {as_str(d): {as_str(s): v for s, v in sents.items()} for d, sents in data.items() if isinstance(sents, dict)}


# --------------------------------------------------------------------------- NER


def read_ner_pred(path) -> dict:
    """``{(dialogue_id, sentence_id): [tags]}`` from ``IMCS-V2-NER_test.json`` layout."""
    return {(d, s): as_str(v).split() for d, sents in _nested(path).items() for s, v in sents.items()}


def score_ner(gold: dict, pred: dict) -> dict:
    """Entity-level micro-F1 over BIO chunks (type, start, end), per sentence; per-type F1 too.

    A predicted tag sequence whose length differs from the sentence is scored as no entities
    (the authors' script would stop with an assertion) and counted in ``n_length_mismatch``.
    """
    origins, founds, rights = [], [], []
    n_mismatch = n_oos = 0
    for key, gtags in gold.items():
        g = bio_chunks(gtags)
        ptags = pred.get(key)
        if ptags is not None and len(ptags) != len(gtags):
            n_mismatch += 1
            ptags = None
        if ptags is not None:
            n_oos += sum(1 for t in ptags if t not in NER_TAGS)
        p = bio_chunks(ptags) if ptags is not None else []
        origins.extend(g)
        founds.extend(p)
        rights.extend(c for c in p if c in g)
    o, f_, r = Counter(c[0] for c in origins), Counter(c[0] for c in founds), Counter(c[0] for c in rights)
    per_type = {t: pct(prf(r.get(t, 0), f_.get(t, 0), n)[2]) for t, n in o.items()}
    p, rc, f1 = prf(len(rights), len(founds), len(origins))
    return {
        "score": pct(f1), "metric": "entity_f1", "precision": pct(p), "recall": pct(rc), "f1": pct(f1),
        "per_type_f1": per_type, "n_gold_units": len(origins), "n_pred_units": len(founds),
        "n_gold": len(gold), "n_pred": sum(1 for k in gold if k in pred), "n_missing": sum(1 for k in gold if k not in pred),
        "n_length_mismatch": n_mismatch, "out_of_label_set": n_oos,
    }


# --------------------------------------------------------------------------- DAC


def read_dac_pred(path) -> dict:
    return {(d, s): as_str(v).strip() for d, sents in _nested(path).items() for s, v in sents.items() if as_str(v).strip()}


def score_dac(gold: dict, pred: dict) -> dict:
    """Accuracy over utterances (CBLUE); macro P/R/F1 over the 16 acts as the authors also report."""
    res = classification_scores(gold, pred, DAC_LABELS)
    return {"score": res["accuracy"], "metric": "accuracy", **res}


# --------------------------------------------------------------------------- SR


def read_sr_pred(path) -> dict:
    """Same shape as :func:`read_sr_gold`; ``dialogue`` holds the optional ``global`` entries."""
    utt, dia = {}, {}
    for did, sents in _nested(path).items():
        for sid, v in sents.items():
            v = {as_str(k): as_str(x) for k, x in v.items()} if isinstance(v, dict) else {}
            if sid == "global":
                dia[did] = v
            else:
                utt[(did, sid)] = v
    return {"utterance": utt, "dialogue": dia}


def read_sr_vocab(gold_path) -> dict:
    """``{"vocab": normalised symptoms}``: element 0 of ``mappings.json`` beside the gold file (None if absent)."""
    p = Path(gold_path).with_name("mappings.json")
    if not p.exists():
        return {"vocab": None}
    data = read_json(p)
    return {"vocab": set(data[0]) if isinstance(data, list) and data and isinstance(data[0], dict) else None}


def _sr_micro(gold: dict, pred: dict, vocab) -> tuple[dict, int]:
    """Micro-F1 of the authors' multi-label vectors (one slot per in-vocabulary symptom and type)."""
    g_units, p_units = set(), set()
    n_oos = 0
    for key, gsyms in gold.items():
        g_units |= {(key, s, t) for s, t in gsyms.items() if (vocab is None or s in vocab) and t in SR_LABELS}
        for s, t in (pred.get(key) or {}).items():
            if t not in SR_LABELS or (vocab is not None and s not in vocab):
                n_oos += 1
                continue
            p_units.add((key, s, t))
    tp = len(g_units & p_units)
    p, r, f = prf(tp, len(p_units), len(g_units))
    return {"precision": pct(p), "recall": pct(r), "f1": pct(f), "n_gold_units": len(g_units), "n_pred_units": len(p_units)}, n_oos


def score_sr(gold: dict, pred: dict, vocab=None) -> dict:
    """Utterance-level micro-F1 (the score) and dialogue-level micro-F1 over (symptom, type) labels.

    Symptoms outside ``vocab`` (``mappings.json``) have no slot in the authors' label vectors, so
    they are ignored on both sides and counted when predicted; so are types other than 0/1/2.
    """
    vocab = set(vocab) if vocab else None
    if "utterance" not in pred and "dialogue" not in pred:  # a plain {(dialogue_id, sentence_id): {...}} from parsing
        pred = {"utterance": pred, "dialogue": {}}
    utt, oos_u = _sr_micro(gold["utterance"], pred.get("utterance", {}), vocab)
    out = {
        "score": utt["f1"], "metric": "utterance_micro_f1",
        "utterance_f1": utt["f1"], "utterance_precision": utt["precision"], "utterance_recall": utt["recall"],
        "n_gold_units": utt["n_gold_units"], "n_pred_units": utt["n_pred_units"],
        "n_gold": len(gold["utterance"]),
        "n_pred": sum(1 for k in gold["utterance"] if k in pred.get("utterance", {})),
        "n_missing": sum(1 for k in gold["utterance"] if k not in pred.get("utterance", {})),
        "out_of_label_set": oos_u,
    }
    if pred.get("dialogue"):
        dia, oos_d = _sr_micro(gold["dialogue"], pred["dialogue"], vocab)
        out.update({"dialogue_f1": dia["f1"], "dialogue_precision": dia["precision"], "dialogue_recall": dia["recall"]})
        out["out_of_label_set"] += oos_d
    else:
        out["dialogue_f1"] = None
    return out


# --------------------------------------------------------------------------- MRG


def report_text(report) -> str:
    """Sections as ``key：value`` concatenated in the canonical order (then any other keys), as the authors' ``process``."""
    if isinstance(report, str):
        return report
    if not isinstance(report, dict):
        return ""
    keys = [k for k in MRG_SECTIONS if k in report] + [k for k in report if k not in MRG_SECTIONS]
    return "".join(f"{k}：{as_str(report[k])}" for k in keys)


def read_mrg_pred(path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict):
        return {}
    return {as_str(k): v for k, v in data.items() if isinstance(v, (dict, str))}


def _rouge_vs_refs(hyp: str, refs: list[str]) -> tuple[float, float, float]:
    """The authors' ``compute_rouge``: the ``rouge`` package on character tokens, F averaged over references; 0 on empty input."""
    if not refs:
        return 0.0, 0.0, 0.0
    h = " ".join(hyp)
    try:
        scores = [Rouge().get_scores(h, " ".join(r))[0] for r in refs]
    except ValueError:
        return 0.0, 0.0, 0.0
    return tuple(sum(s[m]["f"] for s in scores) / len(refs) for m in ("rouge-1", "rouge-2", "rouge-l"))  # type: ignore[return-value]


def score_mrg(gold: dict, pred: dict) -> dict:
    """Mean of ROUGE-1/2/L F (character level, averaged over the two references, then over dialogues).

    Missing dialogues score 0.  BLEU-2/4 (NLTK ``corpus_bleu``, characters, both references) as in
    the authors' MRG evaluation are reported alongside.
    """
    r1 = r2 = rl = 0.0
    hyps, refss = [], []
    for did, reports in gold.items():
        hyp = report_text(pred.get(did, ""))
        refs = [report_text(r) for r in reports]
        a, b, c = _rouge_vs_refs(hyp, refs)
        r1, r2, rl = r1 + a, r2 + b, rl + c
        if refs:
            hyps.append(list("".join(hyp.split())))
            refss.append([list("".join(r.split())) for r in refs])
    n = len(gold) or 1
    r1, r2, rl = r1 / n, r2 / n, rl / n
    score = (r1 + r2 + rl) / 3
    return {
        "score": pct(score), "metric": "mean_rouge", "rouge-1": pct(r1), "rouge-2": pct(r2), "rouge-l": pct(rl),
        "bleu-2": pct(corpus_bleu(refss, hyps, (0.5, 0.5))) if hyps else 0.0,
        "bleu-4": pct(corpus_bleu(refss, hyps, (0.25, 0.25, 0.25, 0.25))) if hyps else 0.0,
        "n_gold": len(gold), "n_pred": sum(1 for k in gold if k in pred), "n_missing": sum(1 for k in gold if k not in pred),
        "out_of_label_set": sum(1 for k in gold if isinstance(pred.get(k), dict) and set(pred[k]) - set(MRG_SECTIONS)),
    }
