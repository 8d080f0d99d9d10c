"""Answer formats: a CBLUE task's gold item -> the reply text a perfect model gives.

    from medgo.data.answers import render
    reply = render("CMeEE-V2", gold_item, example)   # the SFT target, e.g. "疾病：哮喘，肺炎"

Each format is the one the task's parser in :mod:`medgo.eval.metrics.parsers` reads back, so
``parse(render(gold)) == gold`` (the round trip is tested).  One item per line:

==============  ===================================================================
CMeEE-V2        ``疾病：哮喘，肺炎`` (type names below; ``无`` when there is none)
CMeIE           ``主体：X；关系：P；客体：Y``
CMedCausal      ``因果：A -> B`` · ``上下位：上位词 -> 下位词`` · ``条件：C -> A -> B``
CHIP-CDEE       ``主体词：X；发生状态：否定；描述词：a，b；解剖部位：c``
CHIP-CDN        ``标准词1##标准词2``
classification  the label (CHIP-STS ``是``/``不是``; QTR 0–3; QQR 0–2)
KUAKE-IR        ``doc_id1,doc_id2,...``
CHIP-MDCFNPC    ``发热：阳性``
IMCS-V2-NER     ``症状：发烧，咳嗽`` (症状 药物 药物类别 检查 操作)
IMCS-V2-DAC     the act name (English, e.g. ``Request-Symptom``)
IMCS-V2-SR      ``发热：阴性`` (阳性 = 1, 阴性 = 0, 不确定 = 2)
IMCS-V2-MRG     ``主诉：...`` one line per section
MedDG           the doctor's reply
Text2DT         a JSON array of nodes ``{"role", "triples", "logical_rel"}``
==============  ===================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable

from medgo.data.cblue_gold import MRG_SECTIONS, bio_chunks


CMEEE_NAMES = {"dis": "疾病", "sym": "临床表现", "dru": "药物", "equ": "医疗设备", "pro": "医疗程序",
               "bod": "身体", "ite": "医学检验项目", "mic": "微生物类", "dep": "科室"}
IMCS_NER_NAMES = {"Symptom": "症状", "Drug": "药物", "Drug_Category": "药物类别", "Medical_Examination": "检查", "Operation": "操作"}
CTC_ZH = (
    "疾病", "症状(患者感受)", "体征(医生检测）", "怀孕相关", "肿瘤进展", "疾病分期", "过敏耐受", "器官组织状态", "预期寿命",
    "口腔相关", "药物", "治疗或手术", "设备", "护理", "诊断", "实验室检查", "风险评估", "受体状态", "年龄", "特殊病人特征",
    "读写能力", "性别", "教育情况", "居住情况", "种族", "知情同意", "参与其它试验", "研究者决定", "能力", "伦理审查", "依存性",
    "成瘾行为", "睡眠", "锻炼", "饮食", "酒精使用", "性取向", "吸烟状况", "献血", "病例来源", "残疾群体", "健康群体",
    "数据可及性", "含有多个类别",
)  # fmt: skip
DAC_ZH = (
    "关于症状的询问", "关于症状的回答", "关于病因的询问", "关于病因的回答", "关于个人基本信息的询问", "关于个人基本信息的回答",
    "关于已有检查和治疗的提问", "关于已有检查和治疗的回答", "关于用药建议的提问", "关于用药建议的解答", "关于就医建议的提问",
    "关于就医建议的解答", "关于注意事项的提问", "关于注意事项的解答", "给出诊断", "非上述类型",
)  # fmt: skip


def _typed_mentions(names: dict, spans, source: str) -> str:
    """One ``类型：提及1，提及2`` line per type with mentions (``spans``: ``(type, start, end_inclusive)``)."""
    lines = []
    for code, name in names.items():
        mentions = list(dict.fromkeys(source[s : e + 1] for t, s, e in spans if t == code))
        if mentions:
            lines.append(f"{name}：" + "，".join(mentions))
    return "\n".join(lines) if lines else "无"


def render_cmeee(item: dict, example: dict | None = None) -> str:
    return _typed_mentions(CMEEE_NAMES, [(t, s, e) for s, e, t in item["entities"]], item["text"])


def render_imcs_ner(tags: list, example: dict) -> str:
    return _typed_mentions(IMCS_NER_NAMES, bio_chunks(tags), str(example.get("sentence", "")))


def render_causal(units: list, example: dict) -> str:
    source = str(example.get("text", ""))
    m = lambda s: source[s[0] : s[1]]  # noqa: E731
    lines = []
    for u in units:
        if u[1] == 1:
            lines.append(f"因果：{m(u[0])} -> {m(u[2])}")
        elif u[1] == 3:
            lines.append(f"上下位：{m(u[0])} -> {m(u[2])}")
        elif u[1] == 2:
            lines.append(f"条件：{m(u[0])} -> {m(u[2][0])} -> {m(u[2][2])}")
    return "\n".join(lines) if lines else "无"


def render_cmeie(triples: list, example: dict | None = None) -> str:
    return "\n".join(f"主体：{s}；关系：{p}；客体：{o}" for s, p, o in triples) or "无"


def render_cdee(events: list, example: dict | None = None) -> str:
    return "\n".join(f"主体词：{c}；发生状态：{t}；描述词：{'，'.join(sorted(ch))}；解剖部位：{'，'.join(sorted(an))}"
                     for c, t, ch, an in events) or "无"


def render_cdn(terms: list, example: dict | None = None) -> str:
    return "##".join(terms)


def _render_label(label, example=None) -> str:
    return str(label)


def render_sts(label, example=None) -> str:
    return "是" if str(label) == "1" else "不是"


def render_ir(ids: list, example=None) -> str:
    return ",".join(ids)


def render_mdcfnpc(units: dict, example: dict) -> str:
    return "\n".join(f"{mention}：{units[key]}" for key, mention in example.get("findings", []) if key in units)


def render_sr(symptoms: dict, example=None) -> str:
    word = {"1": "阳性", "0": "阴性", "2": "不确定"}
    return "\n".join(f"{s}：{word.get(t, t)}" for s, t in symptoms.items()) or "无"


def render_mrg(report: dict, example=None) -> str:
    return "\n".join(f"{k}：{report.get(k, '')}" for k in MRG_SECTIONS)


def _render_text(x, example=None) -> str:
    return str(x)


def render_text2dt(tree: list, example=None) -> str:
    return json.dumps([{"role": n["role"], "triples": [list(t) for t in n["triples"]], "logical_rel": n["logical_rel"]} for n in tree],
                      ensure_ascii=False)


RENDERERS: dict[str, Callable] = {
    "CMeEE-V2": render_cmeee, "CMeIE": render_cmeie, "CMedCausal": render_causal, "CHIP-CDEE": render_cdee,
    "CHIP-CDN": render_cdn, "CHIP-CTC": _render_label, "KUAKE-QIC": _render_label, "CHIP-STS": render_sts,
    "KUAKE-QTR": _render_label, "KUAKE-QQR": _render_label, "KUAKE-IR": render_ir, "CHIP-MDCFNPC": render_mdcfnpc,
    "IMCS-V2-NER": render_imcs_ner, "IMCS-V2-DAC": _render_label, "IMCS-V2-SR": render_sr, "IMCS-V2-MRG": render_mrg,
    "MedDG": _render_text, "Text2DT": render_text2dt,
}  # fmt: skip


def render(task: str, gold, example: dict | None = None) -> str:
    """The reply text that :func:`parse` reads back as ``gold``."""
    if task not in RENDERERS:
        raise KeyError(f"no renderer for task {task!r}; known: {', '.join(RENDERERS)}")
    return RENDERERS[task](gold, example or {})

