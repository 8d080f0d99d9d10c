"""De-identification of Chinese clinical text: typed placeholders for protected identifiers.

    from medgo.corpus.phi import deidentify
    text, counts = deidentify("患者张伟，男，56岁，电话13812345678。")
    # -> "患者[姓名]，男，56岁，电话[电话]。", {"name": 1, "phone": 1}

Recognisers (applied in this order; each sees the text with earlier finds masked, so spans never
overlap; full-width digits, Latin letters and @+-./ are read as ASCII):

``email``          e-mail addresses
``id_card``        18-digit resident ID numbers (spaces allowed between the 6-8-4 groups) whose GB 11643-1999
                   check digit and birth date are valid
``birth_date``     exact dates, year-month dates and dates in Chinese numerals next to 出生/生于/出生日期/生日
``record_number``  the identifier after 住院号, 病案号, 门诊号, 病历号, ID 号, 医保卡号 and similar words
``bed_number``     床号 12 / 12床 / 加3床 / 床号 A07 / 床位 12-2
``phone``          any number after a phone word (电话, 手机, 联系方式, Tel...), whether or not it looks like a
                   real exchange; mobile numbers (+86 or (+86) optional, spaces or dashes); landlines with area code
``address``        after 住址/地址/家住/现住 and similar words, or starting with a province-level name, down to
                   the room number
``name``           context rules: after 患者/姓名/家属/医师 and similar words, before "，男/女，NN岁", before a
                   title or 先生/女士, after 姓; and a second signal for names outside those contexts: a listed
                   surname at a name-friendly position whose few following characters ``jieba.posseg`` tags as a
                   person (``medgo.corpus.phi_names``), or a lone surname before a title that the segmenter keeps
                   as a token of its own (朱主任, but not 主管医师)

Only the identifier is replaced: context words (住院号, 电话, 患者...) stay, and so do drug, herb, disease,
organism and anatomy terms.  Counts are per type; the original values are never returned or logged.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from medgo.corpus.phi_names import INTRODUCERS, PERSON_TITLES, find_names, find_titled_surnames

PLACEHOLDERS = {
    "email": "[邮箱]",
    "id_card": "[身份证号]",
    "birth_date": "[出生日期]",
    "record_number": "[病历号]",
    "bed_number": "[床号]",
    "phone": "[电话]",
    "address": "[地址]",
    "name": "[姓名]",
}
PHI_TYPES = tuple(PLACEHOLDERS)

CJK = "\u4e00-\u9fff"

# --- resident ID numbers (GB 11643-1999) -------------------------------------------------------
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
_ID = re.compile(r"[1-9]\d{5}[ -]?(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[ -]?\d{3}[\dXx](?![0-9A-Za-z])")


def id_check_digit(first17: str) -> str:
    """GB 11643 check character of the first 17 digits of a resident ID number."""
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS)) % 11]


def is_valid_id(number: str) -> bool:
    """18 characters, a real birth date and a matching check digit."""
    number = re.sub(r"[ -]", "", number)
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return id_check_digit(number[:17]) == number[17].upper()


# --- dates, record numbers, beds, phones, e-mail --------------------------------------------
_CN_NUM = "〇零一二三四五六七八九十"
_DATE = (
    r"(?:(?:19|20)\d{2}(?:\s*年\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*[日号]?)?|[-/.]\d{1,2}[-/.]\d{1,2}|(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))"
    rf"|[{_CN_NUM}]{{4}}年[{_CN_NUM}]{{1,2}}月(?:[{_CN_NUM}]{{1,3}}[日号])?)"
)
_BIRTH_AFTER = re.compile(rf"(?:出生日期|出生年月日|出生年月|出生时间|出生于|生于|生日|出生|DOB)\s*[：:为是]?\s*(?P<v>{_DATE})(?!\d)")
_BIRTH_BEFORE = re.compile(rf"(?P<v>{_DATE})(?=\s*(?:出生|生人|生[，,。；;）)\s]))")
RECORD_WORDS = (
    "住院号|住院号码|病案号|病案号码|门诊号|急诊号|病历号|病历编号|就诊号|就诊卡号|登记号|患者ID|病人ID|ID号|"
    "检查号|影像号|放射号|病理号|标本号|医保卡号|医保号|社保卡号|健康卡号|诊疗卡号|住院流水号|ID\\s*号|ID"
)
_RECORD = re.compile(rf"(?:{RECORD_WORDS})\s*(?:为|是)?\s*[：:#＃]?\s*(?P<v>(?:No\.?\s*)?[A-Za-z]{{0,4}}-?\d[0-9A-Za-z-]{{2,23}})(?![0-9A-Za-z])")
_BED_VALUE = r"加?[A-Za-z]{0,5}-?\d{1,3}[A-Za-z]?(?:-\d{1,3})?"
_BED_AFTER = re.compile(rf"(?:床号|床位号|床位)\s*(?:为|是)?\s*[：:]?\s*(?P<v>{_BED_VALUE})(?![0-9A-Za-z])")
_BED_BEFORE = re.compile(rf"(?P<v>{_BED_VALUE})(?=床(?![旁边头尾位垫单上下]))")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_MOBILE = r"(?:[(（]\+?86[)）]|(?:\+|00)?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}"
_LOCAL = r"\d{3,4}[-\s]?\d{4}"
_LANDLINE = (
    r"(?:[(（]0\d{2,3}[)）]\s?|\+86[-\s]?[(（]?[1-9]\d{1,2}[)）]?[-\s]?|0[1-9]\d{1,2}[-\s]?)"
    rf"(?:{_LOCAL})(?:(?:-|转|分机)\d{{1,5}})?"
)
_PHONE = re.compile(rf"(?:{_MOBILE}|{_LANDLINE})(?!\d)")
# After a phone word any number is a phone number, whether or not it looks like a real exchange.
PHONE_WORDS = "电话号码|电话|手机号码|手机号|手机|联系方式|座机|分机|传真|微信|Tel|TEL|tel|Mobile|mobile|MOB|Mob|Phone|phone|Fax|FAX"
_PHONE_LOCAL = re.compile(
    rf"(?:{PHONE_WORDS})(?:\s*[/、]\s*(?:{PHONE_WORDS}))*\s*(?:为|是)?\s*[.：:]?\s*(?:[（(](?!\+?\d{{1,4}}[)）]))?\s*"
    r"(?P<v>(?:[(（]\+?\d{1,4}[)）]\s?)?(?:\+?\d[\d\s()（）-]{1,22}\d|\d{3,})(?:(?:转|分机|-)\d{1,6})?)(?!\d)"
)

# --- addresses ------------------------------------------------------------------------------
PROVINCES = (
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|海南|四川|贵州|云南|"
    "陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门"
)
_ADMIN = rf"[{CJK}]{{1,8}}?(?:省|自治区|特别行政区|市|自治州|地区|盟|区|县|旗|镇|乡|街道)"
_NUM = r"(?:\d+|[一二三四五六七八九十百零〇]+)"
_ESTATE_NAME = rf"[{CJK}]{{0,10}}?(?:小区|花园|家园|公寓|新村|新城|苑|大厦|大楼|广场|宿舍|[东南西北]楼|[东南西北一二三四五六七八九十]区)"
_UNIT_TAIL = rf"(?:院|-\d+|{_NUM}(?:号楼|号院|栋|幢|座|单元|室|房|层|楼|号|弄|组)|[A-Za-z]座?|{_ESTATE_NAME}|[{CJK}]{{2,5}}?(?={_NUM}(?:号楼|栋|幢|座)))*(?:\d+(?![\d年月日岁]))?"
_STREET = rf"[{CJK}\d]{{1,12}}?(?:路|街|大道|道|巷|弄|胡同|里){_NUM}(?:号|弄){_UNIT_TAIL}"
_ESTATE = rf"[{CJK}]{{2,10}}?(?:小区|花园|家园|公寓|新村|苑|大厦){_NUM}(?:号楼|栋|幢|座){_UNIT_TAIL}"
_VILLAGE = rf"[{CJK}]{{1,8}}?村(?:{_NUM}组(?:{_NUM}号)?|{_NUM}号)"
_ADDRESS_BODY = rf"(?:{_ADMIN}){{0,5}}(?:{_STREET}|{_ESTATE}|{_VILLAGE})|(?:{_ADMIN}){{2,5}}(?:[{CJK}]{{1,8}}?村)?{_UNIT_TAIL}"
ADDRESS_WORDS = "收货地址|地址|家庭住址|现住址|户籍地址|通讯地址|联系地址|居住地址|住址|家住|现住|居住于|居住在|户籍地|籍贯地址"
_ADDRESS_AFTER = re.compile(rf"(?:{ADDRESS_WORDS})\s*[：:为是]?\s*(?P<v>{_ADDRESS_BODY})")
_ADDRESS_PROVINCE = re.compile(
    rf"(?:{PROVINCES})(?:省|市|自治区|壮族自治区|回族自治区|维吾尔自治区|特别行政区)?(?:{_ADMIN}){{0,4}}(?:{_STREET}|{_ESTATE})"
)

# --- names ----------------------------------------------------------------------------------
SURNAMES_COMPOUND = "欧阳|司马|上官|诸葛|东方|皇甫|尉迟|公孙|慕容|令狐|长孙|宇文|司徒|夏侯|端木|独孤|南宫|西门|呼延|轩辕"
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪"
    "范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍"
    "庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻"
    "祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾"
    "隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
)
# Characters common in given names; clinical words after 患者 (高热, 双下肢, 时有...) use none of them
# as their second character, which keeps "患者高热" from reading as a name.
GIVEN_CHARS = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂玉萍红华建国文辉鹏飞鑫波斌宇浩凯健俊帆帅旭宁龙林欢阳晨琳雪婷倩颖"
    "慧莉燕梅丹玲晶佳悦欣怡诗雨萱涵梓轩子博睿泽航昊然铭晓海成志春秋冬荣福贵祥德胜金银宝凤珍琴云彩花爱淑美月芬翠君蓉婉琪"
    "璐瑶婧嘉思晗妍馨蕾薇菲霖亮毅峰坤东伦辰星新永宏振利庆兵江山清光天忠义仁礼信康乐寿喜民中正元伯仲守泉松柏桃杏"
    "荷菊竹青翔鸿鹤鹰凡琦瑞祺骏驰勋彬楠柳枫森岩坚锋钢锦绣丰盈富达顺睦恬雅卿媛姝娴婕妮娅姗琼瑾瑜璇琬莹滢洁澜沛沁泓淼"
    "渊源溪洪淳润治汉沫萌茜蕊芸茹莎芝蓓苹蔚韵歌舞书画曼露霜虹岚巍峻崇峥嵘昌晟晖昭晴景智曦昕昀煜炜烨熙焕灿炎烁"
    "翠兴旺友家豪杭铮琛瑛玮珊珂璟聪颂彤瀚锐钰琨玥婵娥桦楷樵霏雯霁鑫淇沅澄奕弈绮纯綦宸岳丞栋梁"
    "少卫小天若立一梦诺程佑远航力雄耀威培红艺晋卓"
)
# Rare surnames that are common function words: after 患者 they start a verb phrase (患者应/于/和...).
WEAK_SURNAMES = set("应于和向时全常单易")
NOT_NAMES = {"安静", "和平", "文明", "应立", "明显", "平安", "成功", "华山", "高达", "时间", "康复", "宁静", "全新", "常规", "于中"}
NAME_BEFORE = (
    "患者|患儿|病人|病员|产妇|孕妇|姓名|家属|联系人|监护人|陪护人|代诉人|陪诊人|其父|其母|其妻|其夫|其子|其女|丈夫|妻子|儿子|女儿|"
    "父亲|母亲|主治医师|主治医生|住院医师|主任医师|副主任医师|主管医师|经治医师|管床医师|医师|医生|护士|责任护士|记录者|记录人|"
    "签名|报告人|审核人|审核医师|报告医师|送检医生|接诊医生|会诊医师|术者|主刀|麻醉医师|助手"
)
NAME_TITLES = "主任医师|副主任|主任|医生|医师|大夫|护士长|护士|教授|老师"
_GIVEN = f"[{GIVEN_CHARS}]"
_SURNAME = rf"(?:{SURNAMES_COMPOUND}|[{SURNAMES}])"
_ANY_NAME = rf"{_SURNAME}[{CJK}]{{1,2}}"
_COMMON_NAME = rf"{_SURNAME}{_GIVEN}{{1,2}}"
_SEX_AGE = r"\s*[，,（(、]\s*(?:男|女)\s*[，,、)）]?\s*\d{1,3}\s*岁"
_RELATION = r"[（(](?:之|其|患者|家属|父|母|妻|夫|子|女|兄|弟|姐|妹|丈夫|妻子|儿子|女儿|男|女)"
_NAME_AFTER_COLON = re.compile(rf"(?:{NAME_BEFORE})\s*[：:]\s*(?P<v>{_ANY_NAME})(?=[\s，,。；;、（()）]|$)")  # 姓名：X
_NAME_SEX_AGE = re.compile(rf"(?P<v>{_ANY_NAME})(?={_SEX_AGE})")  # X，男，56岁
_NAME_RELATION = re.compile(rf"(?:{NAME_BEFORE})\s*(?P<v>{_ANY_NAME})(?={_RELATION})")  # 家属X（之夫）
_NAME_CONTEXT = re.compile(rf"(?:{NAME_BEFORE})\s*(?:为|是|系)?(?P<v>{_COMMON_NAME})")  # 患者X / 医师X: common given names only
_NAME_TITLE = re.compile(rf"(?P<v>{_COMMON_NAME})(?=(?:{NAME_TITLES}))")  # X主任 / X医生: common given names only
_NAME_MR = re.compile(rf"(?P<v>{_SURNAME}{_GIVEN}{{0,2}})(?=(?:先生|女士))")  # 王先生 / 张伟女士
_NAME_SURNAME_SAID = re.compile(rf"姓\s*(?P<v>{_SURNAME})(?=[\s，,。；;！!？?）)]|$)")  # 我姓冯。
_NAME_TITLED = re.compile(rf"(?P<v>{_SURNAME})(?=(?:{PERSON_TITLES}))")  # 朱主任 / 吕阿姨, vetted by the segmenter
_SURNAME_RE = re.compile(_SURNAME)
_INTRODUCER = re.compile(rf"(?:{INTRODUCERS})$")
_NAME_BEFORE_END = re.compile(rf"(?:{NAME_BEFORE})\s*$")
_CJK_CHAR = re.compile(f"[{CJK}]")


def _after(chars: str):
    """Check: the character before the match is not one of ``chars`` (a regex class body)."""
    before = re.compile(f"[{chars}]")

    def check(m: re.Match) -> bool:
        return m.start() == 0 or not before.match(m.string, m.start() - 1)

    return check


def _is_name(m: re.Match) -> bool:
    """Not an already anonymised 张某某 and not a common word such as 安静."""
    value = m.group("v")
    return "某" not in value and value not in NOT_NAMES and value[:2] not in NOT_NAMES


def _name_in_context(m: re.Match) -> bool:
    """A name that does not start with a function-word surname (患者应..., 患者于...)."""
    return _is_name(m) and m.group("v")[0] not in WEAK_SURNAMES


def _name_after_boundary(m: re.Match) -> bool:
    """X，男，56岁 counts when X follows a non-CJK character or a context word (患者, 家属...)."""
    if not _is_name(m):
        return False
    if m.start() == 0 or not _CJK_CHAR.match(m.string[m.start() - 1]):
        return True
    return bool(_NAME_BEFORE_END.search(m.string, max(0, m.start() - 8), m.start()))


_NO_DIGIT_BEFORE = _after(r"\d")
_ID_CHECK = _after("0-9A-Za-z")
_PHONE_CHECK = _after(r"\d\-")
_BED_CHECK = _after(r"\d.")
_EMAIL_CHECK = _after("A-Za-z0-9._%+-")
_CJK_CHECK = _after(CJK)


def _segmented_names(text: str) -> list[tuple[int, int]]:
    return find_names(text, _SURNAME_RE, _INTRODUCER, GIVEN_CHARS)


def _titled_surnames(text: str) -> list[tuple[int, int]]:
    return find_titled_surnames(text, _NAME_TITLED)


@dataclass(frozen=True)
class Recogniser:
    """One pattern of one identifier type; ``check`` vets a match, ``needs`` is a quick pre-test.
    ``finder`` (instead of a pattern) returns the spans itself."""

    kind: str
    pattern: re.Pattern | None
    check: Callable[[re.Match], bool] | None = None
    needs: tuple[str, ...] = ()
    finder: Callable[[str], list[tuple[int, int]]] | None = None

    def spans(self, text: str) -> list[tuple[int, int]]:
        if self.needs and not any(n in text for n in self.needs):
            return []
        if self.finder is not None:
            return self.finder(text)
        found = []
        for m in self.pattern.finditer(text):
            if self.check is None or self.check(m):
                found.append(m.span("v") if "v" in self.pattern.groupindex else m.span())
        return found


RECOGNISERS = [
    Recogniser("email", _EMAIL, _EMAIL_CHECK, needs=("@",)),
    Recogniser("id_card", _ID, lambda m: _ID_CHECK(m) and is_valid_id(m.group(0))),
    Recogniser("birth_date", _BIRTH_AFTER, needs=("生", "DOB")),
    Recogniser("birth_date", _BIRTH_BEFORE, _NO_DIGIT_BEFORE, needs=("生",)),
    Recogniser("record_number", _RECORD),
    Recogniser("bed_number", _BED_AFTER, needs=("床",)),
    Recogniser("bed_number", _BED_BEFORE, _BED_CHECK, needs=("床",)),
    Recogniser("phone", _PHONE_LOCAL),
    Recogniser("phone", _PHONE, _PHONE_CHECK),
    Recogniser("address", _ADDRESS_AFTER),
    Recogniser("address", _ADDRESS_PROVINCE),
    Recogniser("name", _NAME_AFTER_COLON, _is_name),
    Recogniser("name", _NAME_SEX_AGE, _name_after_boundary, needs=("男", "女")),
    Recogniser("name", _NAME_RELATION, _is_name, needs=("（", "(")),
    Recogniser("name", _NAME_CONTEXT, _name_in_context),
    Recogniser("name", _NAME_TITLE, _name_in_context),
    Recogniser("name", _NAME_MR, lambda m: _is_name(m) and _CJK_CHECK(m), needs=("先生", "女士")),
    Recogniser("name", _NAME_SURNAME_SAID, needs=("姓",)),
    Recogniser("name", None, finder=_titled_surnames),
    Recogniser("name", None, finder=_segmented_names),
]

# Full-width digits, Latin letters and @+-./ read as their ASCII forms (one character for one,
# so spans found in the normalised text are spans of the original).
_HALF_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F) if chr(c - 0xFEE0).isalnum() or chr(c - 0xFEE0) in "@+-./"}
_MASKED = "\ue000"


def find_identifiers(text: str, types: tuple[str, ...] | list[str] | None = None) -> list[tuple[int, int, str]]:
    """Sorted (start, end, type) of every recognised identifier.  Each recogniser sees the text
    with the identifiers found before it masked, so spans never overlap."""
    wanted = set(types or PHI_TYPES)
    work, found = text.translate(_HALF_WIDTH), []
    for r in RECOGNISERS:
        if r.kind not in wanted:
            continue
        spans = [(s, e) for s, e in r.spans(work) if e > s]
        for s, e in spans:
            work = work[:s] + _MASKED * (e - s) + work[e:]
        found += [(s, e, r.kind) for s, e in spans]
    return sorted(found)


def deidentify(text: str, types: tuple[str, ...] | list[str] | None = None) -> tuple[str, Counter]:
    """Replace every recognised identifier by its typed placeholder; return text and counts per type."""
    counts: Counter = Counter()
    out, pos = [], 0
    for start, end, kind in find_identifiers(text, types):
        out += [text[pos:start], PLACEHOLDERS[kind]]
        counts[kind] += 1
        pos = end
    out.append(text[pos:])
    return "".join(out), counts


def scrub(text: str | None, counts: Counter) -> str | None:
    """``text`` de-identified (None or empty stays as it is); what was replaced is added to ``counts``."""
    if not text:
        return text
    clean, found = deidentify(text)
    counts.update(found)
    return clean
