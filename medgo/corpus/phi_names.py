"""Second signal for person names: ``jieba.posseg`` person tags on short candidate spans.

A candidate is a listed surname at a name-friendly position: after a boundary (start, space,
punctuation, digit) or after a word that introduces a person (孙女, 取药人, 药师, 由, 我是...).
Only a few characters from that position are segmented, never a whole document.  A candidate
becomes a name when both signals agree:

* the surname list: the span starts with a listed surname and its next characters are not
  function words (的, 和, 于...);
* the segmenter: the span's tokens tile it exactly and at least one is tagged ``nr``; the span is
  not itself a dictionary word (the dictionary tags herbs such as 徐长卿 and 陈皮 ``nr``), and it
  is not followed by 氏, 菌 or a disease suffix (王氏评分, 李斯特菌).

A lone surname before a title (朱主任, 吕阿姨) counts when the segmenter keeps the surname as a
token of its own, so 主管医师 and 责任医生 stay.  ``jieba`` and its dictionary load on first use.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

PERSON_TITLES = "护士长|主任|医生|医师|大夫|教授|老师|护士|药师|院长|阿姨|大爷|大妈|奶奶|爷爷|叔叔|师傅|先生|女士|小姐"
# Words and characters after which a person is often named: relatives, roles, verbs of naming.
INTRODUCERS = (
    "孙女|孙子|外孙|侄子|侄女|配偶|爱人|丈夫|妻子|儿子|女儿|儿媳|女婿|哥哥|姐姐|弟弟|妹妹|父亲|母亲|爸爸|妈妈|我爸|我妈|"
    "患者|患儿|病人|家属|对象|陪同|代办人|取药人|就诊者|联系人|监护人|陪护|由|请|找|叫|我是|是|和|与|及|给|经|向|"
    "[人者师士长员床的]"
)
STOP_CHARS = set("的了在是和与及于因等诉说也都已就还又将把被对向从到给为男女之及其今昨明后前")
GUARD_AFTER = re.compile(r"氏|菌|杆菌|病|综合征|征|试验|评分|分级|分型|汤|丸|散|膏|片|胶囊|\s*\d+(?:\.\d+)?\s*(?:g|克|mg|ml|钱)")
# Herbs, formulas and drugs that start with a surname character; the segmenter's HMM reads many
# of them (陈皮, 金银花) as person names.
MEDICAL_WORDS = (
    "陈皮 白术 白芍 白芷 白及 白果 白前 白薇 白蔹 白头翁 白花蛇舌草 白茅根 白扁豆 白鲜皮 白附子 黄芪 黄连 黄芩 黄柏 黄精 黄体酮 "
    "柴胡 甘草 甘露醇 甘精 金银花 金钱草 金樱子 金水宝 连翘 连花清瘟 石斛 石膏 石菖蒲 石决明 石韦 杜仲 杜冷丁 牛膝 牛黄 牛蒡子 "
    "党参 丹参 当归 熟地黄 生地黄 桂枝 肉桂 麻黄 苏叶 苏子 苏木 苏黄 紫苏 姜半夏 干姜 生姜 姜黄 龙骨 龙胆 龙眼肉 茯苓 何首乌 "
    "徐长卿 刘寄奴 王不留行 使君子 马齿苋 马勃 马钱子 马兜铃 马来酸 钩藤 胡黄连 胡椒 胡芦巴 延胡索 柏子仁 侧柏叶 桑叶 桑白皮 "
    "桑寄生 葛根 杏仁 桃仁 红花 高良姜 高三尖杉酯碱 贝母 浙贝母 车前子 车前草 防风 防己 秦艽 秦皮 薄荷 荆芥 菊花 夏枯草 夏天无 "
    "艾叶 冬虫夏草 田七 三七 蒲黄 蒲公英 毛冬青 常山 雷公藤 雷丸 雷贝拉唑 贯众 全蝎 蜈蚣 鹿茸 鹿角胶 龟甲 鳖甲 阿胶 郁金 山药 "
    "山楂 山茱萸 吴茱萸 沙参 沙苑子 玄参 苦参 人参 西洋参 太子参 余甘子 滑石 朱砂 雄黄 水蛭 地龙 乌梅 木香 沉香 檀香 丁香 藿香 "
    "佩兰 厚朴 枳实 枳壳 半夏 天麻 天冬 麦冬 五味子 酸枣仁 远志 合欢皮 益母草 泽泻 猪苓 薏苡仁 罗汉果 罗布麻 鱼腥草 穿心莲 "
    "板蓝根 青黛 青蒿 鸡内金 神曲 莱菔子 安宫牛黄 云南白药 华法林 柳氮磺吡啶 孟鲁司特 司来吉兰 卡马西平 曲马多 齐拉西酮 蒙脱石"
).split()
_MEDICAL = re.compile("|".join(sorted(MEDICAL_WORDS, key=len, reverse=True)))
_BOUNDARY = re.compile(r"[^\u4e00-\u9fff]")


@lru_cache(maxsize=1)
def _jieba():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba.posseg.dt, jieba.dt.FREQ, jieba.posseg.dt.word_tag_tab


@lru_cache(maxsize=1 << 16)
def _tags(window: str) -> tuple[tuple[str, str], ...]:
    seg, _, _ = _jieba()
    return tuple((p.word, p.flag) for p in seg.cut(window))


def _introduced(text: str, start: int, introducer: re.Pattern) -> bool:
    """True at the start of the text, after a non-CJK character, or right after an introducer."""
    if start == 0 or _BOUNDARY.match(text, start - 1):
        return True
    return bool(introducer.search(text, max(0, start - 4), start))


def _dictionary_word(word: str) -> bool:
    _, freq, tags = _jieba()
    return freq.get(word, 0) > 0 or word in tags


def _common_word(text: str, start: int, surname: str) -> bool:
    """The surname starts a dictionary word that is not a person (高血压, 周围, 常规)."""
    _, _, tags = _jieba()
    return any(not tags.get(text[start : start + k], "nr").startswith("nr") for k in range(len(surname) + 1, len(surname) + 3))


def _name_shaped(text: str, start: int, surname: str, given: str) -> bool:
    """The character after the surname is a given-name character and no function word follows
    in the next one (查体 and 于是 are not names)."""
    rest = text[start + len(surname) : start + len(surname) + 2]
    return bool(rest) and rest[0] in given and not (len(rest) > 1 and rest[1] in STOP_CHARS and rest[1] not in given)


def _name_length(text: str, start: int, surname: str) -> int:
    """Length of the name the segmenter finds at ``start``, 0 if none: the longest run of whole
    tokens of at most two characters past the surname, without function words or punctuation,
    with a token tagged ``nr`` (a compound surname such as 欧阳 counts as one)."""
    length, person, most = 0, len(surname) == 2, len(surname) + 2
    for word, flag in _tags(text[start : start + most + 3]):
        tail = word[len(surname) :] if length == 0 else word
        if flag in ("x", "m", "eng") or length + len(word) > most or any(c in STOP_CHARS for c in tail):
            break
        length, person = length + len(word), person or flag.startswith("nr")
    return length if person and length > len(surname) else 0


def find_names(text: str, surname: re.Pattern, introducer: re.Pattern, given: str) -> list[tuple[int, int]]:
    """Spans of names both signals agree on; ``text`` may hold masked spans (non-CJK)."""
    spans, size = [], len(text)
    for m in surname.finditer(text):
        start, after = m.span()
        if (spans and start < spans[-1][1]) or after >= size or text[after] not in given:
            continue  # the quick part of _name_shaped: no given-name character after the surname
        # cheapest test first: every one is a pure check, so the order does not change the result
        if not _name_shaped(text, start, m.group(), given) or not _introduced(text, start, introducer):
            continue
        if _MEDICAL.match(text, start) or _common_word(text, start, m.group()):
            continue
        length = _name_length(text, start, m.group())
        if not length:
            continue
        word, after = text[start : start + length], text[start + length : start + length + 3]
        if _dictionary_word(word) or GUARD_AFTER.match(after):
            continue
        spans.append((start, start + length))
    return spans


def find_titled_surnames(text: str, pattern: re.Pattern) -> list[tuple[int, int]]:
    """Lone surnames before a title (朱主任) that the segmenter keeps as a token of their own."""
    spans = []
    for m in pattern.finditer(text):
        start, end = m.span("v")
        left = max(0, start - 2)
        tokens, pos = _tags(text[left : m.end()]), left
        for word, _ in tokens:
            if pos == start and len(word) == end - start:
                spans.append((start, end))
                break
            if pos >= start:
                break
            pos += len(word)
    return spans
