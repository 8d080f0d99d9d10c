"""The PromptCBLUE evaluator on its JSONL format, scoring as the official evaluator does.

Gold and predictions are JSONL (or a JSON array) of ``{input, target, answer_choices, task_type,
task_dataset, sample_id}``; in a prediction file ``target`` holds the model's reply (the other
fields may be absent, they are taken from the gold record with the same ``sample_id``).
Predictions are matched to gold records by ``sample_id``.

Both replies are turned into structured answers by the reference post-processing rules
(:mod:`.promptcblue_replies`), then scored as the official ``evaluate.py`` scores them:

* extraction tasks (CMeEE-V2, CMeIE-V2, CHIP-CDN, CHIP-CDEE, CHIP-MDCFNPC, IMCS-V2-NER,
  IMCS-V2-SR, CMedCausal): micro-F1 over de-duplicated answer tuples per sample;
* CHIP-STS, KUAKE-IR, KUAKE-QTR, KUAKE-QQR: the *weighted* F1 of scikit-learn's
  ``classification_report`` (the evaluator calls it "micro"); CHIP-CTC, KUAKE-QIC, IMCS-V2-DAC:
  its macro-F1.  Labels go in as they come (``zero_division=0``), so a predicted label outside
  the task's list is a class of its own with F1 0; an empty reply counts as the list's first label;
* MedDG, IMCS-V2-MRG: ROUGE-L F of the ``rouge_chinese`` package on the tokens of transformers'
  ``BasicTokenizer`` (MRG per report section);
* Text2DT: the tree edit ratio (:mod:`.text2dt`);
* overall: on a file with all 18 tasks the mean over the 18 (the official overall); with fewer,
  the mean over the tasks present, labelled so, with the missing tasks named.

``CMeIE`` (the name in PromptCBLUE's toy files) is read as ``CMeIE-V2``.  Records of a task the
evaluator does not know are counted by name (``strict=True`` makes them an error).

The default is the official behaviour: a file the official evaluator rejects (a gold sample
without a prediction, a sample predicted twice, a prediction for no gold sample, a reply its
post-processing stops on) raises :class:`TaskFileError` naming the reason.  ``lenient=True``
scores such a file anyway (a missing prediction is an empty reply, the first of duplicates
counts, extra predictions and unreadable reply lines are skipped) and counts what it forgave;
that number is not the leaderboard's.
"""

from __future__ import annotations

import json

from rouge_chinese import Rouge
from sklearn.metrics import classification_report
from transformers import BasicTokenizer

from medgo.data.files import TaskFileError, as_str, read_json_or_jsonl
from medgo.eval.metrics.common import pct
from medgo.eval.metrics.promptcblue_replies import lowered_triples, structure
from medgo.eval.metrics.text2dt import aggregate, eval_tree

TASKS = (
    "CMeEE-V2", "CMeIE-V2", "CHIP-CDN", "CHIP-CDEE", "IMCS-V2-NER", "CHIP-MDCFNPC", "IMCS-V2-SR", "IMCS-V2-DAC",
    "IMCS-V2-MRG", "CHIP-CTC", "CHIP-STS", "KUAKE-IR", "KUAKE-QIC", "KUAKE-QQR", "KUAKE-QTR", "MedDG", "Text2DT",
    "CMedCausal",
)  # fmt: skip
EXTRACTION = ("CMeEE-V2", "CMeIE-V2", "CHIP-CDN", "CMedCausal", "CHIP-CDEE", "IMCS-V2-NER", "IMCS-V2-SR", "CHIP-MDCFNPC")
CTC_LABELS = (
    "非上述类型", "疾病", "症状(患者感受)", "体征(医生检测）", "怀孕相关", "肿瘤进展", "疾病分期", "过敏耐受", "器官组织状态",
    "预期寿命", "口腔相关", "药物", "治疗或手术", "设备", "护理", "诊断", "实验室检查", "风险评估", "受体状态", "年龄",
    "特殊病人特征", "读写能力", "性别", "教育情况", "居住情况", "种族", "知情同意", "参与其它试验", "研究者决定", "能力",
    "伦理审查", "依存性", "成瘾行为", "睡眠", "锻炼", "饮食", "酒精使用", "性取向", "吸烟状况", "献血", "病例来源",
    "残疾群体", "健康群体", "数据可及性", "含有多个类别",
)  # fmt: skip
DAC_LABELS = (
    "非上述类型", "关于症状的询问", "关于症状的回答", "关于病因的询问", "关于病因的回答", "关于个人基本信息的询问",
    "关于个人基本信息的回答", "关于已有检查和治疗的提问", "关于已有检查和治疗的回答", "关于用药建议的提问",
    "关于用药建议的解答", "关于就医建议的提问", "关于就医建议的解答", "关于注意事项的提问", "关于注意事项的解答", "给出诊断",
)  # fmt: skip
QIC_LABELS = ("非上述类型", "病情诊断", "病因分析", "治疗方案", "就医建议", "指标解读", "疾病描述", "后果表述", "注意事项", "功效作用", "医疗费用")
CLASSIFICATION = {
    # task: (label list, "weighted" | "macro")
    "CHIP-STS": (("是的", "不是"), "weighted"),
    "CHIP-CTC": (CTC_LABELS, "macro"),
    "IMCS-V2-DAC": (DAC_LABELS, "macro"),
    "KUAKE-IR": (("相关", "不相关"), "weighted"),
    "KUAKE-QIC": (QIC_LABELS, "macro"),
    "KUAKE-QTR": (("完全不匹配或者没有参考价值", "很少匹配有一些参考价值", "部分匹配", "完全匹配"), "weighted"),
    "KUAKE-QQR": (("完全一致", "后者是前者的语义子集", "后者是前者的语义父集", "语义无直接关联"), "weighted"),
}
ALIASES = {"CMeIE": "CMeIE-V2"}
_TOKENIZER = BasicTokenizer(tokenize_chinese_chars=True)


