"""PromptCBLUE replies turned into the structured answers its evaluator scores.

The rules are those of PromptCBLUE's post-processing (``src/evaluation/post_generate_process.py``),
line by line, including its quirks: a CHIP-CDEE attribute is matched against every key after
the previous key's prefix was removed, a CHIP-CDN answer is read from the reply's last line only,
an empty Text2DT reply becomes one decision node.  Where the reference post-processing stops on a
reply (a CMedCausal line without ``头实体：``, a Text2DT line without ``：role=``, a condition
triple whose inner relation is not ``因果关系``, a Text2DT triple that is not three strings), the
default raises :class:`ReplyFormatError`; ``lenient=True`` skips the line (or the triple).

Text2DT triples are read as Python literals (``ast.literal_eval``); the reference reads them with
``eval``, which also runs expressions.  On literals both read the same.
"""

from __future__ import annotations

import ast

from medgo.data.files import TaskFileError

MRG_KEYS = ("主诉：", "现病史：", "辅助检查：", "既往史：", "诊断：", "建议：")
CDEE_KEYS = ("主体词", "发生状态", "描述词", "解剖部位")
CDEE_LISTS = ("描述词", "解剖部位")
SR_DEFAULT = "无法根据上下文确定病人是否患有该症状"
CLASS_TASKS = ("CHIP-CTC", "CHIP-STS", "KUAKE-IR", "KUAKE-QIC", "KUAKE-QQR", "KUAKE-QTR", "IMCS-V2-DAC", "MedDG")


class ReplyFormatError(TaskFileError):
    """A reply the reference post-processing stops on; the message names the line."""


def _stop(task: str, line: str, why: str) -> ReplyFormatError:
    return ReplyFormatError(f"{task} reply line {line[:60]!r}: {why}; the official post-processing stops here (--lenient skips the line)")


def _choices(task: str, choices, lenient: bool, need_list: bool = True):
    """``answer_choices`` where the reference needs a list (or, ``need_list=False``, a container)."""
    ok = isinstance(choices, list) if need_list else hasattr(choices, "__contains__")
    if ok:
        return choices
    if lenient:
        return []
    raise ReplyFormatError(f"{task}: answer_choices is {type(choices).__name__}, not a list; the official post-processing stops here")


def _entities(text: str, choices) -> list[dict]:
    out = []
    for choice in choices:
        for piece in text.split("\n"):
            if piece.startswith(f"{choice}实体"):
                mentions = [w.strip() for w in piece.replace(f"{choice}实体：", "").split("，")]
                out += [{"entity": m, "type": choice} for m in mentions if m]
    return out


def _spo(text: str) -> list[dict]:
    out = []
    for line in text.split("\n"):
        predicate = line.split("关系的头尾实体对")[0][2:].strip()
        line = line.replace(f"具有{predicate}关系的头尾实体对如下：", "")
        for spo in line.split("。"):
            parts = spo.split("，尾实体为")
            if len(parts) >= 2:
                head, tail = parts[0].replace("头实体为", "").strip(), parts[1].replace("尾实体为", "").strip()
                out.append({"predicate": predicate, "subject": head, "object": tail})
    return out


def _after(line: str, sep: str, task: str) -> str:
    parts = line.split(sep)
    if len(parts) < 2:
        raise _stop(task, line, f"no {sep!r}")
    return parts[1]


def _causal_triple(line: str, rel):
    head = _after(line, "头实体：", "CMedCausal").split("；尾实体：")[0]
    if rel != "条件关系":
        return {"predicate": rel, "subject": head, "object": _after(line, "；尾实体：", "CMedCausal")}
    inner = _after(line, "；尾三元组：", "CMedCausal")
    sub_head = _after(inner, "头实体：", "CMedCausal").split("；尾实体：")[0]
    sub_tail = _after(inner, "；尾实体：", "CMedCausal").split("；关系：")[0]
    sub_rel = _after(inner, "；关系：", "CMedCausal").split("；关系：")[0]
    if sub_rel != "因果关系":
        raise _stop("CMedCausal", line, f"inner relation {sub_rel!r} is not 因果关系")
    return {"predicate": rel, "subject": head, "object": {"predicate": sub_rel, "subject": sub_head, "object": sub_tail}}


CAUSAL_HEADERS = (("因果关系三元组如下", "因果关系"), ("条件关系三元组", "条件关系"), ("上下位关系", "上下位关系"))


def _causal(text: str, lenient: bool) -> list[dict]:
    out, rel = [], None
    for line in text.split("\n"):
        line = line.strip()
        header = next((r for marker, r in CAUSAL_HEADERS if marker in line), None)
        if header:
            rel = header
            continue
        if "给定的文本没有指定关系的三元组" in line:
            break
        if line:
            try:
                out.append(_causal_triple(line, rel))
            except ReplyFormatError:
                if not lenient:
                    raise
    return out


