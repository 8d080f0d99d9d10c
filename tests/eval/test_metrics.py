"""Scorers against hand-computed cases, and score-only runs on the shipped sample files (no model, no Ray)."""

from __future__ import annotations

import copy
import json
import math

import pytest

from medgo.eval.metrics import ASSETS, TASKS, get_task, score_promptcblue, score_task
from medgo.eval.metrics import classification as cls
from medgo.eval.metrics import extraction as ext
from medgo.eval.metrics import imcs, meddg, text2dt
from medgo.data.cblue_gold import bio_chunks
from medgo.data.files import TaskFileError, read_json, read_jsonl
from medgo.eval.metrics.common import classification_scores
from medgo.eval.metrics.promptcblue import score_promptcblue_rows, structure

PROMPT = ASSETS.parent / "promptcblue"


def f1(tp, n_pred, n_gold):
    p, r = tp / n_pred, tp / n_gold
    return 100 * 2 * p * r / (p + r)


def dump(tmp_path, name, obj, jsonl=False):
    path = tmp_path / name
    with path.open("w", encoding="utf-8") as f:
        if jsonl:
            for r in obj:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            json.dump(obj, f, ensure_ascii=False)
    return path


# --------------------------------------------------------------------------- registry


def test_registry_covers_the_18_tasks():
    assert list(TASKS) == [
        "CMeEE-V2", "CMeIE", "CMedCausal", "CHIP-CDEE", "CHIP-CDN", "CHIP-CTC", "KUAKE-QIC", "CHIP-STS", "KUAKE-QTR",
        "KUAKE-QQR", "KUAKE-IR", "CHIP-MDCFNPC", "IMCS-V2-NER", "IMCS-V2-DAC", "IMCS-V2-SR", "IMCS-V2-MRG", "MedDG", "Text2DT",
    ]  # fmt: skip
    for spec in TASKS.values():
        assert spec.gold_path.exists(), spec.name
        assert spec.description and spec.metric
    assert get_task("CMeEE") is TASKS["CMeEE-V2"] and get_task("CMeIE-V2") is TASKS["CMeIE"]
    with pytest.raises(KeyError):
        get_task("NOPE")
    with pytest.raises(ValueError):
        score_task("CHIP-STS", TASKS["CHIP-STS"].gold_path, TASKS["CHIP-STS"].gold_path, metric_set="other")


def test_unreadable_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")
    with pytest.raises(TaskFileError, match="bad.json"):
        score_task("CMeEE-V2", TASKS["CMeEE-V2"].gold_path, bad)
    with pytest.raises(TaskFileError, match="no such file"):
        score_task("CMeEE-V2", tmp_path / "missing.json", bad)


# --------------------------------------------------------------------------- CMeEE-V2


def test_cmeee_inclusive_end_and_strict_match():
    gold = {"哮喘发作": {"text": "哮喘发作", "entities": [(0, 1, "dis")]}}
    assert ext.score_cmeee(gold, {"哮喘发作": [(0, 1, "dis")]})["score"] == 100.0
    assert ext.score_cmeee(gold, {"哮喘发作": [(0, 2, "dis")]})["score"] == 0.0  # end is inclusive: 0..2 is "哮喘发"
    assert ext.score_cmeee(gold, {"哮喘发作": [(0, 1, "sym")]})["score"] == 0.0  # wrong type


def test_cmeee_duplicates_out_of_set_missing_and_empty():
    gold = {"a": {"text": "a", "entities": [(0, 1, "dis"), (3, 4, "sym"), (6, 6, "bod")]},
            "b": {"text": "b", "entities": [(0, 2, "dru")]}}
    pred = {"a": [(0, 1, "dis"), (0, 1, "dis"), (3, 4, "sym"), (6, 6, "xyz")]}  # a duplicate, an unknown type, b missing
    r = ext.score_cmeee(gold, pred)
    # units: gold 4; predicted {dis, sym, xyz} = 3 distinct, 2 right -> P 2/3, R 2/4
    assert r["score"] == pytest.approx(f1(2, 3, 4), abs=1e-4)
    assert (r["n_duplicates"], r["out_of_label_set"], r["n_missing"], r["n_gold"], r["n_pred"]) == (1, 1, 1, 2, 1)
    assert ext.score_cmeee(gold, {})["score"] == 0.0


