"""CBLUE gold files: each task's label set and its native gold file -> ``{unit_key: gold}``.

    from medgo.data.cblue_gold import GOLD_READERS
    gold = GOLD_READERS["CMeEE-V2"]("medgo/assets/cblue/CMeEE-V2/CMeEE-V2_dev.json")

Keys are the record text for the text-keyed tasks (as the official checkers key them), the
record id otherwise, and ``(dialogue_id, sentence_id)`` for the IMCS-V2 utterance tasks.  The
gold structures are what SFT renders into target replies (:mod:`medgo.data.answers`) and what
the scorers of :mod:`medgo.eval.metrics` compare predictions against.  KUAKE-IR is answered by
retrieval, not generation, so its judgement file is read in evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

from medgo.data.files import as_str, keyed_by_text, read_json, read_json_or_jsonl, records


CMEEE_TYPES = ("dis", "sym", "dru", "equ", "pro", "bod", "ite", "mic", "dep")
CMEIE_PREDICATES = (
    "预防", "阶段", "就诊科室", "同义词", "辅助治疗", "化疗", "放射治疗", "手术治疗", "实验室检查", "影像学检查",
    "辅助检查", "组织学检查", "内窥镜检查", "筛查", "多发群体", "发病率", "发病年龄", "多发地区", "发病性别倾向",
    "死亡率", "多发季节", "传播途径", "并发症", "病理分型", "相关（导致）", "鉴别诊断", "相关（转化）", "相关（症状）",
    "临床表现", "治疗后症状", "侵及周围组织转移的症状", "病因", "高危因素", "风险评估因素", "病史", "遗传因素",
    "发病机制", "病理生理", "药物治疗", "发病部位", "转移部位", "外侵部位", "预后状况", "预后生存率",
)  # fmt: skip
CAUSAL_RELATIONS = (1, 2, 3)
CDEE_TENDENCIES = ("", "否定", "不确定")
MDCFNPC_ATTRS = ("阳性", "阴性", "其他", "不标注")
CTC_LABELS = (
    "Disease", "Symptom", "Sign", "Pregnancy-related Activity", "Neoplasm Status", "Non-Neoplasm Disease Stage",
    "Allergy Intolerance", "Organ or Tissue Status", "Life Expectancy", "Oral related", "Pharmaceutical Substance or Drug",
    "Therapy or Surgery", "Device", "Nursing", "Diagnostic", "Laboratory Examinations", "Risk Assessment",
    "Receptor Status", "Age", "Special Patient Characteristic", "Literacy", "Gender", "Education", "Address",
    "Ethnicity", "Consent", "Enrollment in other studies", "Researcher Decision", "Capacity", "Ethical Audit",
    "Compliance with Protocol", "Addictive Behavior", "Bedtime", "Exercise", "Diet", "Alcohol Consumer",
    "Sexual related", "Smoking Status", "Blood Donation", "Encounter", "Disabilities", "Healthy", "Data Accessible",
    "Multiple",
)  # fmt: skip
QIC_LABELS = ("病情诊断", "病因分析", "治疗方案", "就医建议", "指标解读", "疾病表述", "后果表述", "注意事项", "功效作用", "医疗费用", "其他")
STS_LABELS = ("0", "1")
QTR_LABELS = ("0", "1", "2", "3")
QQR_LABELS = ("0", "1", "2")
NER_TYPES = ("Symptom", "Drug", "Drug_Category", "Medical_Examination", "Operation")
NER_TAGS = ("O", *(f"{p}-{t}" for t in NER_TYPES for p in "BI"))
DAC_LABELS = (
    "Request-Symptom", "Inform-Symptom", "Request-Etiology", "Inform-Etiology", "Request-Basic_Information",
    "Inform-Basic_Information", "Request-Existing_Examination_and_Treatment", "Inform-Existing_Examination_and_Treatment",
    "Request-Drug_Recommendation", "Inform-Drug_Recommendation", "Request-Medical_Advice", "Inform-Medical_Advice",
    "Request-Precautions", "Inform-Precautions", "Diagnose", "Other",
)  # fmt: skip
SR_LABELS = ("0", "1", "2")
MRG_SECTIONS = ("主诉", "现病史", "辅助检查", "既往史", "诊断", "建议")
TEXT2DT_RELATIONS = ("临床表现", "治疗药物", "用法用量", "治疗方案", "禁用药物", "基本情况")


# --------------------------------------------------------------------------- extraction tasks


def safe_int(x):
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


def cmeee_entities(record: dict) -> list[tuple[int, int, str]]:
    out = []
    for e in record.get("entities") or []:
        if not isinstance(e, dict):
            continue
        s, t = safe_int(e.get("start_idx")), safe_int(e.get("end_idx"))
        if s is None or t is None:
            continue
        out.append((s, t, as_str(e.get("type"))))
    return out


def read_cmeee_gold(path) -> dict:
    """``{text_key: {"text": str, "entities": [(start, end_inclusive, type)]}}``."""
    recs = records(path)
    return {k: {"text": r.get("text", ""), "entities": cmeee_entities(r)} for k, r in zip(keyed_by_text(r.get("text", "") for r in recs), recs)}


def _spo_triples(record: dict) -> list[tuple[str, str, str]]:
    out = []
    for s in record.get("spo_list") or []:
        if not isinstance(s, dict):
            continue
        obj = s.get("object")
        if isinstance(obj, dict):
            obj = obj.get("@value")
        out.append((as_str(s.get("subject")), as_str(s.get("predicate")), as_str(obj)))
    return out


def read_cmeie_gold(path) -> dict:
    """``{text_key: [(subject, predicate, object)]}`` from ``CMeIE_dev.jsonl``."""
    recs = records(path)
    return {k: _spo_triples(r) for k, r in zip(keyed_by_text(r.get("text", "") for r in recs), recs)}


def _span(m, text: str) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` of a mention; located in ``text`` (first occurrence) when indices are absent."""
    if not isinstance(m, dict):
        return None
    s, e = safe_int(m.get("start_idx")), safe_int(m.get("end_idx"))
    if s is not None and e is not None:
        return s, e
    mention = as_str(m.get("mention"))
    if mention and mention in text:
        s = text.index(mention)
        return s, s + len(mention)
    return None


