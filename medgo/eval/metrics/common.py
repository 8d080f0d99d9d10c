"""File reading and the counting primitives shared by every scorer.

Every score a scorer returns is in 0–100 (rounded to 4 decimals); counts are integers.  A
prediction that is missing, duplicated or outside the task's label set never raises: it is
scored as wrong and counted (``n_missing``, ``n_duplicates``, ``out_of_label_set``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable


# --------------------------------------------------------------------------- reading


# --------------------------------------------------------------------------- scores


def pct(x: float) -> float:
    """A 0–1 fraction as a 0–100 score rounded to 4 decimals."""
    return round(100.0 * float(x), 4)


def prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    """Precision, recall, F1 as fractions; 0 where the denominator is 0."""
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def set_f1(gold: Iterable[Hashable], pred: Iterable[Hashable]) -> dict:
    """Micro P/R/F1 between two collections of hashable units (duplicates collapse)."""
    g, p = set(gold), set(pred)
    tp = len(g & p)
    pr, rc, f = prf(tp, len(p), len(g))
    return {"precision": pct(pr), "recall": pct(rc), "f1": pct(f), "tp": tp, "n_gold_units": len(g), "n_pred_units": len(p)}


def classification_scores(gold: dict, pred: dict, label_set: Iterable[str] | None = None) -> dict:
    """Accuracy and macro P/R/F1 over ``gold`` ids (CBLUE definition, sklearn ``average="macro"``).

    The macro average runs over the labels that occur in the gold or in the valid predictions
    (the union sklearn uses).  A missing prediction or one outside ``label_set`` counts as wrong
    (it lowers recall of the gold label) but never becomes a class of its own.
    """
    labels_ok = set(label_set) if label_set is not None else None
    n_missing = n_oos = correct = 0
    pairs = []
    for key, g in gold.items():
        p = pred.get(key)
        if p is None:
            n_missing += 1
        elif labels_ok is not None and p not in labels_ok:
            n_oos += 1
            p = None
        if p == g:
            correct += 1
        pairs.append((g, p))
    classes = sorted({g for g, _ in pairs} | {p for _, p in pairs if p is not None})
    per_class = {}
    for c in classes:
        tp = sum(1 for g, p in pairs if g == c and p == c)
        n_p = sum(1 for _, p in pairs if p == c)
        n_g = sum(1 for g, _ in pairs if g == c)
        per_class[c] = prf(tp, n_p, n_g)
    k = len(classes) or 1
    macro = [sum(v[i] for v in per_class.values()) / k for i in range(3)]
    n = len(gold)
    return {
        "accuracy": pct(correct / n if n else 0.0),
        "macro_precision": pct(macro[0]),
        "macro_recall": pct(macro[1]),
        "macro_f1": pct(macro[2]),
        "per_class_f1": {c: pct(v[2]) for c, v in per_class.items()},
        "n_gold": n,
        "n_pred": sum(1 for k_ in gold if k_ in pred),
        "n_missing": n_missing,
        "out_of_label_set": n_oos,
    }