def task_name(name) -> str:
    """The evaluator's name of a ``task_dataset`` value (``CMeIE`` is ``CMeIE-V2``)."""
    name = as_str(name)
    return ALIASES.get(name, name)


# --------------------------------------------------------------------------- metrics


def _tuple_key(inst: dict) -> tuple:
    return tuple(json.dumps(inst[k], ensure_ascii=False) for k in sorted(inst))


def _extraction(golds: list, preds: list) -> dict:
    tp = fp = fn = 0
    for g, p in zip(golds, preds):
        gs, ps = {_tuple_key(x) for x in g}, {_tuple_key(x) for x in p}
        tp, fp, fn = tp + len(gs & ps), fp + len(ps - gs), fn + len(gs - ps)
    if tp:
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        f1 = 2 * precision * recall / (precision + recall)
    else:
        precision = recall = f1 = 0.0
    return {"score": pct(f1), "metric": "micro_f1", "precision": pct(precision), "recall": pct(recall), "f1": pct(f1)}


def _classification(task: str, golds: list, preds: list) -> dict:
    labels, average = CLASSIFICATION[task]
    preds = [p if p != "" else labels[0] for p in preds]
    report = classification_report(golds, preds, output_dict=True, zero_division=0)[f"{average} avg"]
    name = f"{average}_f1"
    return {
        "score": pct(report["f1-score"]), "metric": name, f"{average}_precision": pct(report["precision"]),
        f"{average}_recall": pct(report["recall"]), name: pct(report["f1-score"]),
        "out_of_label_set": sum(1 for p in preds if p not in labels),
    }


def _tokens(text: str) -> str:
    text = " ".join(_TOKENIZER.tokenize(text)).strip()
    return text if text else "无 。"


def _rouge(pairs: list[tuple[str, str]]) -> dict:
    """ROUGE F of ``(reply, reference)`` pairs, averaged over pairs (``rouge_chinese``, ``avg=True``)."""
    if not pairs:
        return {"score": 0.0, "metric": "rouge-l"}
    scores = Rouge().get_scores([_tokens(h) for h, _ in pairs], [_tokens(r) for _, r in pairs], avg=True)
    res = {k: pct(scores[k]["f"]) for k in ("rouge-1", "rouge-2", "rouge-l")}
    return {"score": res["rouge-l"], "metric": "rouge-l", **res}


def _text2dt(golds: list, preds: list, lenient: bool) -> dict:
    counts = [eval_tree(lowered_triples(p, lenient), lowered_triples(g, lenient), "promptcblue") for g, p in zip(golds, preds)]
    res = aggregate(counts)
    return {"score": res["edit_ratio"], "metric": "edit_ratio", **res}


def _metric(task: str, golds: list, preds: list, lenient: bool) -> dict:
    if task in EXTRACTION:
        return _extraction(golds, preds)
    if task in CLASSIFICATION:
        return _classification(task, golds, preds)
    if task == "MedDG":
        return _rouge(list(zip(preds, golds)))
    if task == "IMCS-V2-MRG":
        return _rouge([(p.get(k, "").strip(), v.strip()) for g, p in zip(golds, preds) for k, v in g.items()])
    if task == "Text2DT":
        return _text2dt(golds, preds, lenient)
    raise KeyError(f"unknown PromptCBLUE task {task!r}")


# --------------------------------------------------------------------------- matching and scoring


def _structure_row(task: str, row: dict, choices, lenient: bool, who: str):
    try:
        return structure(task, row.get("target", ""), choices, lenient)
    except TaskFileError as exc:
        raise TaskFileError(f"{who} {as_str(row.get('sample_id'))!r}: {exc}") from exc


