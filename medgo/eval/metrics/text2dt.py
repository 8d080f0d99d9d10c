"""Text2DT: medical decision trees, scored with the CHIP-2022 Text2DT tree metrics.

A tree is its nodes in pre-order, each ``{"role": "C"|"D", "triples": [[s, r, o], ...],
"logical_rel": "and"|"or"|"null"}``; a condition node (C) has a left (condition holds) and a
right child, a decision node (D) is a leaf.  Per tree the Text2DT evaluation counts:

* tree accuracy — the predicted node sequence equals the gold one;
* triple P/R/F1 — distinct (lower-cased) triples of the whole tree;
* node P/R/F1 — nodes with triples, matched on role, logical relation and triple set;
* decision-path P/R/F1 — root-to-leaf paths (nodes and the L/R turns between them);
* tree edit distance — node-by-node differences of role, logical relation and triples, walking
  both trees together; ``edit_ratio`` = 1 − distance / (maximal distance).

Counts are summed over trees (each starting at 1e-6, as the reference script does) before the
ratios are taken.  ``variant="chip2022"`` follows the Text2DT authors' evaluation script (the
native score is the decision-path F1); ``variant="promptcblue"`` the PromptCBLUE copy, whose
tree accuracy compares logical relations, whose missing nodes count as ``logical_rel="null"``
and whose headline number is the edit ratio.
"""

from __future__ import annotations

import copy

from medgo.data.cblue_gold import TEXT2DT_RELATIONS, read_text2dt_gold
from medgo.data.files import as_str
from medgo.eval.metrics.common import pct

ROLES = ("C", "D")
LOGICAL_RELS = ("and", "or", "null")
EPS = 0.000001


def normalise_tree(tree) -> tuple[list[dict], int]:
    """Nodes with lower-cased triple tuples; returns ``(nodes, n_invalid)`` (bad triples/roles counted, bad triples dropped)."""
    nodes, bad = [], 0
    for n in tree if isinstance(tree, list) else []:
        if not isinstance(n, dict):
            bad += 1
            continue
        triples = []
        for t in n.get("triples") or []:
            if isinstance(t, (list, tuple)) and len(t) == 3:
                triples.append(tuple(as_str(x).lower() for x in t))
                if as_str(t[1]) not in TEXT2DT_RELATIONS:
                    bad += 1
            else:
                bad += 1
        role, rel = as_str(n.get("role")), as_str(n.get("logical_rel", "null"))
        bad += (role not in ROLES) + (rel not in LOGICAL_RELS)
        nodes.append({"role": role, "triples": triples, "logical_rel": rel})
    return nodes, bad


def node_matrix(tree: list[dict]) -> list[list]:
    """``matrix[i][j]`` is ``'F'``/``'L'``/``'R'`` when node j is the parent/left/right child of node i.

    Built by repeatedly folding a C node whose next two un-folded nodes are D into a D, as the
    reference script does; an ill-formed sequence stops after 100 passes.
    """
    roles = [n["role"] for n in tree]
    size = len(roles)
    matrix: list[list] = [[0] * size for _ in range(size)]
    count = 0
    flag = None
    while roles and roles[0] != "D":
        for i in range(size):
            if roles[i] == "C":
                flag, leaf1 = 0, 0
                for j in range(i + 1, size):
                    if roles[j] == "D" and flag == 0:
                        flag, leaf1 = 1, j
                    elif roles[j] == "X":
                        continue
                    elif roles[j] == "D" and flag == 1:
                        roles[i] = "D"
                        matrix[leaf1][i] = matrix[j][i] = "F"
                        matrix[i][leaf1], matrix[i][j] = "L", "R"
                        for k in range(i + 1, j + 1):
                            roles[k] = "X"
                        flag = 2
                        break
                    elif roles[j] == "C":
                        break
            if flag == 2:
                break
        count += 1
        if count > 100:
            break
    return matrix