def _causal_units(record: dict) -> list[tuple]:
    text = as_str(record.get("text"))
    out = []
    for r in record.get("relation_of_mention") or []:
        if not isinstance(r, dict):
            continue
        rel = safe_int(r.get("relation"))
        head, tail = _span(r.get("head"), text), r.get("tail")
        if head is None or not isinstance(tail, dict):
            continue
        if rel in (1, 3):
            t = _span(tail, text)
            if t is not None:
                out.append((head, rel, t))
        elif rel == 2:
            sub_rel = safe_int(tail.get("relation"))
            sh, st = _span(tail.get("head"), text), _span(tail.get("tail"), text)
            if sh is not None and st is not None:
                out.append((head, 2, (sh, sub_rel, st)))
        else:
            out.append((head, rel, _span(tail, text)))
    return out


def read_causal_gold(path) -> dict:
    """``{text_key: [relation units]}``; a unit is ``((hs, he), 1|3, (ts, te))`` or ``((hs, he), 2, ((s, e), 1, (s, e)))``."""
    recs = records(path)
    return {k: _causal_units(r) for k, r in zip(keyed_by_text(r.get("text", "") for r in recs), recs)}


def _events(record: dict) -> list[tuple]:
    out = []
    for e in record.get("event") or []:
        if not isinstance(e, dict):
            continue
        ch = e.get("character") or []
        an = e.get("anatomy_list") or []
        ch = [ch] if isinstance(ch, str) else ch
        an = [an] if isinstance(an, str) else an
        out.append((as_str(e.get("core_name")), as_str(e.get("tendency")), frozenset(map(as_str, ch)), frozenset(map(as_str, an))))
    return out


def read_cdee_gold(path) -> dict:
    """``{id: [(core_name, tendency, frozenset(character), frozenset(anatomy_list))]}``."""
    return {as_str(r.get("id")): _events(r) for r in records(path)}


def _terms(value) -> list[str]:
    if isinstance(value, list):
        return [as_str(v).strip() for v in value if as_str(v).strip()]
    return [t.strip() for t in as_str(value).split("##") if t.strip()]


def read_cdn_gold(path) -> dict:
    """``{text_key: [standard terms]}`` (``normalized_result`` split at ``##``)."""
    recs = records(path)
    return {k: _terms(r.get("normalized_result")) for k, r in zip(keyed_by_text(r.get("text", "") for r in recs), recs)}


def _mdcfnpc_units(dialogs: list[dict]) -> dict:
    out = {}
    for d in dialogs:
        did = as_str(d.get("dialog_id"))
        for s in d.get("dialog_info") or []:
            if not isinstance(s, dict):
                continue
            sid = as_str(s.get("sentence_id"))
            for n in s.get("ner") or []:
                rng = n.get("range") if isinstance(n, dict) else None
                if not isinstance(rng, (list, tuple)) or len(rng) != 2:
                    continue
                a, b = safe_int(rng[0]), safe_int(rng[1])
                if a is None or b is None:
                    continue
                out[(did, sid, a, b)] = as_str(n.get("attr"))
    return out


def read_mdcfnpc_gold(path) -> dict:
    """``{(dialog_id, sentence_id, start, end_exclusive): attr}`` for every annotated finding."""
    return _mdcfnpc_units(records(path))


# --------------------------------------------------------------------------- classification tasks


def read_labels(path, field: str = "label") -> dict:
    """``{id: label}`` from a JSON array (or JSONL) of ``{id, ..., label}`` records (records without a label are skipped),
    or from a plain ``{id: label}`` object."""
    data = read_json_or_jsonl(path)
    if len(data) == 1 and isinstance(data[0], dict) and "id" not in data[0]:  # a plain {id: label} mapping
        return {as_str(k): as_str(v).strip() for k, v in data[0].items() if v is not None and not isinstance(v, (dict, list))}
    out = {}
    for r in data:
        if isinstance(r, dict) and "id" in r and r.get(field) is not None:
            out[as_str(r["id"])] = as_str(r[field]).strip()
    return out


