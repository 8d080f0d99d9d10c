"""Generation parsers on noisy replies, and the render -> parse round trip over every shipped gold item."""

from __future__ import annotations

import pytest

from medgo.data.answers import RENDERERS, render
from medgo.data.files import read_json, read_jsonl
from medgo.eval.metrics import TASKS, parse
from medgo.eval.metrics.parsers import PARSERS


def test_every_task_has_a_parser_and_a_renderer():
    assert set(PARSERS) == set(TASKS) == set(RENDERERS)
    with pytest.raises(KeyError):
        parse("NOPE", "x")


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("reply", ["", None, "   ", "对不起，我无法回答这个问题。", "```json\n{]\n```", "：：：\n；；", "[[[", "\x00\ufffd"])
def test_parsers_never_raise(task, reply):
    example = {"text": "患者咳嗽三天", "sentence": "咳嗽三天", "findings": [(("d", "1", 0, 2), "咳嗽")]}
    pred, ok = parse(task, reply, example)
    assert isinstance(ok, bool)
    if task not in ("MedDG",):
        assert not ok or reply == "对不起，我无法回答这个问题。"


# --------------------------------------------------------------------------- span tasks


def test_cmeee_noisy_reply():
    text = "哮喘急性发作时可出现呼气性呼吸困难，听诊可闻及哮鸣音。"
    reply = ("好的，以下是识别结果：\n**疾病实体**: 哮喘\n- 临床表现：呼气性呼吸困难, 哮鸣音、“哮鸣音”\n"
             "医疗程序实体：听诊。\n药物：无\n身体：不存在的词\n以上就是全部实体。")
    pred, ok = parse("CMeEE-V2", reply, {"text": text})
    assert ok
    assert set(pred) == {(0, 1, "dis"), (10, 16, "sym"), (23, 25, "sym"), (18, 19, "pro")}
    assert parse("CMeEE-V2", "没有相关实体", {"text": text}) == ([], True)
    assert parse("CMeEE-V2", "我不知道", {"text": text}) == ([], False)


def test_cmeee_same_type_nesting_and_repeats():
    text = "腰椎间盘突出症患者常有腰痛，腰痛加重时就医。"
    pred, _ = parse("CMeEE-V2", "身体：腰椎间盘，腰\n临床表现：腰痛", {"text": text})
    # 腰 inside 腰椎间盘 (same type) is dropped; inside 腰痛 (another type) it stays; both 腰痛 are found
    assert set(pred) == {(0, 3, "bod"), (11, 11, "bod"), (14, 14, "bod"), (11, 12, "sym"), (14, 15, "sym")}


def test_imcs_ner_reply_to_bio():
    sent = "孩子发烧，吃了布洛芬"
    tags, ok = parse("IMCS-V2-NER", "症状实体：发烧\n药物: 布洛芬\n其他说明文字", {"sentence": sent})
    assert ok and tags == ["O", "O", "B-Symptom", "I-Symptom", "O", "O", "O", "B-Drug", "I-Drug", "I-Drug"]
    assert parse("IMCS-V2-NER", "无", {"sentence": sent}) == (["O"] * len(sent), True)


def test_causal_reply_picks_the_nearest_occurrences():
    text = "缺乏维生素D会导致钙吸收不足，儿童钙吸收不足容易出现佝偻病。"
    reply = "因果：缺乏维生素D -> 钙吸收不足\n[因果] 钙吸收不足 → 佝偻病\n条件：儿童 -> 钙吸收不足 -> 佝偻病\n上下位：不存在 -> 佝偻病"
    units, ok = parse("CMedCausal", reply, {"text": text})
    a = text.find("钙吸收不足")
    b = text.find("钙吸收不足", a + 1)
    d = text.find("佝偻病")
    c = text.find("儿童")
    assert ok and units == [
        ((0, 6), 1, (a, a + 5)),
        ((b, b + 5), 1, (d, d + 3)),
        ((c, c + 2), 2, ((b, b + 5), 1, (d, d + 3))),
    ]


# --------------------------------------------------------------------------- structured extraction


def test_cmeie_reply_forms():
    reply = ("抽取结果如下：\n1. 主体：肺炎；关系：临床表现；客体：咳嗽\n2. 头实体: 肺炎; 关系: 药物治疗; 尾实体: 阿莫西林\n"
             "(肺炎，并发症，胸腔积液)\n(肺炎，随便写的，x)\n主体：肺炎；关系：临床表现；客体：咳嗽")
    triples, ok = parse("CMeIE", reply)
    assert ok and triples == [("肺炎", "临床表现", "咳嗽"), ("肺炎", "药物治疗", "阿莫西林"), ("肺炎", "并发症", "胸腔积液")]


