"""Noisy PromptCBLUE prediction files, generated from the embedded sample with a fixed seed.

Standard library only, so the same files can be produced anywhere the sample is readable.
Every variant keeps one prediction line per gold line, in gold order, with the fields a
PromptCBLUE prediction file carries; what varies is the reply (``target``) and how the JSON line
is written.  The reply noise: out-of-list labels, empty and blank replies, replies in the wrong
format, truncated replies, dropped, shuffled and extra lines, labels of other samples.  The line
noise: extra keys, escaped (ASCII) JSON, keys in another order.

Three more pairs hold a file the official evaluator rejects or cannot name, beside the file it
scores in its place (``*.official.jsonl``, and ``*.official-gold.jsonl`` where the gold differs):

* ``missing`` — every seventh prediction left out; in its place an empty reply;
* ``crash`` — CMedCausal and Text2DT replies with a line the official post-processing stops on;
  in its place the same replies without that line;
* ``alias`` — CMeIE-V2 named ``CMeIE`` (as PromptCBLUE's toy files name it), without Text2DT and
  CMedCausal; in its place the name ``CMeIE-V2``.

    python tests/eval/promptcblue_noise.py OUT_DIR     # writes every file above and gold.jsonl
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "medgo" / "assets" / "promptcblue"
SEEDS = {"noisy-1": 11, "noisy-2": 22, "noisy-3": 33, "noisy-4": 44, "noisy-5": 55}
JUNK_LABELS = ("不知道", "其他", "无法判断", "相关性一般", "是", "疾病 ", "阳性")
# Lines the official post-processing reads without stopping, per task that stops on unreadable lines.
ODD_LINES = {
    "Text2DT": ("节点9：role=D；logical_rel=null；triples=[('a', 'b')]", "节点9：role=C；triples=oops",
                "节点9：role=X；logical_rel=xor；triples=[('头痛', '临床表现', '发热'), 5]"),
    "CMedCausal": ("头实体：头痛；尾实体：发热", "上下位关系三元组如下：", "给定的文本没有指定关系的三元组"),
}  # fmt: skip
WRONG_FORMAT = ("我认为答案是：{}", "{}。", "答：\n{}", "{}，{}")


def load(name: str) -> list[dict]:
    """Rows of the embedded sample file ``name`` (``dev.json`` or ``dev_predictions.json``)."""
    return [json.loads(line) for line in (SAMPLE / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def _labels(rows: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in rows:
        if "\n" not in r["target"]:
            out.setdefault(r["task_dataset"], []).append(r["target"])
    return out


def _lines_op(rng: random.Random, task: str, reply: str) -> str:
    lines = reply.split("\n")
    op = rng.choice(("drop", "shuffle", "extra", "dup"))
    if op == "drop" and len(lines) > 1:
        lines.pop(rng.randrange(1, len(lines)))
    elif op == "shuffle" and len(lines) > 2:
        body = lines[1:]
        rng.shuffle(body)
        lines = lines[:1] + body
    elif op == "extra":
        lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(ODD_LINES.get(task, ("这一行不是答案格式", "：", "实体：a：b"))))
    else:
        lines.append(lines[-1])
    return "\n".join(lines)


def noisy_reply(rng: random.Random, row: dict, model_reply: str, labels: dict[str, list[str]]) -> str:
    """One reply for ``row``: the model's, the gold one, or one of the noise operators applied."""
    task, gold = row["task_dataset"], row["target"]
    op = rng.choice(("model", "gold", "empty", "blank", "junk", "wrong", "truncate", "lines", "pad", "other"))
    if op == "model":
        return model_reply
    if op == "empty":
        return ""
    if op == "blank":
        return " \n " if task != "Text2DT" else ""
    if op == "junk":
        return rng.choice(JUNK_LABELS) if task not in ODD_LINES else rng.choice(ODD_LINES[task])
    if op == "wrong" and task not in ODD_LINES:
        return rng.choice(WRONG_FORMAT).format(gold.split("\n")[-1], gold[:3])
    if op == "truncate" and task not in ODD_LINES:
        return gold[: max(1, len(gold) // 2)]
    if op == "lines":
        return _lines_op(rng, task, gold)
    if op == "pad":
        return f"  {gold}\n"
    if op == "other" and labels.get(task):
        return rng.choice(labels[task])
    return gold


def _line(rng: random.Random, rec: dict) -> str:
    rec = dict(rec)
    if rng.random() < 0.3:
        rec["generated_by"] = "noise"
    if rng.random() < 0.3:
        rec = dict(reversed(list(rec.items())))
    return json.dumps(rec, ensure_ascii=rng.random() < 0.3)


def variant(name: str) -> list[str]:
    """The JSONL lines of noisy variant ``name`` (one of :data:`SEEDS`)."""
    rng = random.Random(SEEDS[name])
    gold = load("dev.json")
    model = {r["sample_id"]: r["target"] for r in load("dev_predictions.json")}
    labels = _labels(gold)
    out = []
    for row in gold:
        reply = noisy_reply(rng, row, model.get(row["sample_id"], ""), labels)
        out.append(_line(rng, {**row, "target": reply}))
    return out


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in variant(name)]


def missing_pair() -> tuple[list[dict], list[dict]]:
    """Noisy-3 without every seventh prediction, and the same file with empty replies in their place."""
    rows = _rows("noisy-3")
    return [r for i, r in enumerate(rows) if i % 7 != 3], [r if i % 7 != 3 else {**r, "target": ""} for i, r in enumerate(rows)]


def crash_pair() -> tuple[list[dict], list[dict]]:
    """Noisy-4 with a line the official post-processing stops on in every CMedCausal and Text2DT reply, and without."""
    rows = _rows("noisy-4")
    bad = {"CMedCausal": "这一行没有头实体", "Text2DT": " "}
    ours = [{**r, "target": f"{r['target']}\n{bad[r['task_dataset']]}"} if r["task_dataset"] in bad else r for r in rows]
    return ours, rows


def alias_rows(rows: list[dict], name: str) -> list[dict]:
    """``rows`` without Text2DT and CMedCausal, CMeIE-V2 renamed ``name``."""
    keep = [r for r in rows if r["task_dataset"] not in ("Text2DT", "CMedCausal")]
    return [{**r, "task_dataset": name} if r["task_dataset"] == "CMeIE-V2" else r for r in keep]


def _dump(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_all(out_dir: Path) -> list[Path]:
    """Every variant, the pairs and the gold file into ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    gold = load("dev.json")
    paths = [_dump(out_dir / "gold.jsonl", gold)]
    for name in SEEDS:
        paths.append(out_dir / f"{name}.jsonl")
        paths[-1].write_text("\n".join(variant(name)) + "\n", encoding="utf-8")
    for name, (ours, official) in (("missing", missing_pair()), ("crash", crash_pair())):
        paths += [_dump(out_dir / f"{name}.jsonl", ours), _dump(out_dir / f"{name}.official.jsonl", official)]
    paths += [_dump(out_dir / "alias-gold.jsonl", alias_rows(gold, "CMeIE")), _dump(out_dir / "alias.jsonl", alias_rows(_rows("noisy-2"), "CMeIE")),
              _dump(out_dir / "alias.official-gold.jsonl", alias_rows(gold, "CMeIE-V2")), _dump(out_dir / "alias.official.jsonl", alias_rows(_rows("noisy-2"), "CMeIE-V2"))]
    return paths


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1])):
        print(p)