def test_cmeee_sample_file(tmp_path):
    spec = TASKS["CMeEE-V2"]
    assert score_task("CMeEE-V2", spec.gold_path, spec.gold_path)["score"] == 100.0
    recs = read_json(spec.gold_path)
    assert len(recs[0]["entities"]) == 4 and sum(len(r["entities"]) for r in recs) == 46
    recs[0]["entities"] = []  # the model found nothing in the first sentence: 42 of 46 entities left
    r = score_task("CMeEE-V2", spec.gold_path, dump(tmp_path, "CMeEE-V2_test.json", recs))
    assert r["score"] == pytest.approx(f1(42, 42, 46), abs=1e-4) == pytest.approx(95.4545, abs=1e-4)
    assert r["recall"] == pytest.approx(100 * 42 / 46, abs=1e-4) and r["precision"] == 100.0


# --------------------------------------------------------------------------- CMeIE


def test_cmeie_triples(tmp_path):
    gold = {"t": [("肺炎", "临床表现", "咳嗽"), ("肺炎", "临床表现", "发热")]}
    pred = {"t": [("肺炎", "临床表现", "咳嗽"), ("肺炎", "临床表现", "咳嗽"), ("肺炎", "未知关系", "发热")]}
    r = ext.score_cmeie(gold, pred)
    assert r["score"] == pytest.approx(f1(1, 2, 2), abs=1e-4) and r["n_duplicates"] == 1 and r["out_of_label_set"] == 1
    spec = TASKS["CMeIE"]
    assert score_task("CMeIE", spec.gold_path, spec.gold_path)["score"] == 100.0
    rows = read_jsonl(spec.gold_path)
    assert len(rows[0]["spo_list"]) == 4 and sum(len(r["spo_list"]) for r in rows) == 26
    rows[0]["spo_list"] = []
    r = score_task("CMeIE", spec.gold_path, dump(tmp_path, "CMeIE_test.jsonl", rows, jsonl=True))
    assert r["score"] == pytest.approx(f1(22, 22, 26), abs=1e-4)


# --------------------------------------------------------------------------- CMedCausal


def test_causal_macro_over_three_relations():
    c1, c2, h1, cond = ((0, 2), 1, (3, 5)), ((6, 8), 1, (9, 11)), ((0, 2), 3, (12, 14)), ((15, 17), 2, ((0, 2), 1, (3, 5)))
    gold = {"t": [c1, c2, h1, cond]}
    pred = {"t": [c1, cond, ((0, 2), 3, (12, 13))]}  # one causal right, conditional right, hypernym span wrong
    r = ext.score_causal(gold, pred)
    causal = f1(1, 1, 2)  # 66.667
    assert r["f1_causal"] == pytest.approx(causal, abs=1e-4) and r["f1_conditional"] == 100.0 and r["f1_hypernym"] == 0.0
    assert r["score"] == pytest.approx((causal + 100 + 0) / 3, abs=1e-3)
    assert r["micro_f1"] == pytest.approx(f1(2, 3, 4), abs=1e-4)


def test_causal_exclusive_end_and_located_mentions(tmp_path):
    text = "熬夜导致头痛"
    gold = [{"text": text, "relation_of_mention": [{"head": {"mention": "熬夜", "start_idx": 0, "end_idx": 2}, "relation": 1,
                                                    "tail": {"type": "mention", "mention": "头痛", "start_idx": 4, "end_idx": 6}}]}]
    assert text[0:2] == "熬夜" and text[4:6] == "头痛"  # end_idx is exclusive
    no_idx = [{"text": text, "relation_of_mention": [{"head": {"mention": "熬夜"}, "relation": 1, "tail": {"type": "mention", "mention": "头痛"}}]}]
    g = dump(tmp_path, "g.json", gold)
    r = score_task("CMedCausal", g, dump(tmp_path, "p.json", no_idx))
    assert r["f1_causal"] == r["micro_f1"] == 100.0  # spans found in the text
    assert r["score"] == pytest.approx(100 / 3, abs=1e-3)  # the macro average always divides by the three relation types
    inclusive = copy.deepcopy(gold)
    inclusive[0]["relation_of_mention"][0]["tail"]["end_idx"] = 5
    assert score_task("CMedCausal", g, dump(tmp_path, "p2.json", inclusive))["f1_causal"] == 0.0


