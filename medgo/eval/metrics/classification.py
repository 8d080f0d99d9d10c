"""Classification and retrieval tasks: CHIP-CTC, CHIP-STS, KUAKE-QIC, KUAKE-QTR, KUAKE-QQR, KUAKE-IR.

Gold and predictions are ``{id: label}`` (labels as strings, so ``1`` and ``"1"`` agree).
CHIP-CTC and CHIP-STS are scored by macro-F1, the KUAKE query tasks by accuracy, as CBLUE does;
KUAKE-IR by MRR@10 over every judged query.
"""

from __future__ import annotations

from pathlib import Path

from medgo.data.cblue_gold import CTC_LABELS, QIC_LABELS, QQR_LABELS, QTR_LABELS, STS_LABELS, read_labels
from medgo.data.files import read_tsv
from medgo.eval.metrics.common import classification_scores, pct


def read_label_preds(path, field: str = "label") -> dict:
    """Predictions in the submission layout; a record with an empty or absent label counts as missing."""
    return {k: v for k, v in read_labels(path, field).items() if v != ""}


def _scored(res: dict, primary: str) -> dict:
    return {"score": res[primary], "metric": primary, **res}


def score_ctc(gold: dict, pred: dict) -> dict:
    """Macro-F1 over the CTC categories (CBLUE)."""
    return _scored(classification_scores(gold, pred, CTC_LABELS), "macro_f1")


def score_sts(gold: dict, pred: dict) -> dict:
    """Macro-F1 over labels 0/1 (CBLUE)."""
    return _scored(classification_scores(gold, pred, STS_LABELS), "macro_f1")


def score_qic(gold: dict, pred: dict) -> dict:
    """Accuracy (CBLUE)."""
    return _scored(classification_scores(gold, pred, QIC_LABELS), "accuracy")


def score_qtr(gold: dict, pred: dict) -> dict:
    """Accuracy (CBLUE)."""
    return _scored(classification_scores(gold, pred, QTR_LABELS), "accuracy")


def score_qqr(gold: dict, pred: dict) -> dict:
    """Accuracy (CBLUE)."""
    return _scored(classification_scores(gold, pred, QQR_LABELS), "accuracy")


# --------------------------------------------------------------------------- KUAKE-IR


def read_ir_gold(path) -> dict:
    """``{query_id: set(relevant doc ids)}`` from a judgement file (``dev.tsv``: ``qid<TAB>doc_id`` lines)."""
    out: dict[str, set] = {}
    for row in read_tsv(path):
        out.setdefault(row[0].strip(), set()).add(row[1].strip())
    return out


def read_ir_pred(path) -> dict:
    """``{query_id: [doc ids, best first]}``.

    Reads the submission layout ``qid<TAB>d1,d2,...,d10`` and also ranked ``qid<TAB>doc_id``
    lines (one per candidate, best first), which is how the retrieval stage writes rankings.
    """
    out: dict[str, list] = {}
    for row in read_tsv(Path(path), min_cols=1):
        qid = row[0].strip()
        docs = [d.strip() for col in row[1:] for d in col.split(",") if d.strip()]
        out.setdefault(qid, []).extend(docs)
    return out


def score_ir(gold: dict, pred: dict, k: int = 10) -> dict:
    """MRR@k: mean over every judged query of 1/rank of the first relevant doc in the top k (0 if none)."""
    rr_sum = hits = n_dup = 0
    for qid, rel in gold.items():
        ranked = pred.get(qid, [])[:k]
        n_dup += len(ranked) - len(set(ranked))
        for rank, doc in enumerate(ranked, 1):
            if doc in rel:
                rr_sum += 1 / rank
                hits += 1
                break
    n = len(gold)
    return {
        "score": pct(rr_sum / n if n else 0.0),
        "metric": f"mrr@{k}",
        f"mrr@{k}": pct(rr_sum / n if n else 0.0),
        f"hit@{k}": pct(hits / n if n else 0.0),
        "n_gold": n,
        "n_pred": sum(1 for q in gold if pred.get(q)),
        "n_missing": sum(1 for q in gold if not pred.get(q)),
        "n_extra": sum(1 for q in pred if q not in gold),
        "n_duplicates": n_dup,
        "out_of_label_set": 0,
    }