def _node_dis(a: dict, b: dict | None, missing_rel: str) -> int:
    if b is None:
        b = {"role": "", "triples": [], "logical_rel": missing_rel}
    dis = (a["role"] != b["role"]) + (a["logical_rel"] != b["logical_rel"])
    return dis + len(set(a["triples"]) ^ set(b["triples"]))


def _same_node(a: dict, b: dict) -> bool:
    return a["role"] == b["role"] and a["logical_rel"] == b["logical_rel"] and set(a["triples"]) == set(b["triples"])


def _is_leaf(row) -> bool:
    return "L" not in row and "R" not in row


def _edit_distance(pt, gt, pm, gm, missing_rel: str) -> int:
    dis = 0
    s1, s2 = [0], [0]
    try:
        while s1:
            a, b = s1.pop(), s2.pop()
            if _is_leaf(pm[a]) and not _is_leaf(gm[b]):
                dis += _node_dis(pt[a], gt[b], missing_rel)
                tmp = [gm[b].index("R"), gm[b].index("L")]
                while tmp:
                    t = tmp.pop()
                    dis += _node_dis(gt[t], None, missing_rel)
                    if "L" in gm[t] and "R" in gm[t]:
                        tmp += [gm[t].index("R"), gm[t].index("L")]
            elif ("L" in pm[a] and "R" in pm[a]) and ("L" not in gm[b] or "R" not in gm[b]):
                dis += _node_dis(pt[a], gt[b], missing_rel)
                tmp = [pm[a].index("R"), pm[a].index("L")]
                while tmp:
                    t = tmp.pop()
                    dis += _node_dis(pt[t], None, missing_rel)
                    if "L" in pm[t] and "R" in pm[t]:
                        tmp += [pm[t].index("R"), pm[t].index("L")]
            elif _is_leaf(pm[a]) and _is_leaf(gm[b]):
                dis += _node_dis(pt[a], gt[b], missing_rel)
            else:
                s1 += [pm[a].index("R"), pm[a].index("L")]
                s2 += [gm[b].index("R"), gm[b].index("L")]
                dis += _node_dis(pt[a], gt[b], missing_rel)
    except (ValueError, IndexError):
        pass  # an ill-formed tree: the distance found so far stands, as in the reference script
    return dis


def _paths(tree, matrix, paths: list) -> None:
    """Root-to-leaf paths appended to ``paths`` one by one (a failure leaves the ones found so far)."""
    for leaf in [i for i, row in enumerate(matrix) if _is_leaf(row)]:
        node, path = leaf, [tree[leaf]]
        while node != 0:
            parent = matrix[node].index("F")
            path += [matrix[parent][node], tree[parent]]
            node = parent
        paths.append(path)


def _path_equal(p1, p2) -> bool:
    if len(p1) != len(p2):
        return False
    for a, b in zip(p1, p2):
        if isinstance(a, dict) and isinstance(b, dict):
            if not _same_node(a, b):
                return False
        elif a != b:
            return False
    return True


def _decision_paths(pt, gt, pm, gm) -> tuple[int, int, int]:
    paths1: list = []
    paths2: list = []
    try:
        _paths(pt, pm, paths1)
        _paths(gt, gm, paths2)
        res = sum(1 for p1 in paths1 if any(_path_equal(p1, p2) for p2 in paths2))
    except (ValueError, IndexError):
        res = 0
    return res, len(paths1), len(paths2)


