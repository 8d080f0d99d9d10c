"""A generated PHI test set: realistic clinical sentences with planted, fictitious identifiers.

    from medgo.corpus.phi_testset import generate, clean_sentences, score
    samples = generate(n_records=300, seed=0)      # each with .text and .planted [(type, value)]
    print(score(samples))                          # recall per type (counts only, no values)

Every identifier is invented: names drawn from common surnames and given names, resident ID
numbers with valid GB 11643 check digits (computed here independently, as ISO 7064 MOD 11-2),
mobile/landline numbers, record numbers, beds, addresses, birth dates and e-mail addresses.
``clean_sentences`` gives clinical sentences without any identifier (drugs, doses, diseases,
anatomy, lab values, admission dates), which de-identification must leave unchanged.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from medgo.corpus.phi import deidentify

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴莫孔向汤")
SURNAMES += ["欧阳", "司马", "诸葛", "上官"]
GIVEN_NAMES = (
    "伟 芳 娜 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 霞 平 刚 秀英 桂英 秀兰 玉兰 建国 建华 志强 志明 丽华 国强 海燕 "
    "晓燕 文华 红梅 春梅 建平 德明 永红 子涵 浩然 梓轩 一诺 欣怡 雨萱 思远 宇航 佳怡 晨曦 俊杰 振华 淑珍 凤英 金凤 桂兰 "
    "玉梅 建军 卫东 立新 爱华 秀珍 美玲 晓东 海波 少华 宏伟 小红 国庆 春华 丽娟 建新 德胜 明辉 慧敏 婷婷 倩 颖 琳 雪 "
    "鹏飞 凯 健 帆 鑫 磊磊 晶晶 悦 瑶 涵 博文 睿 泽宇 昊天 嘉怡 诗琪 梦瑶 若曦 天佑 家豪 锦程 宏亮 志刚 永强 秋菊 冬梅"
).split()
REGIONS = ["110105", "110108", "310104", "310115", "440106", "440304", "430104", "430602", "510107", "320102", "330106", "420102", "610113", "370202", "350203", "500103", "120101", "210102", "230103", "130102"]
MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "157", "158", "159", "166", "177", "180", "181", "182", "186", "187", "188", "189", "199"]
AREA_CODES = ["010", "021", "020", "022", "023", "0755", "0731", "028", "027", "029", "0571", "025", "0532", "0591"]
RECORD_WORDS = ["住院号", "病案号", "门诊号", "病历号", "登记号", "医保卡号", "病理号", "影像号"]
PROVINCE_CITY = [("湖南省", "长沙市", ["岳麓区", "开福区", "雨花区"]), ("广东省", "广州市", ["天河区", "越秀区", "海珠区"]), ("四川省", "成都市", ["武侯区", "锦江区"]), ("浙江省", "杭州市", ["西湖区", "拱墅区"]), ("江苏省", "南京市", ["鼓楼区", "玄武区"]), ("湖北省", "武汉市", ["武昌区", "洪山区"]), ("", "上海市", ["浦东新区", "徐汇区", "闵行区"]), ("", "北京市", ["朝阳区", "海淀区", "西城区"])]
STREETS = ["人民路", "解放路", "中山路", "建设路", "五一大道", "芙蓉中路", "天府大道", "文三路", "张江路", "学院路", "湘江中路", "青年路", "和平街", "光明巷", "枫林路"]
EMAIL_DOMAINS = ["163.com", "126.com", "qq.com", "sina.com", "hospital.org.cn", "gmail.com"]
PINYIN = ["zhang", "wang", "li", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou", "xu", "sun", "ma", "zhu", "hu", "lin", "he", "gao"]
COMPLAINTS = ["反复胸闷气促3年，加重1周", "发热伴咳嗽5天", "上腹部疼痛2天", "头晕头痛1月", "双下肢水肿2周", "血糖升高10年，视物模糊1月", "右下腹痛伴恶心6小时", "活动后心悸半年"]
DIAGNOSES = ["社区获得性肺炎", "2型糖尿病", "原发性高血压3级", "冠状动脉粥样硬化性心脏病", "急性阑尾炎", "慢性阻塞性肺疾病急性加重", "慢性肾脏病3期", "缺铁性贫血"]
DRUGS = ["阿司匹林肠溶片100mg qd", "阿托伐他汀钙片20mg qn", "二甲双胍0.5g bid", "头孢曲松2g ivgtt qd", "氨氯地平5mg qd", "呋塞米20mg iv", "奥美拉唑40mg ivgtt", "胰岛素甘精注射液12U皮下注射"]
RELATIONS = ["之子", "之女", "之妻", "之夫", "家属"]


@dataclass
class PHISample:
    """One generated clinical text and the identifiers planted in it."""

    text: str
    planted: list[tuple[str, str]] = field(default_factory=list)


def iso7064_check(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character (the GB 11643 rule, computed with powers of two)."""
    total = sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(first17))
    return "10X98765432"[total % 11]


def resident_id(rng: random.Random, valid: bool = True) -> str:
    birth = f"{rng.randint(1930, 2015)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    first17 = rng.choice(REGIONS) + birth + f"{rng.randint(0, 999):03d}"
    check = iso7064_check(first17)
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return first17 + check