def test_causal_sample_file(tmp_path):
    spec = TASKS["CMedCausal"]
    assert score_task("CMedCausal", spec.gold_path, spec.gold_path)["score"] == 100.0
    recs = read_json(spec.gold_path)
    assert [r["relation"] for r in recs[1]["relation_of_mention"]] == [2]
    recs[1]["relation_of_mention"] = []  # 2 of the 3 conditional relations left; causal and hypernym untouched
    r = score_task("CMedCausal", spec.gold_path, dump(tmp_path, "CMedCausal_test.json", recs))
    assert r["f1_conditional"] == pytest.approx(f1(2, 2, 3), abs=1e-4)
    assert r["score"] == pytest.approx((100 + 80 + 100) / 3, abs=1e-3)


# --------------------------------------------------------------------------- CHIP-CDEE, CHIP-CDN, CHIP-MDCFNPC


def test_cdee_event_level_sets(tmp_path):
    gold = [{"id": 1, "text": "x", "event": [{"core_name": "咳嗽", "tendency": "", "character": ["持续", "夜间"], "anatomy_list": []},
                                             {"core_name": "发热", "tendency": "否定", "character": [], "anatomy_list": []}]}]
    pred = [{"id": 1, "text": "x", "event": [{"core_name": "咳嗽", "tendency": "", "character": ["夜间", "持续"], "anatomy_list": []},
                                             {"core_name": "发热", "tendency": "肯定", "character": [], "anatomy_list": []}]}]
    r = score_task("CHIP-CDEE", dump(tmp_path, "g.json", gold), dump(tmp_path, "p.json", pred))
    assert r["score"] == 50.0 and r["out_of_label_set"] == 1 and r["core_name_f1"] == 100.0  # list order ignored
    spec = TASKS["CHIP-CDEE"]
    recs = read_json(spec.gold_path)
    assert sum(len(r["event"]) for r in recs) == 19
    recs[0]["event"][0]["tendency"] = "否定"
    assert score_task("CHIP-CDEE", spec.gold_path, dump(tmp_path, "t.json", recs))["score"] == pytest.approx(f1(18, 19, 19), abs=1e-4)


def test_cdn_set_f1_and_vocabulary(tmp_path):
    spec = TASKS["CHIP-CDN"]
    assert score_task("CHIP-CDN", spec.gold_path, spec.gold_path)["score"] == 100.0
    recs = read_json(spec.gold_path)
    assert sum(len(r["normalized_result"].split("##")) for r in recs) == 14
    recs[0]["normalized_result"] += "##肺炎##不在词表里的词##肺炎"
    (tmp_path / "icd10_vocab.tsv").write_text((spec.gold_path.with_name("icd10_vocab.tsv")).read_text(encoding="utf-8"), encoding="utf-8")
    g = dump(tmp_path, "CHIP-CDN_dev.json", read_json(spec.gold_path))
    r = score_task("CHIP-CDN", g, dump(tmp_path, "CHIP-CDN_test.json", recs))
    assert r["score"] == pytest.approx(f1(14, 16, 14), abs=1e-4)
    assert r["out_of_label_set"] == 1 and r["n_duplicates"] == 1


def test_mdcfnpc(tmp_path):
    spec = TASKS["CHIP-MDCFNPC"]
    assert score_task("CHIP-MDCFNPC", spec.gold_path, spec.gold_path)["score"] == 100.0
    rows = read_jsonl(spec.gold_path)
    assert sum(len(s["ner"]) for r in rows for s in r["dialog_info"]) == 31
    rows[0]["dialog_info"][0]["ner"][0]["attr"] = "阴性"
    rows[0]["dialog_info"][1]["ner"][0]["attr"] = "可能"  # outside the label set
    r = score_task("CHIP-MDCFNPC", spec.gold_path, dump(tmp_path, "p.jsonl", rows, jsonl=True))
    assert r["score"] == pytest.approx(f1(29, 31, 31), abs=1e-4)
    assert r["accuracy"] == pytest.approx(100 * 29 / 31, abs=1e-4) and r["out_of_label_set"] == 1


# --------------------------------------------------------------------------- classification


def test_macro_f1_ignores_junk_labels():
    gold = {"1": "Age", "2": "Age", "3": "Disease"}
    pred = {"1": "Age", "2": "no idea", "3": "Disease"}
    r = cls.score_ctc(gold, pred)
    # Age: P 1, R 1/2, F 2/3; Disease: F 1; the junk label is wrong but not a third class
    assert r["score"] == pytest.approx(100 * (2 / 3 + 1) / 2, abs=1e-4) and r["out_of_label_set"] == 1
    assert cls.score_ctc(gold, {})["score"] == 0.0 and cls.score_ctc(gold, {})["n_missing"] == 3


