"""The PromptCBLUE evaluator on its JSONL format.

Gold and predictions are JSONL (or a JSON array) of ``{input, target, answer_choices, task_type,
task_dataset, sample_id}``; in a prediction file ``target`` holds the model's reply (the other
fields may be absent, they are taken from the gold record with the same ``sample_id``).

Both replies are first turned into the evaluator's structured answers by the same rules as
PromptCBLUE's post-processing (:func:`structure`), then scored as its evaluator does:

* extraction tasks (CMeEE-V2, CMeIE-V2, CHIP-CDN, CHIP-CDEE, CHIP-MDCFNPC, IMCS-V2-NER,
  IMCS-V2-SR, CMedCausal): micro-F1 over de-duplicated answer tuples per sample;
* CHIP-STS, KUAKE-IR, KUAKE-QTR, KUAKE-QQR: the *weighted* F1 of sklearn's classification report
  (the evaluator calls it "micro"), CHIP-CTC, KUAKE-QIC, IMCS-V2-DAC: macro-F1; an empty reply
  counts as the task's first label;
* MedDG, IMCS-V2-MRG: ROUGE-L F of ``rouge_chinese`` on BERT basic tokens (MRG per section);
* Text2DT: the tree edit ratio;
* overall: the mean of those headline numbers over the tasks present.

Where the reference code would stop (a line it cannot split, a label outside the label list
entering a macro average), this implementation keeps going: unreadable lines are skipped and
labels outside the task's list are wrong answers that never become classes of their own.  On
well-formed input the numbers are the reference ones.
"""

from __future__ import annotations

import ast
import json

from medgo.eval.metrics.common import as_str, pct, read_json_or_jsonl, sklearn_report_avg
from medgo.eval.metrics.text import basic_tokenize, rouge_chinese
from medgo.eval.metrics.text2dt import score_trees

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
MRG_KEYS = ("主诉：", "现病史：", "辅助检查：", "既往史：", "诊断：", "建议：")
CDEE_KEYS = ("主体词", "发生状态", "描述词", "解剖部位")


# --------------------------------------------------------------------------- reply -> structured answer


def _entity_lines(text: str, choices) -> list[dict]:
    out = []
    for choice in choices or []:
        for piece in text.split("\n"):
            if piece.startswith(f"{choice}实体"):
                for m in piece.replace(f"{choice}实体：", "").split("，"):
                    if m.strip():
                        out.append({"entity": m.strip(), "type": choice})
    return out


def _spo_lines(text: str) -> list[dict]:
    out = []
    for line in text.split("\n"):
        predicate = line.split("关系的头尾实体对")[0][2:].strip()
        line = line.replace(f"具有{predicate}关系的头尾实体对如下：", "")
        for spo in line.split("。"):
            parts = spo.split("，尾实体为")
            if len(parts) < 2:
                continue
            head = parts[0].replace("头实体为", "").strip()
            tail = parts[1].replace("尾实体为", "").strip()
            out.append({"predicate": predicate, "subject": head, "object": tail})
    return out


def _causal_lines(text: str) -> list[dict]:
    out, rel = [], None
    for line in text.split("\n"):
        line = line.strip()
        if "因果关系三元组如下" in line:
            rel = "因果关系"
            continue
        if "条件关系三元组" in line:
            rel = "条件关系"
            continue
        if "上下位关系" in line:
            rel = "上下位关系"
            continue
        if "给定的文本没有指定关系的三元组" in line:
            break
        if not line:
            continue
        try:
            head = line.split("头实体：")[1].split("；尾实体：")[0]
            if rel != "条件关系":
                out.append({"predicate": rel, "subject": head, "object": line.split("；尾实体：")[1]})
            else:
                tail = line.split("；尾三元组：")[1]
                sub_head = tail.split("头实体：")[1].split("；尾实体：")[0]
                sub_tail = tail.split("；尾实体：")[1].split("；关系：")[0]
                sub_rel = tail.split("；关系：")[1].split("；关系：")[0]
                if sub_rel != "因果关系":
                    continue
                out.append({"predicate": rel, "subject": head,
                            "object": {"predicate": sub_rel, "subject": sub_head, "object": sub_tail}})
        except IndexError:
            continue
    return out