# --------------------------------------------------------------------------- IMCS-V2 dialogues


def dialogues(path) -> dict:
    data = read_json(path)
    return {as_str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def bio_chunks(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entity chunks ``(type, start, end_inclusive)`` exactly as the IMCS authors' ``get_entity_bio``.

    An ``I-`` tag extends the open chunk only when its type matches (otherwise the chunk stays
    open without growing); an ``I-`` with no open chunk, or ``O``, closes the chunk.
    """
    chunks: list[tuple[str, int, int]] = []
    ctype, start, end = None, -1, -1
    last = len(tags) - 1
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            if end != -1:
                chunks.append((ctype, start, end))
            ctype, start, end = tag.split("-")[1], i, i
            if i == last:
                chunks.append((ctype, start, end))
        elif tag.startswith("I-") and start != -1:
            if tag.split("-")[1] == ctype:
                end = i
            if i == last:
                chunks.append((ctype, start, end))
        else:
            if end != -1:
                chunks.append((ctype, start, end))
            ctype, start, end = None, -1, -1
    return chunks


def read_ner_gold(path) -> dict:
    """``{(dialogue_id, sentence_id): [tags]}`` from the dialogues' ``BIO_label``."""
    out = {}
    for did, d in dialogues(path).items():
        for s in d.get("dialogue") or []:
            out[(did, as_str(s.get("sentence_id")))] = as_str(s.get("BIO_label")).split(" ")
    return out


def read_dac_gold(path) -> dict:
    """``{(dialogue_id, sentence_id): dialogue_act}``."""
    return {(did, as_str(s.get("sentence_id"))): as_str(s.get("dialogue_act"))
            for did, d in dialogues(path).items() for s in d.get("dialogue") or []}


def read_sr_gold(path) -> dict:
    """``{"utterance": {(did, sid): {symptom: type}}, "dialogue": {did: {symptom: type}}}``."""
    utt, dia = {}, {}
    for did, d in dialogues(path).items():
        dia[did] = {as_str(k): as_str(v) for k, v in ((d.get("implicit_info") or {}).get("Symptom") or {}).items()}
        for s in d.get("dialogue") or []:
            info = s.get("local_implicit_info")
            if info is None:
                info = dict(zip(s.get("symptom_norm") or [], s.get("symptom_type") or []))
            utt[(did, as_str(s.get("sentence_id")))] = {as_str(k): as_str(v) for k, v in info.items()}
    return {"utterance": utt, "dialogue": dia}


def read_mrg_gold(path) -> dict:
    """``{dialogue_id: [report dicts]}`` (two reference reports per dialogue in IMCS-V2)."""
    return {did: [r for r in d.get("report") or [] if isinstance(r, dict)] for did, d in dialogues(path).items()}


# --------------------------------------------------------------------------- MedDG and Text2DT


def strip_speaker(text: str) -> str:
    text = as_str(text).strip()
    for prefix in ("医生：", "医生:", "Doctor:", "doctor:"):
        if text.startswith(prefix):
            return text[len(prefix):].strip()
    return text


def read_meddg_gold(path) -> dict:
    """``{id: gold response}`` from ``MedDG_dev.json`` (records ``{id, history, output}``)."""
    data = read_json(path)
    return {as_str(r.get("id")): strip_speaker(r.get("output")) for r in data if isinstance(r, dict) and r.get("output") is not None} if isinstance(data, list) else {}


def read_text2dt_gold(path) -> dict:
    """``{text_key: tree}`` from ``Text2DT_dev.json``."""
    data = read_json_or_jsonl(path)
    recs = [r for r in (data if isinstance(data, list) else [data]) if isinstance(r, dict)]
    return {k: r.get("tree") or [] for k, r in zip(keyed_by_text(as_str(r.get("text")) for r in recs), recs)}


GOLD_READERS: dict[str, Callable] = {
    "CMeEE-V2": read_cmeee_gold, "CMeIE": read_cmeie_gold, "CMedCausal": read_causal_gold, "CHIP-CDEE": read_cdee_gold,
    "CHIP-CDN": read_cdn_gold, "CHIP-CTC": read_labels, "KUAKE-QIC": read_labels, "CHIP-STS": read_labels,
    "KUAKE-QTR": read_labels, "KUAKE-QQR": read_labels, "CHIP-MDCFNPC": read_mdcfnpc_gold, "IMCS-V2-NER": read_ner_gold,
    "IMCS-V2-DAC": read_dac_gold, "IMCS-V2-SR": read_sr_gold, "IMCS-V2-MRG": read_mrg_gold, "MedDG": read_meddg_gold,
    "Text2DT": read_text2dt_gold,
}  # fmt: skip
"""Native gold file -> ``{unit_key: gold}``, for every task answered by generation."""