def test_macro_f1_hand_case():
    # a: P 1/3 R 1/2 F 0.4; b: P 2/3 R 2/3 F 2/3; c: F 0 -> macro F1 (0.4 + 2/3 + 0) / 3
    res = classification_scores(dict(enumerate("aabbbc")), dict(enumerate("abbbaa")), "abc")
    assert res["macro_f1"] == pytest.approx(100 * (0.4 + 2 / 3) / 3, abs=1e-4) and res["accuracy"] == pytest.approx(100 * 3 / 6)


@pytest.mark.parametrize("task,first_key,new_label,expected", [
    ("CHIP-CTC", "s1", "Disease", 100 * (9 + 2 / 3 + 2 / 3) / 11),  # Age loses recall, Disease precision
    ("KUAKE-QIC", "s1", "其他", 100 * 11 / 12),
    ("CHIP-STS", "1", "0", 100 * (2 * (5 / 6) / (1 + 5 / 6) + 2 * (6 / 7) / (6 / 7 + 1)) / 2),
    ("KUAKE-QTR", "s1", "0", 90.0),
    ("KUAKE-QQR", "s1", "0", 90.0),
])  # fmt: skip
def test_classification_sample_files(tmp_path, task, first_key, new_label, expected):
    spec = TASKS[task]
    assert score_task(task, spec.gold_path, spec.gold_path)["score"] == 100.0
    recs = read_json(spec.gold_path)
    assert recs[0]["id"] == first_key and recs[0]["label"] != new_label
    recs[0]["label"] = new_label
    r = score_task(task, spec.gold_path, dump(tmp_path, f"{task}_test.json", recs))
    assert r["score"] == pytest.approx(expected, abs=1e-3)


def test_classification_missing_ids_count_as_wrong(tmp_path):
    spec = TASKS["KUAKE-QIC"]
    recs = read_json(spec.gold_path)[:6]  # half the ids missing
    r = score_task("KUAKE-QIC", spec.gold_path, dump(tmp_path, "p.json", recs))
    assert r["score"] == 50.0 and r["n_missing"] == 6 and r["n_gold"] == 12


# --------------------------------------------------------------------------- KUAKE-IR


def test_ir_mrr_counts_every_judged_query(tmp_path):
    gold = {"q1": {"d1"}, "q2": {"d3"}, "q3": {"d9"}, "q4": {"d1"}}
    pred = {"q1": ["d1", "d2"], "q2": ["d1", "d2", "d3"], "q3": [f"x{i}" for i in range(10)] + ["d9"]}  # q3 rank 11, q4 missing
    r = cls.score_ir(gold, pred)
    assert r["score"] == pytest.approx(100 * (1 + 1 / 3) / 4, abs=1e-4) and r["n_missing"] == 1 and r["hit@10"] == 50.0
    spec = TASKS["KUAKE-IR"]
    assert score_task("KUAKE-IR", spec.gold_path, spec.gold_path)["score"] == 100.0  # ranked qid<TAB>doc lines
    lines = [l.split("\t") for l in spec.gold_path.read_text(encoding="utf-8").splitlines()]
    sub = [f"{q}\t{'x,' if i == 0 else ''}{d},{','.join(['y'] * 8)}" for i, (q, d) in enumerate(lines)]  # submission layout
    p = tmp_path / "KUAKE-IR_test.tsv"
    p.write_text("\n".join(sub) + "\n", encoding="utf-8")
    assert score_task("KUAKE-IR", spec.gold_path, p)["score"] == pytest.approx(100 * (0.5 + 11) / 12, abs=1e-4)


# --------------------------------------------------------------------------- IMCS-V2


def _imcs_pred(kind, mutate=None):
    d = read_json(TASKS["IMCS-V2-NER"].gold_path)
    if kind == "NER":
        out = {k: {t["sentence_id"]: t["BIO_label"] for t in v["dialogue"]} for k, v in d.items()}
    elif kind == "DAC":
        out = {k: {t["sentence_id"]: t["dialogue_act"] for t in v["dialogue"]} for k, v in d.items()}
    elif kind == "SR":
        out = {k: {**{t["sentence_id"]: dict(t["local_implicit_info"]) for t in v["dialogue"]}, "global": v["implicit_info"]["Symptom"]}
               for k, v in d.items()}
    else:
        out = {k: v["report"][0] for k, v in d.items()}
    if mutate:
        mutate(out)
    return out