def _text2dt_lines(text: str) -> list[dict]:
    nodes = []
    for line in text.split("\n"):
        if "根据给定的指南文本抽取的诊疗决策树" in line or not line:
            continue
        try:
            role = line.split("：role=")[1].split("；logical_rel=")[0]
        except IndexError:
            continue
        try:
            logical_rel = line.split("；logical_rel=")[1].split("；triples=")[0]
        except IndexError:
            logical_rel = "null"
        try:
            triples = ast.literal_eval(line.split("；triples=")[1])
            triples = [list(map(as_str, t)) for t in triples if isinstance(t, (list, tuple)) and len(t) == 3] if isinstance(triples, list) else []
        except (IndexError, ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            triples = []
        nodes.append({"role": role, "logical_rel": logical_rel, "triples": triples})
    return nodes or [{"role": "D", "logical_rel": "null", "triples": []}]


def _finding_lines(text: str, choices, default: str) -> list[dict]:
    out = []
    for line in text.split("\n")[1:]:
        parts = line.split("：")
        if len(parts) != 2:
            continue
        finding, conclusion = parts
        if conclusion not in (choices or []):
            conclusion = default
        out.append({"entity": finding.strip(), "attr": conclusion})
    return out


def structure(task: str, reply: str, answer_choices=None):
    """The structured answer PromptCBLUE's post-processing derives from ``reply`` for ``task``."""
    text = as_str(reply)
    if task in ("CMeEE-V2", "IMCS-V2-NER"):
        return _entity_lines(text, answer_choices)
    if task == "CMeIE-V2":
        return _spo_lines(text)
    if task == "CMedCausal":
        return _causal_lines(text)
    if task == "Text2DT":
        return _text2dt_lines(text)
    if task == "CHIP-CDN":
        answers = {w.strip() for w in text.split("\n")[-1].split("，") if w.strip()}
        return [{"entity": w, "type": "normalization"} for w in sorted(answers) if w in (answer_choices or [])]
    if task == "CHIP-CDEE":
        events = []
        for line in text.split("\n")[1:]:
            info: dict = {}
            for attr in line.split("；"):
                for key in CDEE_KEYS:
                    if attr.startswith(f"{key}："):
                        value = attr.replace(f"{key}：", "").strip()
                        info[key] = [w.strip() for w in value.split("，") if w.strip()] if key in ("描述词", "解剖部位") else value
            for key in CDEE_KEYS:
                info.setdefault(key, [] if key in ("描述词", "解剖部位") else "")
            events.append(info)
        return events
    if task == "CHIP-STS":
        answer = text.strip()
        return {"相同": "是的", "不同": "不是"}.get(answer, answer)
    if task == "CHIP-MDCFNPC":
        return _finding_lines(text, answer_choices, "不标注")
    if task == "IMCS-V2-SR":
        return _finding_lines(text, answer_choices, "无法根据上下文确定病人是否患有该症状")
    if task == "IMCS-V2-MRG":
        report = {}
        for key in MRG_KEYS:
            for line in text.strip().split("\n")[1:]:
                if line.startswith(key):
                    report[key[:-1]] = line.strip().split(key)[-1].strip()
        return report
    if task in CLASSIFICATION or task == "MedDG":
        return text.strip()
    raise KeyError(f"unknown PromptCBLUE task {task!r}")


# --------------------------------------------------------------------------- evaluator


def _tuple_key(inst: dict) -> tuple:
    return tuple(json.dumps(inst[k], ensure_ascii=False) for k in sorted(inst))


def _extraction(golds: list, preds: list) -> dict:
    tp = fp = fn = 0
    for g, p in zip(golds, preds):
        gs = {_tuple_key(x) for x in g if isinstance(x, dict)}
        ps = {_tuple_key(x) for x in p if isinstance(x, dict)}
        tp += len(gs & ps)
        fp += len(ps - gs)
        fn += len(gs - ps)
    if tp:
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        f1 = 2 * precision * recall / (precision + recall)
    else:
        precision = recall = f1 = 0.0
    return {"score": pct(f1), "metric": "micro_f1", "precision": pct(precision), "recall": pct(recall), "f1": pct(f1)}


def _classification(task: str, golds: list, preds: list) -> tuple[dict, int]:
    labels, average = CLASSIFICATION[task]
    preds = [p if p != "" else labels[0] for p in preds]
    n_oos = sum(1 for p in preds if p not in labels)
    p, r, f = sklearn_report_avg(golds, preds, average, allowed=labels)
    name = "weighted_f1" if average == "weighted" else "macro_f1"
    return {"score": pct(f), "metric": name, f"{average}_precision": pct(p), f"{average}_recall": pct(r), name: pct(f)}, n_oos


def _rouge_mean(pairs: list[tuple[str, str]]) -> dict:
    def tok(s: str) -> str:
        s = " ".join(basic_tokenize(s)).strip()
        return s if s else "无 。"

    if not pairs:
        return {"score": 0.0, "metric": "rouge-l"}
    tot = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    for hyp, ref in pairs:
        sc = rouge_chinese(tok(hyp), tok(ref))
        for k in tot:
            tot[k] += sc[k]["f"]
    res = {k: pct(v / len(pairs)) for k, v in tot.items()}
    return {"score": res["rouge-l"], "metric": "rouge-l", **res}


def score_task_rows(task: str, gold_rows: list[dict], pred_rows: dict) -> dict:
    """Scores of one task; ``pred_rows`` maps sample_id to the prediction record."""
    golds, preds = [], []
    n_missing = 0
    for g in gold_rows:
        sid = as_str(g.get("sample_id"))
        p = pred_rows.get(sid)
        if p is None:
            n_missing += 1
        choices = g.get("answer_choices")
        golds.append(structure(task, g.get("target", ""), choices))
        reply = as_str(p.get("target", "")) if p else ""
        pchoices = p.get("answer_choices", choices) if p else choices
        preds.append(structure(task, reply, pchoices if pchoices is not None else choices))
    n_oos = 0
    if task in EXTRACTION:
        res = _extraction(golds, preds)
    elif task in CLASSIFICATION:
        res, n_oos = _classification(task, golds, preds)
    elif task == "MedDG":
        res = _rouge_mean(list(zip(preds, golds)))
    elif task == "IMCS-V2-MRG":
        pairs = [(p.get(k, "").strip(), v.strip()) for g, p in zip(golds, preds) for k, v in g.items()]
        res = _rouge_mean(pairs)
    elif task == "Text2DT":
        res = score_trees({str(i): g for i, g in enumerate(golds)}, {str(i): p for i, p in enumerate(preds)}, "promptcblue")
        res = {k: v for k, v in res.items() if k not in ("n_gold", "n_pred", "n_missing", "out_of_label_set")}
    else:
        raise KeyError(f"unknown PromptCBLUE task {task!r}")
    return {**res, "n_gold": len(gold_rows), "n_pred": len(gold_rows) - n_missing, "n_missing": n_missing, "out_of_label_set": n_oos}


def _rows(path) -> list[dict]:
    data = read_json_or_jsonl(path)
    return [r for r in (data if isinstance(data, list) else [data]) if isinstance(r, dict)]


def score_promptcblue_rows(gold_rows: list[dict], pred_rows: list[dict]) -> dict:
    """Per-task scores (``tasks``) and their mean (``score``/``overall``) for in-memory records."""
    preds: dict = {}
    n_dup = 0
    for r in pred_rows:
        sid = as_str(r.get("sample_id"))
        n_dup += sid in preds
        preds.setdefault(sid, r)  # the first prediction of a sample counts
    by_task: dict[str, list] = {}
    for g in gold_rows:
        by_task.setdefault(as_str(g.get("task_dataset")), []).append(g)
    tasks = {t: score_task_rows(t, by_task[t], preds) for t in TASKS if t in by_task}
    unknown = sorted(set(by_task) - set(TASKS))
    overall = round(sum(r["score"] for r in tasks.values()) / len(tasks), 4) if tasks else 0.0
    gold_ids = {as_str(g.get("sample_id")) for g in gold_rows}
    return {
        "score": overall, "overall": overall, "metric": "mean of task scores", "n_tasks": len(tasks), "tasks": tasks,
        "n_gold": len(gold_rows), "n_pred": len(preds), "n_duplicates": n_dup,
        "n_extra": sum(1 for s in preds if s not in gold_ids), "unknown_tasks": unknown,
    }


def score_promptcblue(gold_path, pred_path) -> dict:
    """Score a PromptCBLUE prediction file against a gold file (both JSONL or JSON arrays)."""
    return score_promptcblue_rows(_rows(gold_path), _rows(pred_path))