def eval_tree(pred_tree: list[dict], gold_tree: list[dict], variant: str = "chip2022") -> dict:
    """The per-tree counts of the reference script (trees already passed through :func:`normalise_tree`)."""
    pm, gm = node_matrix(pred_tree), node_matrix(gold_tree)
    if variant == "promptcblue":
        tree_ok = len(pred_tree) == len(gold_tree) and all(_same_node(a, b) for a, b in zip(pred_tree, gold_tree))
    else:  # the CHIP-2022 script compares role and triples only
        tree_ok = len(pred_tree) == len(gold_tree) and all(
            a["role"] == b["role"] and set(a["triples"]) == set(b["triples"]) for a, b in zip(pred_tree, gold_tree))
    pt_set = {t for n in pred_tree for t in n["triples"]}
    gt_set = {t for n in gold_tree for t in n["triples"]}
    cp, pp, gp = _decision_paths(copy.deepcopy(pred_tree), copy.deepcopy(gold_tree), pm, gm)
    missing_rel = "null" if variant == "promptcblue" else ""
    edit = _edit_distance(pred_tree, gold_tree, pm, gm, missing_rel) if pred_tree and gold_tree else (
        sum(_node_dis(n, None, missing_rel) for n in pred_tree + gold_tree))
    pn = [n for n in pred_tree if n["triples"]]
    gn = [n for n in gold_tree if n["triples"]]
    return {
        "tree": 0 if not pred_tree else 1, "tree_correct": int(tree_ok),
        "triple_correct": len(pt_set & gt_set), "triple_pred": len(pt_set), "triple_gold": len(gt_set),
        "path_correct": cp, "path_pred": pp, "path_gold": gp, "edit": edit,
        "node_correct": sum(1 for a in pn for b in gn if _same_node(a, b)), "node_pred": len(pn), "node_gold": len(gn),
    }


def _f1(c: float, p: float, g: float) -> float:
    return 2 * (c / p) * (c / g) / (c / p + c / g)


COUNT_KEYS = ("tree", "tree_correct", "triple_correct", "triple_pred", "triple_gold", "path_correct", "path_pred",
              "path_gold", "node_correct", "node_pred", "node_gold")  # fmt: skip


def aggregate(counts: list[dict]) -> dict:
    """Tree metrics (0–100) from per-tree :func:`eval_tree` counts, summed from 1e-6 as the reference does."""
    acc = {k: EPS + sum(c[k] for c in counts) for k in COUNT_KEYS}
    edit = sum(c["edit"] for c in counts)
    max_edit = sum((c["triple_pred"] + c["node_pred"] * 2) + (c["triple_gold"] + c["node_gold"] * 2) for c in counts)
    return {
        "tree_accuracy": pct(acc["tree_correct"] / acc["tree"]),
        "triple_f1": pct(_f1(acc["triple_correct"], acc["triple_pred"], acc["triple_gold"])),
        "node_f1": pct(_f1(acc["node_correct"], acc["node_pred"], acc["node_gold"])),
        "path_f1": pct(_f1(acc["path_correct"], acc["path_pred"], acc["path_gold"])),
        "edit_ratio": pct(1 - edit / max_edit) if max_edit else 0.0,
        "edit_distance_mean": round(edit / acc["tree"], 4),
    }


def score_trees(gold: dict, pred: dict, variant: str = "chip2022") -> dict:
    """Aggregate tree metrics over ``gold`` (``{key: tree}``); a missing prediction is an empty tree."""
    counts, n_oos = [], 0
    for key, gtree in gold.items():
        g, _ = normalise_tree(gtree)
        p, bad = normalise_tree(pred.get(key, []))
        n_oos += bad
        counts.append(eval_tree(p, g, variant))
    out = {
        **aggregate(counts),
        "n_gold": len(gold), "n_pred": sum(1 for k in gold if k in pred),
        "n_missing": sum(1 for k in gold if k not in pred), "out_of_label_set": n_oos,
    }
    primary = "edit_ratio" if variant == "promptcblue" else "path_f1"
    return {"score": out[primary], "metric": primary, **out}


read_text2dt_pred = read_text2dt_gold


def score_text2dt(gold: dict, pred: dict) -> dict:
    """Native Text2DT scores (CHIP-2022 script); the score is the decision-path F1."""
    return score_trees(gold, pred, "chip2022")