def test_cdee_reply_with_missing_fields():
    reply = "事件如下：\n主体词：疼痛；发生状态：；描述词：持续性, 阵发；解剖部位：右下腹\n主体词: 恶心; 发生状态: 否定\n描述词：无主体"
    events, ok = parse("CHIP-CDEE", reply)
    assert ok and events == [("疼痛", "", frozenset({"持续性", "阵发"}), frozenset({"右下腹"})), ("恶心", "否定", frozenset(), frozenset())]


def test_cdn_reply():
    terms, ok = parse("CHIP-CDN", "标准化结果：原发性高血压##2型糖尿病\n2型糖尿病，高脂血症", {"candidates": ["原发性高血压", "2型糖尿病"]})
    assert ok and terms == ["原发性高血压", "2型糖尿病"]
    assert parse("CHIP-CDN", "肺炎##哮喘")[0] == ["肺炎", "哮喘"]


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("task,reply,label", [
    ("CHIP-CTC", "该筛选标准属于「年龄」类别。", "Age"),
    ("CHIP-CTC", "Allergy Intolerance", "Allergy Intolerance"),
    ("CHIP-CTC", "类别：疾病分期", "Non-Neoplasm Disease Stage"),
    ("CHIP-CTC", "答案：含有多个类别", "Multiple"),
    ("KUAKE-QIC", "这是一个关于治疗方案的问题", "治疗方案"),
    ("KUAKE-QIC", "疾病描述", "疾病表述"),
    ("CHIP-STS", "不是。", "0"),
    ("CHIP-STS", "是的，两句话意思相同", "1"),
    ("CHIP-STS", "两句话意思不相同", "0"),
    ("KUAKE-QTR", "完全不匹配", "0"),
    ("KUAKE-QTR", "标题与搜索词部分匹配", "2"),
    ("KUAKE-QTR", "3", "3"),
    ("KUAKE-QQR", "后者是前者的语义子集", "1"),
    ("KUAKE-QQR", "两者完全一致", "2"),
    ("IMCS-V2-DAC", "request-symptom", "Request-Symptom"),
    ("IMCS-V2-DAC", "这句话是关于用药建议的解答。", "Inform-Drug_Recommendation"),
])  # fmt: skip
def test_label_parsers(task, reply, label):
    assert parse(task, reply) == (label, True)


def test_label_parser_failure():
    assert parse("KUAKE-QIC", "我不确定") == (None, False)
    assert parse("CHIP-CTC", "") == (None, False)


def test_ir_reply():
    assert parse("KUAKE-IR", "101, 102，103\n101") == (["101", "102", "103"], True)


# --------------------------------------------------------------------------- dialogue tasks


def test_mdcfnpc_findings_in_order():
    findings = [("k1", "发热"), ("k2", "咳嗽"), ("k3", "发热"), ("k4", "头痛")]
    units, ok = parse("CHIP-MDCFNPC", "判断如下：\n发热：阳性\n咳嗽: 阴性。\n发热：其他\n鼻塞：阳性", {"findings": findings})
    assert ok and units == {"k1": "阳性", "k2": "阴性", "k3": "其他"}  # 头痛 unanswered
    units, _ = parse("CHIP-MDCFNPC", "发热：阳性", {"findings": findings})
    assert units == {"k1": "阳性", "k3": "阳性"}  # one line answers every 发热


def test_sr_reply():
    syms, ok = parse("IMCS-V2-SR", "症状判断：\n发热：阴性\n咳嗽: 阳性\n咳痰：无法确定\n流涕：2\n乱写一行")
    assert ok and syms == {"发热": "0", "咳嗽": "1", "咳痰": "2", "流涕": "2"}


def test_mrg_reply():
    reply = "诊疗报告如下：\n【主诉】：咳嗽3天\n现病史: 患儿咳嗽，\n无发热。\n诊断：支气管炎"
    report, ok = parse("IMCS-V2-MRG", reply)
    assert ok and report == {"主诉": "咳嗽3天", "现病史": "患儿咳嗽，无发热。", "辅助检查": "", "既往史": "", "诊断": "支气管炎", "建议": ""}
    assert parse("IMCS-V2-MRG", "无法生成")[1] is False