def test_bio_chunks_follow_the_authors_rules():
    assert bio_chunks("B-Symptom I-Symptom O B-Drug".split()) == [("Symptom", 0, 1), ("Drug", 3, 3)]
    # an I- of another type keeps the chunk open without extending it; a dangling I- starts nothing
    assert bio_chunks("B-Symptom I-Drug I-Symptom".split()) == [("Symptom", 0, 2)]
    assert bio_chunks("B-Symptom I-Drug O".split()) == [("Symptom", 0, 0)]
    assert bio_chunks("O I-Symptom I-Symptom".split()) == []


def test_imcs_ner(tmp_path):
    gold = {("d", "1"): "B-Symptom I-Symptom O B-Drug I-Drug".split(), ("d", "2"): "O B-Operation".split()}
    pred = {("d", "1"): "B-Symptom I-Symptom O B-Drug O".split(), ("d", "2"): "O B-Operation O".split()}  # drug too short; length mismatch
    r = imcs.score_ner(gold, pred)
    assert r["score"] == pytest.approx(f1(1, 2, 3), abs=1e-4) and r["n_length_mismatch"] == 1
    assert r["per_type_f1"] == {"Symptom": 100.0, "Drug": 0.0, "Operation": 0.0}
    spec = TASKS["IMCS-V2-NER"]

    def drop_first(out):
        sent = out["20000001"]["1"]
        out["20000001"]["1"] = " ".join("O" for _ in sent.split())

    assert score_task("IMCS-V2-NER", spec.gold_path, dump(tmp_path, "a.json", _imcs_pred("NER")))["score"] == 100.0
    r = score_task("IMCS-V2-NER", spec.gold_path, dump(tmp_path, "b.json", _imcs_pred("NER", drop_first)))
    assert r["n_gold_units"] == 35 and r["score"] == pytest.approx(f1(34, 34, 35), abs=1e-4)


def test_imcs_dac(tmp_path):
    spec = TASKS["IMCS-V2-DAC"]
    assert score_task("IMCS-V2-DAC", spec.gold_path, dump(tmp_path, "a.json", _imcs_pred("DAC")))["score"] == 100.0

    def wrong(out):
        out["20000001"]["1"] = "Diagnose"
        out["20000001"]["2"] = "Chit-chat"  # outside the 16 acts

    r = score_task("IMCS-V2-DAC", spec.gold_path, dump(tmp_path, "b.json", _imcs_pred("DAC", wrong)))
    assert r["score"] == 96.0 and r["out_of_label_set"] == 1 and r["n_gold"] == 50


def test_imcs_sr(tmp_path):
    gold = {"utterance": {("d", "1"): {"发热": "0", "咳嗽": "1"}, ("d", "2"): {"咳痰": "2"}},
            "dialogue": {"d": {"发热": "0", "咳嗽": "1", "咳痰": "2"}}}
    pred = {"utterance": {("d", "1"): {"发热": "1", "咳嗽": "1", "新词": "1"}, ("d", "2"): {"咳痰": "7"}},
            "dialogue": {"d": {"发热": "0", "咳嗽": "1"}}}
    r = imcs.score_sr(gold, pred, vocab={"发热", "咳嗽", "咳痰"})
    # utterance: gold 3 units, predicted {发热:1, 咳嗽:1} (新词 out of vocabulary, type 7 invalid) -> 1 right
    assert r["score"] == pytest.approx(f1(1, 2, 3), abs=1e-4) and r["out_of_label_set"] == 2
    assert r["dialogue_f1"] == pytest.approx(f1(2, 2, 3), abs=1e-4)
    spec = TASKS["IMCS-V2-SR"]
    assert score_task("IMCS-V2-SR", spec.gold_path, dump(tmp_path, "a.json", _imcs_pred("SR")))["score"] == 100.0

    def flip(out):
        out["20000001"]["1"]["发热"] = "1"

    r = score_task("IMCS-V2-SR", spec.gold_path, dump(tmp_path, "b.json", _imcs_pred("SR", flip)))
    assert r["n_gold_units"] == 23 and r["score"] == pytest.approx(f1(22, 23, 23), abs=1e-4) and r["dialogue_f1"] == 100.0


