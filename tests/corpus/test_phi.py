"""Table tests of the PHI recognisers and the generated PHI test set (recall and false alarms)."""

from __future__ import annotations

import json
import random
import re

import pytest

from medgo.assets import CORPUS_DIR
from medgo.corpus.phi import PHI_TYPES, deidentify, id_check_digit, is_valid_id
from medgo.corpus.phi_testset import clean_sentences, generate, iso7064_check, resident_id, score


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("11010519491231002X", True),  # the standard's own example
        ("11010519491231002x", True),
        ("110105194912310021", False),  # wrong check digit
        ("440106199510223561", False),
        ("110105194902300021", False),  # 30 February
        ("11010519491231002", False),  # 17 digits
    ],
)
def test_id_check_digit(number, valid):
    assert is_valid_id(number) is valid


def test_check_digit_agrees_with_iso7064():
    rng = random.Random(3)
    for _ in range(200):
        first17 = "".join(str(rng.randint(0, 9)) for _ in range(17))
        assert id_check_digit(first17) == iso7064_check(first17)


def test_generated_ids_are_valid_and_invalid_ones_are_left_alone():
    rng = random.Random(5)
    for _ in range(50):
        good, bad = resident_id(rng), resident_id(rng, valid=False)
        assert deidentify(f"身份证号：{good}。")[0] == "身份证号：[身份证号]。"
        assert deidentify(f"编号{bad}。")[0] == f"编号{bad}。"


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("联系电话：13812345678。", "联系电话：[电话]。", "phone"),
        ("手机 138-1234-5678", "手机 [电话]", "phone"),
        ("电话+86 139 1234 5678，", "电话[电话]，", "phone"),
        ("科室电话010-64041990转123。", "科室电话[电话]。", "phone"),
        ("(021)64041990", "[电话]", "phone"),
        ("电话：84327200", "电话：[电话]", "phone"),
        ("住院号：2023081547，", "住院号：[病历号]，", "record_number"),
        ("病案号BA0045821，", "病案号[病历号]，", "record_number"),
        ("门诊号：MZ-0012345", "门诊号：[病历号]", "record_number"),
        ("医保卡号为ZY75289435。", "医保卡号为[病历号]。", "record_number"),
        ("床号：CCU-05，", "床号：[床号]，", "bed_number"),
        ("入住骨科12床。", "入住骨科[床号]床。", "bed_number"),
        ("邮箱zhang.wei01@163.com。", "邮箱[邮箱]。", "email"),
        ("出生日期：1985年3月12日，", "出生日期：[出生日期]，", "birth_date"),
        ("1970/10/8出生", "[出生日期]出生", "birth_date"),
        ("住址：上海市浦东新区杨高中路2761弄12号501室。", "住址：[地址]。", "address"),
        ("家住湖南省长沙市岳麓区麓山南路932号3栋201室，", "家住[地址]，", "address"),
        ("家庭住址：陕西省西安市雁塔区丈八沟街道东三村八组27号。", "家庭住址：[地址]。", "address"),
        ("北京市朝阳区安立路66号院7号楼3单元402", "[地址]", "address"),
        ("患者王建国，男，66岁，", "患者[姓名]，男，66岁，", "name"),
        ("姓名：欧阳晓燕，", "姓名：[姓名]，", "name"),
        ("周国平，男，55岁", "[姓名]，男，55岁", "name"),
        ("家属徐梦瑶（之妻）陪同", "家属[姓名]（之妻）陪同", "name"),
        ("主治医师：王建国；", "主治医师：[姓名]；", "name"),
        ("由张伟医生接诊", "由[姓名]医生接诊", "name"),
        ("雷先生诉胸痛", "[姓名]先生诉胸痛", "name"),
    ],
)
def test_recognisers(text, expected, kind):
    out, counts = deidentify(text)
    assert out == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "患者高热3天，双下肢水肿，予阿司匹林100mg口服。",
        "患者安静休息，时有胸闷，曾于2019年行PCI术。",
        "患者李某某，女，19岁，学生。",  # already anonymised
        "血压160/100mmHg，心率80次/分，白细胞计数12.5×10^9/L。",
        "患者于2023年3月5日入院，术后第3天拔除引流管。",
        "家住农村，长期从事农业劳动。",
        "床旁超声示心包积液，共有500张床位。",
        "老年和肾功能不全患者应根据肌酐清除率调整剂量。",
        "二甲双胍0.5g bid，阿托伐他汀钙片20mg qn。",
        "腰椎MRI示L4/L5椎间盘突出。",
        "北京协和医院呼吸科门诊随访。",
        "检验编号20230915，参考范围3.5-5.5mmol/L。",
    ],
)
def test_clinical_sentences_stay_unchanged(text):
    assert deidentify(text) == (text, {})


def test_only_selected_types():
    out, counts = deidentify("患者王建国，电话13812345678。", ["phone"])
    assert out == "患者王建国，电话[电话]。" and counts == {"phone": 1}


def test_phi_test_set_recall():
    samples = generate(n_records=300, seed=0)
    result = score(samples)
    assert result["planted"] >= 500
    by_type = result["by_type"]
    assert set(by_type) == set(PHI_TYPES)
    for kind, r in by_type.items():
        floor = 0.90 if kind == "name" else 0.99
        assert r["recall"] >= floor, (kind, r)
    assert json.dumps(result).count("@") == 0  # counts only: no e-mail (or other value) leaks out


def test_clean_sentences_are_rarely_altered():
    sentences = clean_sentences(300, seed=1)
    for path in sorted(CORPUS_DIR.glob("*.jsonl")):
        if path.stem == "case_report":  # holds planted identifiers on purpose
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            sentences += [s for s in re.split(r"(?<=[。！？])", json.loads(line)["text"]) if len(s) >= 8]
    altered = [s for s in sentences if deidentify(s)[0] != s]
    assert len(sentences) >= 1000
    assert len(altered) / len(sentences) <= 0.02, altered[:10]


def test_planted_case_reports_lose_their_identifiers():
    """Every 18-digit ID and 11-digit mobile number of the sample case reports is replaced."""
    text = (CORPUS_DIR / "case_report.jsonl").read_text(encoding="utf-8")
    ids = set(re.findall(r"(?<!\d)\d{17}[\dX](?!\d)", text))
    mobiles = set(re.findall(r"(?<!\d)1[3-9]\d{9}(?!\d)", text))
    assert ids and mobiles
    out = "\n".join(deidentify(json.loads(line)["text"])[0] for line in text.splitlines())
    assert not [v for v in ids | mobiles if v in out]
