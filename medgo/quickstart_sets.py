"""The quickstart's held-out splits: CBLUE sample sets with a dev split, and the doctors' pairs split in two.

    python -m medgo.quickstart_sets    # rewrites medgo/assets/quickstart/cblue/<TASK>/<TASK>_{train,dev}.json,
                                       # medgo/assets/quickstart/promptcblue/{train,dev}.json
                                       # and medgo/assets/quickstart/dpo/pairs_{train,dev}.jsonl

CBLUE: CHIP-STS, KUAKE-QIC and CHIP-CTC sets, larger than ``assets/cblue``.
Items are composed from patterns and slot values (diseases, symptoms, foods, drugs, tests...).
The split is by slot value: every disease, symptom, food, herb, drug, test and procedure belongs
either to the train or to the dev side (a CHIP-CTC category without slots has its own sentences on
each side), so no dev item is a train item with a word changed back, and a model can only score
on dev by reading the item's form, not by remembering it.  Each set is written twice: in the
native layout of its task (``medgo.data.cblue`` reads it) and as PromptCBLUE rows (``input`` asks
with the options, ``target`` is the label word PromptCBLUE's evaluator reads), which the
quickstart trains and evaluates on.  The output is the same for every run (a fixed seed).

Doctors' pairs: every preference pair the sample feedback and the ready-made pairs give
(:func:`medgo.train.preference.build_preferences`, de-identified), split by prompt so that no
prompt is on both sides; the dev side holds at least ``DPO_DEV`` pairs.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from medgo.data.answers import CTC_ZH
from medgo.data.cblue_gold import CTC_LABELS
from medgo.data.paths import asset_uri

OUT = Path(__file__).resolve().parent / "assets" / "quickstart"
SEED = 7
SIZES = {"train": 240, "dev": 60}
DPO_DEV = 50

# Slot values: the first list of each pair is the train side, the second the dev side.
DISEASES = (
    ["糖尿病", "高血压", "乙肝", "胃炎", "肺炎", "哮喘", "痛风", "贫血", "湿疹", "鼻炎", "甲亢", "冠心病", "肾结石", "颈椎病", "偏头痛", "荨麻疹",
     "支气管炎", "胆囊炎", "前列腺炎", "腰椎间盘突出"],
    ["高血脂", "脂肪肝", "胃溃疡", "中耳炎", "结膜炎", "带状疱疹", "骨质疏松", "甲减", "肠炎", "咽炎", "痔疮", "银屑病"],
)
SYMPTOMS = (
    ["头晕", "咳嗽", "胸闷", "腹泻", "失眠", "耳鸣", "便秘", "心慌", "腰疼", "盗汗", "恶心", "牙龈出血", "手脚发麻", "尿频"],
    ["胃胀", "咽喉痛", "眼睛干涩", "关节疼", "口苦", "乏力", "脱发", "皮肤瘙痒"],
)
FOODS = (["西瓜", "鸡蛋", "牛奶", "香蕉", "海鲜", "辣椒", "羊肉", "豆腐"], ["苹果", "蜂蜜", "花生", "葡萄", "螃蟹", "红薯"])
HERBS = (["蒲公英", "枸杞", "菊花", "金银花", "黄芪", "三七", "陈皮"], ["决明子", "当归", "罗汉果", "艾叶", "党参", "玫瑰花"])
TESTS = (["尿酸", "血糖", "转氨酶", "肌酐", "血小板", "白细胞"], ["甘油三酯", "胆固醇", "血红蛋白", "尿蛋白", "促甲状腺素"])
PROCEDURES = (["做胃镜", "拍胸片", "做核磁共振", "拔智齿", "做B超"], ["做肠镜", "做CT", "配眼镜", "洗牙", "做心电图"])
GROUPS = (["儿童", "老人", "孕妇"], ["小孩", "老年人", "哺乳期妈妈"])
OTHER = (["医院几点上班", "挂号可以用医保卡吗", "住院部在几楼", "周末医生上班吗", "网上挂号怎么退号", "门诊几点下班", "病历本在哪里买", "陪护证怎么办理"],
         ["停车场在哪里", "专家号怎么预约", "医院食堂几点开门", "探视时间是几点", "发票丢了怎么补", "医院有没有无线网"])

# ----------------------------------------------------------------------------- KUAKE-QIC

QIC_PATTERNS = {
    "病情诊断": ["{s}是什么病", "经常{s}是不是得了{d}", "我最近{s}，是什么病"],
    "病因分析": ["为什么会{s}", "{s}是什么原因引起的", "{d}是怎么得的"],
    "治疗方案": ["{d}怎么治疗", "{d}吃什么药好", "{s}怎么治效果好"],
    "就医建议": ["{d}应该挂什么科", "{s}去医院看哪个科", "{d}需要去大医院看吗"],
    "指标解读": ["{t}偏高是什么意思", "{t}检查结果偏低说明什么", "体检{t}异常要紧吗", "化验单上{t}高了是怎么回事"],
    "疾病表述": ["什么是{d}", "{d}是一种什么病", "{d}的症状有哪些"],
    "后果表述": ["{d}不治疗会怎么样", "{d}有什么危害", "{d}严重了会怎样"],
    "注意事项": ["{d}能吃{f}吗", "{d}平时要注意什么", "{d}患者饮食要注意什么"],
    "功效作用": ["{h}有什么作用", "{h}泡水喝有什么功效", "{h}的功效与作用", "{h}煮水喝有什么好处"],
    "医疗费用": ["{p}多少钱", "{p}费用大概多少", "{p}医保能报销多少", "{p}要花多少钱", "{p}自费要多少"],
    "其他": ["{o}", "请问{o}", "想问一下{o}"],
}


def fill(pattern: str, side: int, rng: random.Random) -> str:
    """A pattern with every slot filled from one side (0 train, 1 dev) of the slot lists."""
    slots = {"d": DISEASES, "s": SYMPTOMS, "f": FOODS, "h": HERBS, "t": TESTS, "p": PROCEDURES, "g": GROUPS, "o": OTHER}
    return pattern.format(**{k: rng.choice(v[side]) for k, v in slots.items()})


def qic(side: int, n: int, rng: random.Random) -> list[dict]:
    labels, out, seen = list(QIC_PATTERNS), [], set()
    while len(out) < n:
        label = labels[len(out) % len(labels)]
        query = fill(rng.choice(QIC_PATTERNS[label]), side, rng)
        if query not in seen:
            seen.add(query)
            out.append({"id": "", "query": query, "label": label})
    return out


# ----------------------------------------------------------------------------- CHIP-STS

STS_CATEGORIES = ("diabetes", "hypertension", "hepatitis", "aids", "breast_cancer")
STS_INTENTS = {  # paraphrases of one question about disease {d}
    "diet": ["{d}能吃{f}吗", "{d}病人可以吃{f}吗", "得了{d}能不能吃{f}"],
    "cure": ["{d}能治好吗", "{d}可以根治吗", "{d}能不能彻底治愈"],
    "cause": ["{d}是什么原因引起的", "为什么会得{d}", "{d}的病因是什么"],
    "symptom": ["{d}有哪些症状", "{d}有什么表现", "得了{d}会有什么症状"],
    "heredity": ["{d}会遗传吗", "{d}会不会遗传给孩子", "{d}有遗传性吗"],
    "medicine": ["{d}吃什么药好", "{d}用什么药治疗", "治{d}该吃哪种药"],
    "exercise": ["{d}可以运动吗", "{d}病人能不能锻炼", "得了{d}适合做运动吗"],
}


def sts(side: int, n: int, rng: random.Random) -> list[dict]:
    intents, out, seen = list(STS_INTENTS), [], set()
    while len(out) < n:
        d, f, same = rng.choice(DISEASES[side]), rng.choice(FOODS[side]), len(out) % 2 == 0
        a, b = rng.sample(intents, 2)
        p1, p2 = rng.sample(STS_INTENTS[a], 2) if same else (rng.choice(STS_INTENTS[a]), rng.choice(STS_INTENTS[b]))
        pair = (p1.format(d=d, f=f), p2.format(d=d, f=f))
        if pair not in seen:
            seen.add(pair)
            out.append({"id": "", "text1": pair[0], "text2": pair[1], "label": "1" if same else "0", "category": rng.choice(STS_CATEGORIES)})
    return out


# ----------------------------------------------------------------------------- CHIP-CTC

DRUGS = (["阿司匹林", "青霉素", "华法林", "二甲双胍", "布洛芬", "头孢类抗生素", "糖皮质激素"], ["磺胺类药物", "他汀类药物", "胰岛素", "氯吡格雷", "造影剂"])
SURGERIES = (["冠脉支架植入", "胃大部切除", "髋关节置换", "甲状腺切除"], ["心脏搭桥", "肝移植", "肾移植", "脊柱融合"])
NUMBERS = (["2", "3", "4", "6", "8"], ["5", "7", "9", "10", "12"])
AGES = (["18", "20", "40", "60", "65", "70"], ["16", "30", "45", "50", "75", "80"])
CTC_PATTERNS = {  # native label: patterns with slots, or ([train patterns], [dev patterns]) for a category without slots
    "Age": ["年龄{a}岁以上", "年龄不超过{a}岁", "年龄小于{a}岁者", "{a}岁及以上的患者"],
    "Disease": ["确诊为{d}的患者", "合并严重{d}者", "既往有{d}病史", "{n}个月内新发{d}"],
    "Allergy Intolerance": ["对{m}过敏者", "已知对{m}或其辅料过敏", "有{m}过敏史"],
    "Pharmaceutical Substance or Drug": ["近{n}周内使用过{m}", "正在服用{m}的患者", "入组前{n}个月内接受过{m}治疗"],
    "Laboratory Examinations": ["{t}高于正常值上限{n}倍", "实验室检查{t}异常", "{t}超过正常范围"],
    "Therapy or Surgery": ["{n}个月内接受过{u}手术", "既往接受过{u}术者", "计划在研究期间进行{u}手术"],
    "Smoking Status": ["每天吸烟超过{n}支", "吸烟史{n}年以上", "戒烟不足{n}个月者"],
    "Alcohol Consumer": ["每周饮酒超过{n}次", "每天饮白酒超过{n}两", "酒精依赖史{n}年以上"],
    "Pregnancy-related Activity": (["妊娠期或哺乳期妇女", "计划在研究期间怀孕者", "育龄期妇女妊娠试验阳性"], ["孕妇或正在哺乳的妇女", "研究期间有生育计划者"]),
    "Consent": (["自愿签署知情同意书", "能够理解并签署知情同意书者", "患者本人同意参加本研究"], ["受试者或其监护人签署知情同意", "愿意参加研究并签字同意"]),
}


def ctc(side: int, n: int, rng: random.Random) -> list[dict]:
    labels, out, seen = list(CTC_PATTERNS), [], set()
    slots = {"a": AGES, "d": DISEASES, "n": NUMBERS, "m": DRUGS, "t": TESTS, "u": SURGERIES}
    while len(out) < n:
        label = labels[len(out) % len(labels)]
        patterns = CTC_PATTERNS[label]
        for _ in range(50):  # a new sentence where the category has one left; a few categories repeat theirs
            pattern = rng.choice(patterns[side] if isinstance(patterns, tuple) else patterns)
            text = pattern.format(**{k: rng.choice(v[side]) for k, v in slots.items()}) + "；"
            if text not in seen:
                break
        seen.add(text)
        out.append({"id": "", "label": label, "text": text})
    return out


# ----------------------------------------------------------------------------- PromptCBLUE layout

QIC_PROMPTCBLUE = {"疾病表述": "疾病描述", "其他": "非上述类型"}  # the native label names PromptCBLUE words differently
QIC_CHOICES = ["病情诊断", "病因分析", "治疗方案", "就医建议", "指标解读", "疾病描述", "后果表述", "注意事项", "功效作用", "医疗费用", "非上述类型"]
CTC_CHOICES = {label: CTC_ZH[CTC_LABELS.index(label)] for label in CTC_PATTERNS}
"""The categories the CHIP-CTC set uses, by their PromptCBLUE names (its options list these only)."""


def promptcblue_row(task: str, row: dict, split: str) -> dict:
    """One native item as a PromptCBLUE row (``input`` with the options, ``target`` the answer word),
    in the layout and with the label words of PromptCBLUE's files and evaluator."""
    if task == "CHIP-STS":
        ask, choices, target = f"以下两句话的意思相同的吗？选项：是的，不是\n“{row['text1']}”，“{row['text2']}”。", ["是的", "不是"], "是的" if row["label"] == "1" else "不是"
    elif task == "KUAKE-QIC":
        ask, choices, target = f"判断下面搜索词的意图，选项：{'，'.join(QIC_CHOICES)}\n搜索词：{row['query']}", QIC_CHOICES, QIC_PROMPTCBLUE.get(row["label"], row["label"])
    else:
        ask, choices, target = f"判断临床试验筛选标准的类型，选项：{'，'.join(CTC_CHOICES.values())}\n筛选标准：{row['text']}", list(CTC_CHOICES.values()), CTC_CHOICES[row["label"]]
    return {"input": f"{ask}\n答：", "target": target, "answer_choices": choices, "task_type": "cls",
            "task_dataset": task, "sample_id": f"{task}-{split}-{row['id'].split('-')[-1]}"}  # fmt: skip