def test_imcs_mrg(tmp_path):
    # characters: hyp "ab" vs ref "abc": R-1 P1 R2/3; R-2 {ab} vs {ab,bc}; R-L 2 of 3 distinct tokens
    r = imcs.score_mrg({"d": ["abc"]}, {"d": "ab"})
    r1, r2 = 2 * (2 / 3) / (1 + 2 / 3), 2 * 0.5 / 1.5
    assert r["rouge-1"] == pytest.approx(100 * r1, abs=1e-4) and r["rouge-2"] == pytest.approx(100 * r2, abs=1e-4)
    assert r["score"] == pytest.approx(100 * (r1 + r2 + r1) / 3, abs=1e-4)
    assert imcs.score_mrg({"d": ["abc"]}, {})["score"] == 0.0
    spec = TASKS["IMCS-V2-MRG"]
    gold = spec.read_gold(spec.gold_path)
    both = score_task("IMCS-V2-MRG", spec.gold_path, dump(tmp_path, "a.json", _imcs_pred("MRG")))
    second_only = imcs.score_mrg({k: v[1:] for k, v in gold.items()}, {k: v[0] for k, v in gold.items()})
    first_only = imcs.score_mrg({k: v[:1] for k, v in gold.items()}, {k: v[0] for k, v in gold.items()})
    assert first_only["score"] == 100.0  # a report scored against itself
    # each dialogue averages its two references, so copying reference 1 scores half-way to 100
    assert both["score"] == pytest.approx((100 + second_only["score"]) / 2, abs=1e-3) and both["score"] < 100
    assert both["bleu-4"] > 0


# --------------------------------------------------------------------------- MedDG


def test_meddg_entities_and_bleu(tmp_path):
    ents = ["胃镜", "奥美拉唑", "腹痛", "时长"]
    gold = {"1": "建议做胃镜，先吃奥美拉唑", "2": "腹痛多久了？"}
    pred = {"1": "建议做胃镜检查", "2": "疼了多长时间"}
    r = meddg.score_meddg(gold, pred, ents)
    # gold entities {胃镜, 奥美拉唑} + {腹痛, 时长}; predicted {胃镜} + {时长}
    assert r["score"] == pytest.approx(f1(2, 2, 4), abs=1e-4)
    same = meddg.score_meddg({"1": "建议做胃镜检查"}, {"1": "建议做胃镜检查"}, ents)
    assert same["score"] == 100.0 and same["bleu-1"] == pytest.approx(400 / 3, abs=1e-3)  # method7 smoothing: 4/3
    assert meddg.score_meddg({"1": "建议做胃镜检查"}, {"1": "胃镜"}, ents)["bleu-1"] == 0.0  # 4 tokens or fewer score 0
    spec = TASKS["MedDG"]
    assert score_task("MedDG", spec.gold_path, spec.gold_path)["score"] == 100.0
    recs = read_json(spec.gold_path)
    assert recs[0]["output"] == "建议做个胃镜，先吃奥美拉唑"  # entities 胃镜, 奥美拉唑; 13 in the whole file
    recs[0]["output"] = ""
    r = score_task("MedDG", spec.gold_path, dump(tmp_path, "MedDG_test.json", recs))
    assert r["n_gold_units"] == 13 and r["score"] == pytest.approx(f1(11, 11, 13), abs=1e-4)


@pytest.mark.filterwarnings("ignore::UserWarning")
def _node(role, triples, rel="null"):
    return {"role": role, "triples": [list(t) for t in triples], "logical_rel": rel}


def test_text2dt_hand_case():
    t1, t2, t3 = ("p", "临床表现", "a"), ("p", "治疗药物", "b"), ("p", "治疗药物", "c")
    gold = {"x": [_node("C", [t1]), _node("D", [t2]), _node("D", [])]}
    pred = {"x": [_node("C", [t1]), _node("D", [t3]), _node("D", [])]}
    r = text2dt.score_text2dt(gold, pred)
    # paths: the right one (C -R-> empty D) is right, the left one is not; triples {t1,t2} vs {t1,t3}
    assert r["path_f1"] == pytest.approx(50.0, abs=1e-3) and r["score"] == r["path_f1"]
    assert r["triple_f1"] == pytest.approx(50.0, abs=1e-3) and r["node_f1"] == pytest.approx(50.0, abs=1e-3)
    # edit distance 2 (t2 and t3 differ) of at most (2 triples + 2*2 nodes) * 2 = 12
    assert r["edit_ratio"] == pytest.approx(100 * (1 - 2 / 12), abs=1e-3) and r["edit_distance_mean"] == pytest.approx(2, abs=1e-4)
    assert r["tree_accuracy"] < 0.001
    same = text2dt.score_text2dt(gold, gold)
    assert same["path_f1"] == same["tree_accuracy"] == same["edit_ratio"] == 100.0