def score_task_rows(task: str, gold_rows: list[dict], pred_rows: dict, lenient: bool = False) -> dict:
    """Scores of one task; ``pred_rows`` maps sample_id to the prediction record."""
    golds, preds, missing = [], [], []
    for g in gold_rows:
        sid = as_str(g.get("sample_id"))
        p = pred_rows.get(sid)
        if p is None:
            missing.append(sid)
            p = {"sample_id": sid, "target": ""}
        choices = p.get("answer_choices", g.get("answer_choices"))
        golds.append(_structure_row(task, g, g.get("answer_choices"), lenient, "gold sample"))
        preds.append(_structure_row(task, p, choices, lenient, "prediction for sample"))
    if missing and not lenient:
        raise TaskFileError(f"{task}: {len(missing)} gold samples have no prediction (first: {missing[0]!r}); "
                                "the official evaluator rejects the file (--lenient scores them as empty replies)")
    res = _metric(task, golds, preds, lenient)
    n = len(gold_rows)
    return {**res, "n_gold": n, "n_pred": n - len(missing), "n_missing": len(missing), "out_of_label_set": res.get("out_of_label_set", 0)}


def _index_predictions(pred_rows: list[dict], gold_ids: set, lenient: bool) -> tuple[dict, int, int]:
    """``{sample_id: row}`` (the first of duplicates), the number of duplicates and of predictions for no gold sample."""
    preds: dict = {}
    n_dup = 0
    for r in pred_rows:
        sid = as_str(r.get("sample_id"))
        n_dup += sid in preds
        preds.setdefault(sid, r)
    extra = [s for s in preds if s not in gold_ids]
    if not lenient and (n_dup or extra):
        what = f"{n_dup} duplicated predictions" if n_dup else f"{len(extra)} predictions for no gold sample (first: {extra[0]!r})"
        raise TaskFileError(f"{what}; the official evaluator rejects the file (--lenient skips them)")
    return preds, n_dup, len(extra)


def _overall(tasks: dict, lenient: bool) -> dict:
    if not tasks:
        return {"score": 0.0, "overall": 0.0, "overall_scope": "no task present", "missing_tasks": list(TASKS)}
    mean = round(sum(r["score"] for r in tasks.values()) / len(tasks), 4)
    missing = [t for t in TASKS if t not in tasks]
    if missing:
        scope = f"mean over the {len(tasks)} tasks present, not the official overall"
    else:
        scope = "mean over all 18 tasks" + (" (lenient, not the official overall)" if lenient else " (the official overall)")
    return {"score": mean, "overall": mean, "overall_scope": scope, "missing_tasks": missing}


def score_promptcblue_rows(gold_rows: list[dict], pred_rows: list[dict], lenient: bool = False, strict: bool = False) -> dict:
    """Per-task scores (``tasks``) and the overall (``score``) for in-memory records."""
    by_task: dict[str, list] = {}
    for g in gold_rows:
        by_task.setdefault(task_name(g.get("task_dataset")), []).append(g)
    unknown = {t: len(rows) for t, rows in sorted(by_task.items()) if t not in TASKS}
    if strict and unknown:
        raise TaskFileError(f"records of unknown tasks: {', '.join(f'{t} ({n})' for t, n in unknown.items())}")
    known_ids = {as_str(g.get("sample_id")) for t, rows in by_task.items() if t in TASKS for g in rows}
    unknown_ids = {as_str(g.get("sample_id")) for t in unknown for g in by_task[t]}
    preds, n_dup, n_extra = _index_predictions(pred_rows, known_ids | unknown_ids, lenient)
    tasks = {t: score_task_rows(t, by_task[t], preds, lenient) for t in TASKS if t in by_task}
    return {
        **_overall(tasks, lenient), "metric": "mean of task scores", "mode": "lenient" if lenient else "official",
        "n_tasks": len(tasks), "tasks": tasks, "n_gold": len(gold_rows), "n_pred": len(preds),
        "n_duplicates": n_dup, "n_extra": n_extra, "unknown_tasks": unknown,
    }


def _rows(path) -> list[dict]:
    data = read_json_or_jsonl(path)
    rows = data if isinstance(data, list) else [data]
    for n, r in enumerate(rows, 1):
        if not isinstance(r, dict):
            raise TaskFileError(f"{path}: record {n} is {type(r).__name__}, not an object")
    return rows


def score_promptcblue(gold_path, pred_path, lenient: bool = False, strict: bool = False) -> dict:
    """Score a PromptCBLUE prediction file against a gold file (both JSONL or JSON arrays)."""
    return score_promptcblue_rows(_rows(gold_path), _rows(pred_path), lenient, strict)