# ----------------------------------------------------------------------------- files

BUILDERS = {"CHIP-STS": sts, "KUAKE-QIC": qic, "CHIP-CTC": ctc}


def build(task: str, split: str) -> list[dict]:
    side = 0 if split == "train" else 1
    rng = random.Random(f"{SEED}-{task}-{split}")
    rows = BUILDERS[task](side, SIZES[split], rng)
    rng.shuffle(rows)
    for i, row in enumerate(rows, 1):
        row["id"] = f"{split}-{i}"
    return rows


def doctor_pairs() -> list[dict]:
    """The sample feedback's and ready-made pairs as TRL rows ``{id, prompt, chosen, rejected}``."""
    from medgo.train.preference import build_preferences

    rows = build_preferences(feedback=[asset_uri("feedback", "feedback.jsonl")], pairs=[asset_uri("dpo", "pairs.jsonl")]).rows()
    return [{"id": r["pair_id"], "prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]


def split_pairs(rows: list[dict], dev_size: int = DPO_DEV) -> dict[str, list[dict]]:
    """``{train, dev}``: whole prompts go to dev, in an order fixed by their hash, until it holds ``dev_size`` pairs."""
    key = lambda r: json.dumps(r["prompt"], ensure_ascii=False)  # noqa: E731
    prompts = sorted({key(r) for r in rows}, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    dev: set[str] = set()
    for p in prompts:
        if sum(key(r) in dev for r in rows) >= dev_size:
            break
        dev.add(p)
    return {"train": [r for r in rows if key(r) not in dev], "dev": [r for r in rows if key(r) in dev]}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(path)


def main(out: Path = OUT) -> None:
    promptcblue: dict[str, list[dict]] = {split: [] for split in SIZES}
    for task in BUILDERS:
        for split in SIZES:
            rows = build(task, split)
            promptcblue[split] += [promptcblue_row(task, r, split) for r in rows]
            write(out / "cblue" / task / f"{task}_{split}.json", json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
    for split, rows in promptcblue.items():
        write(out / "promptcblue" / f"{split}.json", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    for split, rows in split_pairs(doctor_pairs()).items():
        write(out / "dpo" / f"pairs_{split}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


if __name__ == "__main__":
    main()
