"""Instruction templates: the one place that says how every task is asked and answered.

    from medgo.data.prompts import build_prompt, target_text
    messages = build_prompt("CHIP-CTC", example)     # chat messages for generation
    answer = target_text("CHIP-CTC", example)        # the reply SFT trains on

``example`` is one prompt's worth of a task as :func:`medgo.data.cblue.read_examples` reads it
from the task's native file: its input fields (``text``, ``query``, ``sentence``, ``dialogue``...)
and its ``gold`` (for ClinicalQA a question with ``question``, ``options`` ``{"A".."D"}`` and
``answer``).  ``target_text`` writes the gold with :func:`medgo.data.answers.render`, in exactly
the form the task's parser in :mod:`medgo.eval.metrics.parsers` reads back, so a model trained
on these targets is scored by the same code that evaluates it
(a test checks that parsing every target gives a perfect score on every task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medgo.data.answers import CMEEE_NAMES, CTC_ZH, DAC_ZH, IMCS_NER_NAMES, render
from medgo.data.cblue_gold import CMEIE_PREDICATES, CTC_LABELS, DAC_LABELS, MRG_SECTIONS, QIC_LABELS, TEXT2DT_RELATIONS

CLINICALQA = "ClinicalQA"


@dataclass(frozen=True)
class Template:
    """How one task is asked (``prompt``) and answered (``target``)."""

    prompt: Callable[[dict], str]
    target: Callable[[dict], str]


def _clinicalqa_prompt(q) -> str:
    options = "\n".join(f"{k}. {v}" for k, v in sorted(q.options.items()))
    return f"以下是一道临床医学单项选择题，请只回答正确选项的字母（A、B、C或D）。\n\n{q.question}\n{options}\n答案："


def clinicalqa_option_text(q, letter: str) -> str:
    """The continuation scored for one option in ``loglik: option`` mode."""
    return f"{letter}. {q.options[letter]}"


def _gold_reply(task: str) -> Callable[[dict], str]:
    """The target of a CBLUE task: its gold rendered by the task's parser-side renderer."""
    return lambda ex: render(task, ex["gold"], ex)


