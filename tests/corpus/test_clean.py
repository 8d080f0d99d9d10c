"""Table tests of the cleaners and quality filters."""

from __future__ import annotations

import numpy as np
import pytest

from medgo.corpus.clean import content_share, normalise, normalise_unicode, quality_reason, remove_lines, repetition, strip_html, strip_markdown
from medgo.corpus.hashing import text_hash


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("ＣＴ示右肺上叶结节，大小约１２ｍｍ", "CT示右肺上叶结节，大小约12mm"),  # full-width letters/digits; Chinese comma kept
        ("血压１６０／１００ｍｍＨｇ；心率８０次／分", "血压160/100mmHg；心率80次/分"),
        ("患者（男）：发热！咳嗽？", "患者（男）：发热！咳嗽？"),  # Chinese punctuation kept as is
        ("高血压\x00患者\x07应\x1b规律服药", "高血压患者应规律服药"),  # control characters
        ("零宽\u200b字符\ufeff和软\u00ad连字符", "零宽字符和软连字符"),  # invisible format characters
        ("高血压　　患者 应\t规律服药", "高血压患者应规律服药"),  # ideographic space, tabs, spaces between CJK
        ("Hello   world\r\n\r\n\r\n\r\nnext", "Hello world\n\nnext"),
        ("  首行  \n  次行  ", "首行\n次行"),
        ("阿司匹林 100 mg", "阿司匹林 100 mg"),  # spaces next to Latin/digits are kept
    ],
)
def test_normalise_unicode(raw, clean):
    assert normalise_unicode(raw) == clean


def test_fullwidth_can_be_kept():
    assert normalise_unicode("ＣＴ１２", fullwidth_to_halfwidth=False) == "ＣＴ１２"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("白内障<br>年龄相关性&nbsp;白内障", "白内障\n年龄相关性\xa0白内障"),
        ('- <span class="x">长期紫外线照射</span>', "- 长期紫外线照射"),
        ("<!-- 注释 -->正文<script>var a=1;</script>", "正文"),
        ("血压<140/90 mmHg，肌酐>133μmol/L", "血压<140/90 mmHg，肌酐>133μmol/L"),  # comparisons are not tags
        ("&lt;p&gt; 是段落标签", "<p> 是段落标签"),  # entities decoded after tags are stripped
    ],
)
def test_strip_html(raw, clean):
    assert strip_html(raw) == clean


def test_strip_markdown():
    md = "# 哮喘\n\n## 病因\n\n- **遗传**因素\n1. 过敏原\n> 引用\n见[指南](http://x.org/a)。![图](a.png)\n---\n| 药物 | 剂量 |\n|---|---|\n| 布地奈德 | 200μg |"
    assert strip_markdown(md) == "哮喘\n\n病因\n\n遗传因素\n过敏原\n引用\n见指南。\n\n药物 剂量\n\n布地奈德 200μg"


def test_normalise_markdown_only_when_asked():
    assert normalise("**重点**", markdown=False) == "**重点**"
    assert normalise("**重点**", markdown=True) == "重点"


def test_remove_boilerplate_lines():
    footer = "本词条内容仅供参考，不构成医疗建议。"
    text = f"哮喘是慢性气道炎症性疾病。\n\n{footer}"
    table = np.sort(np.array([text_hash(footer)], dtype=np.int64))
    assert remove_lines(text, table, 8) == ("哮喘是慢性气道炎症性疾病。", 1)
    assert remove_lines(text, np.empty(0, np.int64), 8) == (text, 0)
    short = np.sort(np.array([text_hash("【诊断】")], dtype=np.int64))
    assert remove_lines("【诊断】\n肺炎", short, 8) == ("【诊断】\n肺炎", 0)  # short lines never count


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("高血压是以体循环动脉压升高为主要特征的临床综合征，可伴有心、脑、肾等器官的功能或器质性损害。", None),
        ("太短了。", "too_short"),
        ("==== ---- **** #### !!!! ???? .... ;;;; ,,,, ~~~~ ==== ---- **** 高血压", "low_content"),
        ("高血压" * 40, "repetitive"),
    ],
)
def test_quality_reason(text, reason):
    assert quality_reason(text, min_chars=20, min_content_share=0.6, max_repetition=0.3) == reason


def test_quality_measures():
    assert content_share("高血压!") == pytest.approx(0.75)
    assert content_share("") == 0.0
    assert repetition("abcdefghijklmnopqrstuvwxyz") == 0.0
    assert repetition("ab" * 50) > 0.9