def test_text2dt_variants_and_ill_formed_trees():
    t1 = ("p", "临床表现", "a")
    gold = {"x": [_node("C", [t1]), _node("D", []), _node("D", [])]}
    other_rel = {"x": [_node("C", [t1], "and"), _node("D", []), _node("D", [])]}
    # the CHIP-2022 script's tree accuracy ignores logical relations, the PromptCBLUE copy does not
    assert text2dt.score_trees(gold, other_rel, "chip2022")["tree_accuracy"] == 100.0
    assert text2dt.score_trees(gold, other_rel, "promptcblue")["tree_accuracy"] < 0.001
    broken = {"x": [_node("C", [t1]), _node("Q", [("x",)]), _node("C", [])]}  # bad role, bad triple, C without children
    r = text2dt.score_text2dt(gold, broken)
    assert 0 <= r["score"] < 100 and r["out_of_label_set"] == 2
    assert text2dt.score_text2dt(gold, {})["n_missing"] == 1


def test_text2dt_sample_file(tmp_path):
    spec = TASKS["Text2DT"]
    assert score_task("Text2DT", spec.gold_path, spec.gold_path)["score"] == 100.0
    recs = read_json(spec.gold_path)
    assert recs[0]["tree"][1]["triples"][0][2] == "布洛芬"
    recs[0]["tree"][1]["triples"][0][2] = "阿司匹林"  # 1 of the 25 decision paths now differs
    r = score_task("Text2DT", spec.gold_path, dump(tmp_path, "Text2DT_test.json", recs))
    assert r["path_f1"] == pytest.approx(96.0, abs=1e-3)


# --------------------------------------------------------------------------- every shipped gold against itself


@pytest.mark.parametrize("task", [t for t in TASKS if not t.startswith("IMCS") and t != "KUAKE-IR"])
def test_gold_against_itself_scores_100(task):
    spec = TASKS[task]
    r = score_task(task, spec.gold_path, spec.gold_path)
    assert r["score"] == 100.0 and r["n_missing"] == 0 and r["out_of_label_set"] == 0 and r["n_gold"] > 0


# --------------------------------------------------------------------------- PromptCBLUE


def test_promptcblue_weighted_f1_is_not_micro():
    y_true, y_pred = ["是的", "是的", "是的", "不是"], ["是的", "是的", "不是", "不是"]
    # 是的: P 1, R 2/3, F 0.8 (support 3); 不是: P 1/2, R 1, F 2/3 (support 1)
    gold = [{"sample_id": str(i), "task_dataset": "CHIP-STS", "target": t, "answer_choices": ["是的", "不是"]} for i, t in enumerate(y_true)]
    pred = [{"sample_id": str(i), "target": t} for i, t in enumerate(y_pred)]
    res = score_promptcblue_rows(gold, pred)["tasks"]["CHIP-STS"]
    assert res["score"] == pytest.approx(100 * (0.8 * 0.75 + (2 / 3) * 0.25), abs=1e-4)
    assert res["score"] != pytest.approx(75.0)  # micro-F1 (= accuracy) would be 3/4


def test_promptcblue_extraction_deduplicates_tuples():
    gold = [{"sample_id": "1", "task_dataset": "CMeEE-V2", "answer_choices": ["疾病", "药物"], "target": "疾病实体：哮喘，肺炎"}]
    pred = [{"sample_id": "1", "target": "疾病实体：哮喘，哮喘\n药物实体：布洛芬\n疾病实体：哮喘"}]
    res = score_promptcblue_rows(gold, pred)["tasks"]["CMeEE-V2"]
    # predicted tuples {哮喘/疾病, 布洛芬/药物}: 1 right of 2; gold 2
    assert res["score"] == pytest.approx(50.0) and res["precision"] == 50.0