class _Gen:
    """Draws identifiers of each type and remembers what it planted."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.planted: list[tuple[str, str]] = []

    def plant(self, kind: str, value: str, probe: str | None = None) -> str:
        """Remember ``probe`` (the value, or the value with the context that makes it unique)."""
        self.planted.append((kind, probe or value))
        return value

    def name(self) -> str:
        return self.plant("name", self.rng.choice(SURNAMES) + self.rng.choice(GIVEN_NAMES))

    def id_card(self) -> str:
        return self.plant("id_card", resident_id(self.rng))

    def mobile(self) -> str:
        r = self.rng
        digits = r.choice(MOBILE_PREFIXES) + f"{r.randint(0, 9999):04d}{r.randint(0, 9999):04d}"
        form = r.choice(["plain", "plain", "dash", "space", "+86"])
        value = {"plain": digits, "dash": f"{digits[:3]}-{digits[3:7]}-{digits[7:]}", "space": f"{digits[:3]} {digits[3:7]} {digits[7:]}", "+86": "+86 " + digits}[form]
        return self.plant("phone", value)

    def landline(self) -> str:
        r = self.rng
        code = r.choice(AREA_CODES)
        number = str(r.randint(2, 8)) + "".join(str(r.randint(0, 9)) for _ in range(7 if len(code) == 3 else 6))
        form = r.choice(["dash", "paren", "ext"])
        value = {"dash": f"{code}-{number}", "paren": f"({code}){number}", "ext": f"{code}-{number}转{r.randint(100, 8999)}"}[form]
        return self.plant("phone", value)

    def record(self) -> tuple[str, str]:
        r = self.rng
        word = r.choice(RECORD_WORDS)
        value = r.choice([f"{r.randint(2015, 2024)}{r.randint(0, 999999):06d}", f"ZY{r.randint(10**7, 10**8 - 1)}", f"MZ-{r.randint(0, 9999999):07d}", f"{r.randint(100000, 9999999)}", f"B{r.randint(2018, 2024)}-{r.randint(0, 99999):05d}"])
        return word, self.plant("record_number", value)

    def bed(self) -> str:
        """``12床`` or ``床号：12`` (the probe keeps the context: bare digits are everywhere)."""
        n = self.rng.randint(1, 60)
        text = self.rng.choice([f"{n}床", f"床号：{n}", f"床号{n}"])
        return self.plant("bed_number", text)

    def address(self) -> str:
        r = self.rng
        prov, city, districts = r.choice(PROVINCE_CITY)
        tail = r.choice(["", f"{r.randint(1, 30)}栋{r.randint(1, 4)}单元{r.randint(101, 2802)}室", f"{r.randint(1, 12)}号楼{r.randint(101, 1802)}室", "附1号"])
        value = f"{prov}{city}{r.choice(districts)}{r.choice(STREETS)}{r.randint(1, 999)}号{tail}"
        return self.plant("address", value)

    def birth_date(self) -> str:
        r = self.rng
        y, m, d = r.randint(1930, 2015), r.randint(1, 12), r.randint(1, 28)
        return self.plant("birth_date", r.choice([f"{y}年{m}月{d}日", f"{y}-{m:02d}-{d:02d}", f"{y}/{m}/{d}", f"{y}.{m:02d}.{d:02d}"]))

    def email(self) -> str:
        r = self.rng
        user = r.choice(PINYIN) + r.choice(["", ".", "_"]) + r.choice(PINYIN) + str(r.randint(1, 999))
        return self.plant("email", f"{user}@{r.choice(EMAIL_DOMAINS)}")


def _admission(g: _Gen) -> str:
    r = g.rng
    sex, age = r.choice(["男", "女"]), r.randint(18, 92)
    return f"患者{g.name()}，{sex}，{age}岁，因“{r.choice(COMPLAINTS)}”于2023年{r.randint(1, 12)}月{r.randint(1, 28)}日入院。"


def _identity(g: _Gen) -> str:
    word, record = g.record()
    return f"姓名：{g.name()}，身份证号：{g.id_card()}，{word}：{record}，入住心内科{g.bed()}。"


def _contact(g: _Gen) -> str:
    r = g.rng
    return f"{g.name()}，{r.choice(['男', '女'])}，{r.randint(20, 85)}岁，联系电话{g.mobile()}，{r.choice(['家住', '现住址：', '住址：'])}{g.address()}。"


def _family(g: _Gen) -> str:
    r = g.rng
    return f"家属{g.name()}（{r.choice(RELATIONS)}）陪同就诊，电话{g.mobile()}，已签署知情同意书。"


def _birth(g: _Gen) -> str:
    r = g.rng
    return f"出生日期：{g.birth_date()}，既往诊断{r.choice(DIAGNOSES)}，长期服用{r.choice(DRUGS)}。"


def _discharge(g: _Gen) -> str:
    r = g.rng
    return f"出院诊断：{r.choice(DIAGNOSES)}。主治医师：{g.name()}，随访请拨打{g.landline()}或发送邮件至{g.email()}。"


def _record_line(g: _Gen) -> str:
    word, record = g.record()
    return f"{word}{record}，{g.bed()}，予{g.rng.choice(DRUGS)}治疗后症状缓解。"


def _consult(g: _Gen) -> str:
    r = g.rng
    title = r.choice(["先生", "女士"])
    surname = r.choice(SURNAMES)
    g.plant("name", surname, probe=surname + title)
    return f"{surname}{title}诉{r.choice(COMPLAINTS)}，建议完善心电图检查，{g.birth_date()}出生，既往体健。"


def _narrative(g: _Gen) -> str:
    r = g.rng
    return f"患者{g.name()}于{r.randint(2, 10)}天前无明显诱因出现{r.choice(COMPLAINTS)[:4]}，由{g.name()}医生接诊，予{r.choice(DRUGS)}。"


def _signature(g: _Gen) -> str:
    r = g.rng
    return f"记录者：{g.name()}　审核医师：{g.name()}　{r.choice(['急诊号', '就诊卡号', '病案号'])}为{g.record()[1]}。"


TEMPLATES = [_admission, _identity, _contact, _family, _birth, _discharge, _record_line, _consult, _narrative, _signature]


def generate(n_records: int = 300, seed: int = 0) -> list[PHISample]:
    """``n_records`` clinical paragraphs of two or three templated sentences each."""
    rng = random.Random(seed)
    samples = []
    for _ in range(n_records):
        g = _Gen(rng)
        text = "".join(rng.choice(TEMPLATES)(g) for _ in range(rng.randint(2, 3)))
        samples.append(PHISample(text, g.planted))
    return samples


CLEAN_TEMPLATES = [
    "患者于2023年{m}月{d}日行{op}，术后予{drug}抗感染治疗。",
    "查体：血压{sbp}/{dbp}mmHg，心率{hr}次/分，双肺呼吸音清，未闻及干湿啰音。",
    "血常规示白细胞计数{wbc}×10^9/L，中性粒细胞百分比{neu}%，C反应蛋白{crp}mg/L。",
    "{dx}患者应长期服用{drug}，并定期复查肝肾功能。",
    "心脏超声提示左心室射血分数{ef}%，左心房内径{la}mm。",
    "胸部CT示右肺上叶见一大小约{size}mm结节，建议3个月后复查。",
    "给予{drug}，同时监测血糖，空腹血糖控制在{glu}mmol/L以下。",
    "患者高热{days}天，最高体温{temp}℃，伴畏寒、寒战，双下肢无水肿。",
    "腰椎MRI示L{v}/L{v2}椎间盘突出，硬膜囊受压。",
    "{dx}的一线治疗包括{drug}，疗程{weeks}周。",
    "患者安静休息，时有胸闷，曾于{y}年行经皮冠状动脉介入治疗。",
    "入住ICU后第{days}天拔除气管插管，改为鼻导管吸氧{flow}L/min。",
    "甲状腺功能示TSH {tsh}mIU/L，FT4正常，考虑亚临床甲状腺功能减退。",
    "予{drug}后患者症状明显好转，于第{days}天出院。",
]
OPERATIONS = ["腹腔镜下阑尾切除术", "经皮冠状动脉介入治疗", "全髋关节置换术", "甲状腺次全切除术", "胆囊切除术"]


def clean_sentences(n: int = 300, seed: int = 1) -> list[str]:
    """Clinical sentences that hold no identifier (doses, lab values, dates of care, anatomy)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tpl = rng.choice(CLEAN_TEMPLATES)
        out.append(tpl.format(
            m=rng.randint(1, 12), d=rng.randint(1, 28), op=rng.choice(OPERATIONS), drug=rng.choice(DRUGS), dx=rng.choice(DIAGNOSES),
            sbp=rng.randint(95, 190), dbp=rng.randint(55, 115), hr=rng.randint(50, 130), wbc=round(rng.uniform(2, 25), 1), neu=rng.randint(40, 95),
            crp=round(rng.uniform(1, 200), 1), ef=rng.randint(25, 70), la=rng.randint(28, 55), size=rng.randint(3, 30), glu=round(rng.uniform(5, 8), 1),
            days=rng.randint(1, 14), temp=round(rng.uniform(37.5, 40.5), 1), v=4, v2=5, weeks=rng.randint(1, 12), y=rng.randint(2005, 2022),
            flow=rng.randint(1, 5), tsh=round(rng.uniform(4.5, 9.5), 2),
        ))
    return out


def score(samples: list[PHISample], types=None) -> dict:
    """Recall per identifier type: a planted value counts as found when it is gone from the output.

    Returns counts only (planted, found, recall per type, and placeholders written per type);
    no identifier value leaves this function.
    """
    planted, found, written = Counter(), Counter(), Counter()
    for s in samples:
        out, counts = deidentify(s.text, types)
        written.update(counts)
        for kind, value in s.planted:
            planted[kind] += 1
            found[kind] += value not in out
    return {
        "planted": sum(planted.values()),
        "by_type": {k: {"planted": planted[k], "found": found[k], "recall": found[k] / planted[k]} for k in sorted(planted)},
        "placeholders": dict(sorted(written.items())),
    }