def test_meddg_reply():
    assert parse("MedDG", "医生：“建议做个胃镜。”") == ("建议做个胃镜。", True)
    assert parse("MedDG", "<think>想一想</think>\n你好，胃痛多久了？") == ("你好，胃痛多久了？", True)


def test_text2dt_reply_forms():
    json_reply = '决策树如下：\n```json\n[{"role": "C", "triples": [["a患者", "临床表现", "x"]], "logical_rel": "null"}, ' \
                 '{"role": "D", "triples": [["a患者", "治疗药物", "y"], ["bad"]], "logical_rel": "AND"}, {"role": "d", "triples": []}]\n```'
    tree, ok = parse("Text2DT", json_reply)
    assert ok and tree == [{"role": "C", "triples": [["a患者", "临床表现", "x"]], "logical_rel": "null"},
                           {"role": "D", "triples": [["a患者", "治疗药物", "y"]], "logical_rel": "and"},
                           {"role": "D", "triples": [], "logical_rel": "null"}]
    lines = "节点1：role=C；logical_rel=null；triples=[('a患者', '临床表现', 'x')]\n节点2：role=D；triples=[坏的]"
    tree, ok = parse("Text2DT", lines)
    assert ok and tree == [{"role": "C", "triples": [["a患者", "临床表现", "x"]], "logical_rel": "null"},
                           {"role": "D", "triples": [], "logical_rel": "null"}]


# --------------------------------------------------------------------------- round trip over the shipped gold


def _units(task):
    """(gold unit, parser example) pairs of ``task``'s shipped gold file."""
    spec = TASKS[task]
    gold = spec.read_gold(spec.gold_path)
    if task == "CMeEE-V2":
        return [(set(it["entities"]), it, {"text": it["text"]}) for it in gold.values()]
    if task == "CMedCausal":
        return [(set(v), v, {"text": k}) for k, v in gold.items()]
    if task == "IMCS-V2-NER":
        d = read_json(spec.gold_path)
        sents = {(k, t["sentence_id"]): t["sentence"] for k, v in d.items() for t in v["dialogue"]}
        return [(tags, tags, {"sentence": sents[key]}) for key, tags in gold.items()]
    if task == "CHIP-MDCFNPC":
        out = []
        for r in read_jsonl(spec.gold_path):
            findings = [((r["dialog_id"], s["sentence_id"], n["range"][0], n["range"][1]), n["mention"]) for s in r["dialog_info"] for n in s["ner"]]
            units = {k: gold[k] for k, _ in findings}
            out.append((units, units, {"findings": findings}))
        return out
    if task == "IMCS-V2-SR":
        return [(v, v, {}) for v in gold["utterance"].values()]
    if task == "IMCS-V2-MRG":
        return [(v[0], v[0], {}) for v in gold.values()]
    if task in ("CMeIE", "CHIP-CDEE", "CHIP-CDN"):
        return [(set(v), v, {}) for v in gold.values()]
    if task == "KUAKE-IR":
        return [(sorted(v), sorted(v), {}) for v in gold.values()]
    return [(v, v, {}) for v in gold.values()]


@pytest.mark.parametrize("task", list(TASKS))
def test_render_parse_round_trip(task):
    units = _units(task)
    assert units
    for expected, item, example in units:
        pred, ok = parse(task, render(task, item, example), example)
        assert ok
        assert (set(pred) if isinstance(expected, set) else pred) == expected


@pytest.mark.parametrize("task", list(TASKS))
def test_round_trip_scores_100(task):
    """Parsing the rendered gold and scoring it reproduces the gold exactly (score 100)."""
    spec = TASKS[task]
    gold = spec.read_gold(spec.gold_path)
    resources = spec.read_resources(spec.gold_path)
    if task in ("IMCS-V2-SR",):
        pred = {k: parse(task, render(task, v))[0] for k, v in gold["utterance"].items()}
    elif task == "IMCS-V2-MRG":
        pred = {k: parse(task, render(task, v[0]))[0] for k, v in gold.items()}
        gold = {k: v[:1] for k, v in gold.items()}
    elif task == "CHIP-MDCFNPC":
        pred = {}
        for expected, item, example in _units(task):
            pred.update(parse(task, render(task, item, example), example)[0])
    else:
        keyed = dict(zip(gold, _units(task)))
        pred = {k: parse(task, render(task, item, ex), ex)[0] for k, (_, item, ex) in keyed.items()}
    assert spec.score(gold, pred, **resources)["score"] == 100.0