def test_promptcblue_structure_rules():
    assert structure("CHIP-STS", " 相同 ") == "是的"
    assert structure("CHIP-MDCFNPC", "判断：\n发热：阳性\n咳嗽：可能\n乱写", ["阳性", "阴性"]) == [
        {"entity": "发热", "attr": "阳性"}, {"entity": "咳嗽", "attr": "不标注"}]
    assert structure("CHIP-CDN", "标准化为：\n肺炎，哮喘，词表外", ["肺炎", "哮喘"]) == [
        {"entity": "哮喘", "type": "normalization"}, {"entity": "肺炎", "type": "normalization"}]
    assert structure("CMedCausal", "因果关系三元组如下：\n头实体：熬夜；尾实体：头痛\n坏行", lenient=True) == [
        {"predicate": "因果关系", "subject": "熬夜", "object": "头痛"}]
    with pytest.raises(TaskFileError, match="'坏行': no '头实体：'"):
        structure("CMedCausal", "因果关系三元组如下：\n头实体：熬夜；尾实体：头痛\n坏行")
    assert structure("Text2DT", "胡言乱语", lenient=True) == [{"role": "D", "logical_rel": "null", "triples": []}]
    # a CHIP-CDEE attribute is matched against each key after the previous key's prefix is removed
    assert structure("CHIP-CDEE", "事件：\n主体词：描述词：加重") == [{"主体词": "描述词：加重", "发生状态": "", "描述词": ["加重"], "解剖部位": []}]
    # Text2DT: an item without a length empties the triple list; a 3-character string is a triple
    assert structure("Text2DT", "n：role=D；triples=[('a', 'b', 'c'), 5]")[0]["triples"] == []
    assert structure("Text2DT", "n：role=D；triples=['abc']")[0]["triples"] == ["abc"]
    assert structure("IMCS-V2-MRG", "报告：\n主诉：发热\n诊断：感冒") == {"主诉": "发热", "诊断": "感冒"}


def test_promptcblue_sample_files():
    gold, pred = PROMPT / "dev.json", PROMPT / "dev_predictions.json"
    self_score = score_promptcblue(gold, gold)
    assert self_score["score"] == 100.0 and self_score["n_tasks"] == 18
    r = score_promptcblue(gold, pred, lenient=True)  # one KUAKE-QTR sample is unanswered
    t = r["tasks"]
    # CMeEE-V2: 14 gold tuples; a dropped 医疗程序 line and a half-width colon (the prefix stays in the mention) -> 12 of 13
    assert t["CMeEE-V2"]["score"] == pytest.approx(f1(12, 13, 14), abs=1e-4)
    # CHIP-CTC (macro): 年龄 F 2/3, 知情同意 F 1, 疾病 and 过敏耐受 0, and the junk reply a class of its own with F 0
    assert t["CHIP-CTC"]["score"] == pytest.approx(100 * (2 / 3 + 1) / 5, abs=1e-4) and t["CHIP-CTC"]["out_of_label_set"] == 1
    # CHIP-STS (weighted): gold 是的,不是,是的; reply 相同 counts as 是的 -> 是的 F .8 (w 2/3), 不是 F 0
    assert t["CHIP-STS"]["score"] == pytest.approx(100 * 0.8 * 2 / 3, abs=1e-4)
    # KUAKE-QTR: the unanswered sample becomes the first label, 完全不匹配或者没有参考价值
    assert t["KUAKE-QTR"]["n_missing"] == 1 and t["KUAKE-QTR"]["score"] == pytest.approx(100 * (1 + 2 * 2 / 3) / 3, abs=1e-4)
    # KUAKE-QIC (macro): an empty reply becomes 非上述类型 -> 3 of 5 classes right
    assert t["KUAKE-QIC"]["score"] == pytest.approx(60.0)
    # IMCS-V2-DAC (macro): 询问 F 2/3, 回答 F 0.8
    assert t["IMCS-V2-DAC"]["score"] == pytest.approx(100 * (2 / 3 + 0.8) / 2, abs=1e-4)
    assert r["score"] == pytest.approx(sum(v["score"] for v in t.values()) / 18, abs=1e-3) and r["score"] < 100
    assert score_task("CHIP-CTC", gold, pred, metric_set="promptcblue")["score"] == t["CHIP-CTC"]["score"]
    assert score_task("CMeIE", gold, pred, metric_set="promptcblue")["score"] == t["CMeIE-V2"]["score"]
    with pytest.raises(TaskFileError, match="KUAKE-QTR: 1 gold samples have no prediction"):
        score_task("KUAKE-QTR", gold, pred, metric_set="promptcblue")


def test_promptcblue_empty_and_duplicate_predictions(tmp_path):
    gold = PROMPT / "dev.json"
    empty = score_promptcblue(gold, dump(tmp_path, "empty.json", [], jsonl=True), lenient=True)
    assert all(v["n_missing"] == v["n_gold"] for v in empty["tasks"].values()) and empty["score"] < 30
    rows = read_jsonl(gold)
    dup = dump(tmp_path, "dup.json", rows + rows[:3] + [{"sample_id": "nope", "target": "x"}], jsonl=True)
    r = score_promptcblue(gold, dup, lenient=True)
    assert r["score"] == 100.0 and r["n_duplicates"] == 3 and r["n_extra"] == 1
    assert not math.isnan(r["score"])
