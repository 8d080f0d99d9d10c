"""The quickstart's held-out splits: CBLUE sample sets with a dev split, and the doctors' pairs split in two.

    python -m medgo.quickstart_sets    # rewrites medgo/assets/quickstart/cblue/<TASK>/<TASK>_{train,dev}.json
                                       # and medgo/assets/quickstart/dpo/pairs_{train,dev}.jsonl

CBLUE: larger CHIP-STS, KUAKE-QIC and KUAKE-QQR files than ``assets/cblue``.
Queries are composed from question patterns and slot values (diseases, symptoms, foods, tests...).
The split is by slot value: every disease, symptom, food, herb, test and procedure belongs either
to the train or to the dev side, so no dev query is a train query with a word changed back, and a
model can only score on dev by reading the question's form, not by remembering it.  The files
have the native layout of each task (``medgo.data.cblue`` reads them); the output is the same for
every run (a fixed seed).

Doctors' pairs: every preference pair the sample feedback and the ready-made pairs give
(:func:`medgo.train.preference.build_preferences`, de-identified), split by prompt so that no
prompt is on both sides; the dev side holds at least ``DPO_DEV`` pairs.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

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


# ----------------------------------------------------------------------------- KUAKE-QQR

QQR_TOPICS = {  # paraphrases of a query about {d}, and narrower versions (a subset of its meaning)
    "treat": (["{d}怎么治疗", "{d}如何治疗", "{d}的治疗方法"], ["{g}{d}怎么治疗", "{d}吃什么药治疗", "{d}手术治疗怎么做"]),
    "cause": (["{d}的原因", "{d}是什么原因引起的", "为什么会得{d}"], ["{g}{d}的原因", "{d}反复发作的原因"]),
    "diet": (["{d}吃什么好", "{d}饮食", "{d}应该吃什么"], ["{d}能吃{f}吗", "{g}{d}吃什么好"]),
    "symptom": (["{d}的症状", "{d}有什么症状", "{d}有哪些表现"], ["{g}{d}的症状", "{d}早期症状"]),
}


def qqr(side: int, n: int, rng: random.Random) -> list[dict]:
    topics, out, seen = list(QQR_TOPICS), [], set()
    while len(out) < n:
        label, t = "210"[len(out) % 3], rng.choice(topics)
        same, narrower = QQR_TOPICS[t]
        d, d2 = rng.sample(DISEASES[side], 2)
        slots = {"d": d, "f": rng.choice(FOODS[side]), "g": rng.choice(GROUPS[side])}
        if label == "2":
            q1, q2 = (p.format(**slots) for p in rng.sample(same, 2))
        elif label == "1":
            q1, q2 = rng.choice(same).format(**slots), rng.choice(narrower).format(**slots)
        else:  # the narrower query first (the second is its superset), or another disease
            q1, q2 = (rng.choice(narrower).format(**slots), rng.choice(same).format(**slots)) if rng.random() < 0.5 else \
                (rng.choice(same).format(**slots), rng.choice(same).format(**{**slots, "d": d2}))
        if (q1, q2) not in seen and q1 != q2:
            seen.add((q1, q2))
            out.append({"id": "", "query1": q1, "query2": q2, "label": label})
    return out


# ----------------------------------------------------------------------------- files

BUILDERS = {"CHIP-STS": sts, "KUAKE-QIC": qic, "KUAKE-QQR": qqr}


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
    for task in BUILDERS:
        for split in SIZES:
            write(out / "cblue" / task / f"{task}_{split}.json", json.dumps(build(task, split), ensure_ascii=False, indent=1) + "\n")
    for split, rows in split_pairs(doctor_pairs()).items():
        write(out / "dpo" / f"pairs_{split}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


if __name__ == "__main__":
    main()