def _lines(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def _cmeee(ex: dict) -> str:
    types = "、".join(CMEEE_NAMES.values())
    return _lines(f"请找出下面医学句子中的实体，实体类型包括：{types}。", "每种类型一行，格式为“类型：实体1，实体2”；没有实体时回答“无”。", f"句子：{ex['text']}")


def _cmeie(ex: dict) -> str:
    preds = "、".join(CMEIE_PREDICATES)
    return _lines(f"请抽取下面医学文本中的实体关系三元组，关系类型限于：{preds}。", "每个三元组一行，格式为“主体：X；关系：P；客体：Y”；没有时回答“无”。", f"文本：{ex['text']}")


def _causal(ex: dict) -> str:
    return _lines(
        "请抽取下面医学文本中的因果、条件和上下位关系，实体必须是原文片段。",
        "每个关系一行：“因果：原因 -> 结果”，“上下位：上位词 -> 下位词”，“条件：条件 -> 原因 -> 结果”；没有时回答“无”。",
        f"文本：{ex['text']}",
    )


def _cdee(ex: dict) -> str:
    return _lines(
        "请抽取下面病历文本中的临床发现事件，每个事件一行，",
        "格式为“主体词：X；发生状态：否定|不确定|（肯定时留空）；描述词：a，b；解剖部位：c”；没有时回答“无”。",
        f"文本：{ex['text']}",
    )


def _cdn(ex: dict) -> str:
    choices = f"候选标准词：{'，'.join(ex['choices'])}" if ex.get("choices") else ""
    return _lines("请把下面的诊断原词标准化为ICD-10标准词，有多个标准词时用“##”分隔，只回答标准词。", choices, f"诊断原词：{ex['text']}")


def _ctc(ex: dict) -> str:
    options = "；".join(f"{en}（{zh}）" for en, zh in zip(CTC_LABELS, CTC_ZH))
    return _lines("请判断下面临床试验筛选标准句子的类别，只回答类别的英文名。", f"类别：{options}", f"句子：{ex['text']}")


def _qic(ex: dict) -> str:
    return _lines(f"请判断下面医疗搜索词的意图，只回答类别名：{'，'.join(QIC_LABELS)}。", f"搜索词：{ex['query']}")


def _sts(ex: dict) -> str:
    return _lines("下面两个医学问句的意思是否相同？只回答“是”或“不是”。", f"问句一：{ex['text1']}", f"问句二：{ex['text2']}")


def _qtr(ex: dict) -> str:
    return _lines(
        "请判断搜索词与网页标题的相关程度，只回答一个数字：3 完全匹配，2 部分匹配，1 很少匹配有一些参考价值，0 完全不匹配或没有参考价值。",
        f"搜索词：{ex['query']}",
        f"标题：{ex['title']}",
    )


def _qqr(ex: dict) -> str:
    return _lines(
        "请判断两个医疗搜索词的关系，只回答一个数字：2 意思完全一致，1 后者是前者的语义子集，0 后者是前者的语义父集或两者无直接关联。",
        f"搜索词一：{ex['query1']}",
        f"搜索词二：{ex['query2']}",
    )


def _mdcfnpc(ex: dict) -> str:
    findings = "，".join(dict.fromkeys(label for _, label in ex["findings"]))
    return _lines(
        "请根据下面的医患对话判断每个临床发现的阴阳性：阳性（患者有）、阴性（患者没有）、其他（无法确定）、不标注（与患者本人无关）。",
        "每个临床发现一行，格式为“临床发现：阳性”。",
        f"临床发现：{findings}",
        f"对话：\n{ex['dialogue']}",
    )


def _imcs_ner(ex: dict) -> str:
    types = "、".join(IMCS_NER_NAMES.values())
    return _lines(f"请找出下面医患对话语句中的实体，类型包括：{types}。", "每种类型一行，格式为“类型：实体1，实体2”；没有实体时回答“无”。", f"{ex['speaker']}：{ex['sentence']}")


def _imcs_dac(ex: dict) -> str:
    acts = "；".join(f"{en}（{zh}）" for en, zh in zip(DAC_LABELS, DAC_ZH))
    return _lines("请判断下面医患对话语句的意图，只回答意图的英文名。", f"意图：{acts}", f"{ex['speaker']}：{ex['sentence']}")


def _imcs_sr(ex: dict) -> str:
    ask = "请找出下面医患对话语句中提到的症状（使用标准症状名），" if ex["level"] == "utterance" else "请根据下面的整段医患对话找出患者的所有症状（使用标准症状名），"
    body = f"{ex['speaker']}：{ex['sentence']}" if ex["level"] == "utterance" else f"患者自述：{ex['self_report']}\n对话：\n{ex['dialogue']}"
    return _lines(ask + "并判断患者是否有该症状。", "每个症状一行，格式为“症状：阳性|阴性|不确定”；没有症状时回答“无”。", body)


def _imcs_mrg(ex: dict) -> str:
    sections = "、".join(MRG_SECTIONS)
    return _lines(f"请根据下面的医患对话写出医疗报告，依次包括{sections}六部分，每部分一行，格式为“部分名：内容”。", f"患者自述：{ex['self_report']}", f"对话：\n{ex['dialogue']}")


def _meddg(ex: dict) -> str:
    return _lines("下面是一段医患对话，请以医生的身份给出下一句回复，只回答回复内容。", ex["history"])


def _text2dt(ex: dict) -> str:
    rels = "、".join(TEXT2DT_RELATIONS)
    return _lines(
        f"请把下面的诊疗文本抽取为诊疗决策树，三元组关系限于：{rels}。",
        '回答一个JSON数组，按先序遍历列出节点，每个节点为{"role": "C"（条件）或"D"（决策）, "triples": [[主体, 关系, 客体], ...], "logical_rel": "and"|"or"|"null"}。',
        f"文本：{ex['text']}",
    )


_CBLUE_PROMPTS: dict[str, Callable[[dict], str]] = {
    "CMeEE-V2": _cmeee, "CMeIE": _cmeie, "CMedCausal": _causal, "CHIP-CDEE": _cdee, "CHIP-CDN": _cdn,
    "CHIP-CTC": _ctc, "KUAKE-QIC": _qic, "CHIP-STS": _sts, "KUAKE-QTR": _qtr, "KUAKE-QQR": _qqr,
    "CHIP-MDCFNPC": _mdcfnpc, "IMCS-V2-NER": _imcs_ner, "IMCS-V2-DAC": _imcs_dac, "IMCS-V2-SR": _imcs_sr,
    "IMCS-V2-MRG": _imcs_mrg, "MedDG": _meddg, "Text2DT": _text2dt,
}  # fmt: skip
"""Every CBLUE task answered by generation (KUAKE-IR is answered by retrieval, see ``retrieval``)."""

TEMPLATES: dict[str, Template] = {
    CLINICALQA: Template(_clinicalqa_prompt, lambda q: q.answer),
    **{task: Template(prompt, _gold_reply(task)) for task, prompt in _CBLUE_PROMPTS.items()},
}


def build_prompt(task: str, example) -> list[dict]:
    """Chat messages asking ``task`` about ``example`` (the system prompt comes from the chat template)."""
    return [{"role": "user", "content": _template(task).prompt(example)}]


def target_text(task: str, example) -> str:
    """The reply a perfect model gives: the gold of ``example`` in the form the parser reads."""
    return _template(task).target(example)


def _template(task: str) -> Template:
    if task not in TEMPLATES:
        raise KeyError(f"no prompt template for task {task!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[task]