def _triples(raw: str) -> list:
    """The reference's triple list: a literal list; items without a length make it empty; items of length 3 stay."""
    try:
        triples = ast.literal_eval(raw)
        if not isinstance(triples, list):
            return []
        return [t for t in triples if len(t) == 3]
    except Exception:  # noqa: BLE001 - any unreadable triple text is an empty list, as in the reference
        return []


def _dt_node(line: str) -> dict:
    role = _after(line, "：role=", "Text2DT").split("；logical_rel=")[0]
    parts = line.split("；logical_rel=")
    logical_rel = parts[1].split("；triples=")[0] if len(parts) > 1 else "null"
    parts = line.split("；triples=")
    return {"role": role, "logical_rel": logical_rel, "triples": _triples(parts[1]) if len(parts) > 1 else []}


def _text2dt(text: str, lenient: bool) -> list[dict]:
    nodes = []
    for line in text.split("\n"):
        if "根据给定的指南文本抽取的诊疗决策树" in line or not line:
            continue
        try:
            nodes.append(_dt_node(line))
        except ReplyFormatError:
            if not lenient:
                raise
    return nodes or [{"role": "D", "logical_rel": "null", "triples": []}]


def lowered_triples(nodes: list[dict], lenient: bool) -> list[dict]:
    """Nodes with each triple as a tuple of three lower-cased strings, as the tree metric reads them."""
    out = []
    for n in nodes:
        triples = []
        for t in n["triples"]:
            try:
                triples.append((t[0].lower(), t[1].lower(), t[2].lower()))
            except Exception as exc:  # noqa: BLE001 - whatever the reference would stop on
                if not lenient:
                    raise ReplyFormatError(f"Text2DT triple {t!r} is not three strings; the official evaluator stops here (--lenient drops it)") from exc
        out.append({**n, "triples": triples})
    return out


def _cdn(text: str, choices) -> list[dict]:
    answers = {w.strip() for w in text.split("\n")[-1].split("，") if w.strip()}
    return [{"entity": w, "type": "normalization"} for w in sorted(answers) if w in choices]


def _cdee_event(line: str) -> dict:
    info: dict = {}
    for attr in line.split("；"):
        for key in CDEE_KEYS:
            if attr.startswith(f"{key}："):
                attr = attr.replace(f"{key}：", "").strip()
                info[key] = [w.strip() for w in attr.split("，") if w.strip()] if key in CDEE_LISTS else attr
    return {**{k: [] if k in CDEE_LISTS else "" for k in CDEE_KEYS}, **info}


def _findings(text: str, choices, default: str) -> list[dict]:
    out = []
    for line in text.split("\n")[1:]:
        parts = line.split("：")
        if len(parts) == 2:
            out.append({"entity": parts[0].strip(), "attr": parts[1] if parts[1] in choices else default})
    return out


def _mrg(text: str) -> dict:
    report = {}
    for key in MRG_KEYS:
        for line in text.strip().split("\n")[1:]:
            if line.startswith(key):
                report[key[:-1]] = line.strip().split(key)[-1].strip()
    return report


def structure(task: str, reply: str, answer_choices=None, lenient: bool = False):
    """The structured answer the reference post-processing derives from ``reply`` for ``task``."""
    if not isinstance(reply, str):
        if not lenient:
            raise ReplyFormatError(f"{task}: reply is {type(reply).__name__}, not a string")
        reply = "" if reply is None else str(reply)
    if task in ("CMeEE-V2", "IMCS-V2-NER"):
        return _entities(reply, _choices(task, answer_choices, lenient))
    if task == "CMeIE-V2":
        _choices(task, answer_choices, lenient)
        return _spo(reply)
    if task == "CMedCausal":
        return _causal(reply, lenient)
    if task == "Text2DT":
        return _text2dt(reply, lenient)
    if task == "CHIP-CDN":
        return _cdn(reply, _choices(task, answer_choices, lenient, need_list=False))
    if task == "CHIP-CDEE":
        return [_cdee_event(line) for line in reply.split("\n")[1:]]
    if task == "CHIP-MDCFNPC":
        return _findings(reply, _choices(task, answer_choices, lenient, need_list=False), "不标注")
    if task == "IMCS-V2-SR":
        return _findings(reply, _choices(task, answer_choices, lenient, need_list=False), SR_DEFAULT)
    if task == "IMCS-V2-MRG":
        return _mrg(reply)
    if task == "CHIP-STS":
        return {"相同": "是的", "不同": "不是"}.get(reply.strip(), reply.strip())
    if task in CLASS_TASKS:
        return reply.strip()
    raise KeyError(f"unknown PromptCBLUE task {task!r}")
