"""Generation parsers: model reply text -> the task's prediction structure.

    from medgo.eval.metrics.parsers import parse
    pred, ok = parse("CMeEE-V2", reply, example)     # example: {"text": source sentence}

``parse`` returns ``(prediction, parse_ok)``.  The prediction has exactly the per-unit shape the
task's scorer takes (``score_*(gold, {key: prediction})``); ``parse_ok`` is False when the reply
holds nothing the parser recognises (the prediction is then empty or ``None`` and is scored as
wrong).  Parsers tolerate prose around the answer, Markdown, code fences, full-width or ASCII
punctuation, missing fields and repeated items.  Each reads the answer format that
:func:`medgo.data.answers.render` writes (the formats are listed there), so
``parse(render(gold)) == gold`` (the round trip is tested); they also accept CHIP-CTC and
IMCS-V2-DAC labels in Chinese.

``example`` carries what a parser needs beyond the reply: the source ``text`` for span tasks
(CMeEE-V2, CMedCausal) and the ``sentence`` for IMCS-V2-NER; ``candidates`` (CHIP-CDN, optional);
``findings`` (CHIP-MDCFNPC: ``[(unit_key, mention)]``).
"""

from __future__ import annotations

import ast
import itertools
import json
import re
from collections.abc import Callable

from medgo.data.answers import CMEEE_NAMES, CTC_ZH, DAC_ZH, IMCS_NER_NAMES
from medgo.data.cblue_gold import CMEIE_PREDICATES, CTC_LABELS, DAC_LABELS, MDCFNPC_ATTRS, MRG_SECTIONS, QIC_LABELS

CTC_ZH_TO_EN = dict(zip(CTC_ZH, CTC_LABELS))
DAC_ZH_TO_EN = dict(zip(DAC_ZH, DAC_LABELS))
SR_WORDS = {"阳性": "1", "阴性": "0", "不确定": "2", "有": "1", "没有": "0", "无": "0", "患有该症状": "1",
            "无法": "2", "不清楚": "2", "未知": "2",
            "没有患有该症状": "0", "无法根据上下文确定病人是否患有该症状": "2", "1": "1", "0": "0", "2": "2"}

_SEP = re.compile(r"[，,、;；]")
_COLON = r"[:：]"
_NONE_WORDS = ("无", "没有", "不存在", "未发现", "未找到", "none", "None", "无实体")
_STRIP = " \t\"'“”‘’「」『』《》【】[]()（）*`·.。!！?？"


# --------------------------------------------------------------------------- helpers


def clean(text) -> str:
    """Reply text without code fences, Markdown emphasis, ``<think>`` blocks and CR characters."""
    text = "" if text is None else str(text)
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    text = text.replace("\r", "")
    text = re.sub(r"```[a-zA-Z]*", "", text)
    text = text.replace("**", "").replace("__", "")
    return text.strip()


def _item(s: str) -> str:
    return s.strip().strip(_STRIP).strip()


def _split_items(s: str) -> list[str]:
    out = []
    for x in _SEP.split(s):
        x = _item(x)
        if x and x not in _NONE_WORDS and x not in out:
            out.append(x)
    return out


def _lines(text: str) -> list[str]:
    return [re.sub(r"^\s*(?:[-*•]|\d+[.、)）])\s*", "", line).strip() for line in clean(text).split("\n") if line.strip()]


_NONE_SENTENCE = re.compile(r"(没有|无|不存在|未发现|未找到|未识别出?)(任何|相关|指定|符合要求)?的?(医学)?(实体|关系|事件|症状|三元组|临床发现|标准词)")


def _says_none(text: str) -> bool:
    """The reply states there is nothing to extract (``无``, ``没有相关实体``...)."""
    t = _item(clean(text))
    return t in _NONE_WORDS or bool(_NONE_SENTENCE.search(t))


def occurrences(text: str, mention: str) -> list[int]:
    """Start offsets of every non-overlapping occurrence of ``mention`` in ``text``."""
    out, i = [], text.find(mention) if mention else -1
    while i >= 0:
        out.append(i)
        i = text.find(mention, i + len(mention))
    return out


def _typed_lines(text: str, names: dict) -> tuple[list[tuple[str, str]], bool]:
    """``(type_code, mention)`` pairs from ``类型(实体)?：a，b`` lines; ``names`` maps code -> display name."""
    alias = {}
    for code, name in names.items():
        alias[name] = code
        alias[code] = code
        alias[code.lower()] = code
    keys = sorted(alias, key=len, reverse=True)
    pat = re.compile(r"^(" + "|".join(map(re.escape, keys)) + r")(?:实体|类实体|类)?\s*" + _COLON + r"\s*(.*)$")
    pairs, seen_line = [], False
    for line in _lines(text):
        m = pat.match(line)
        if not m:
            continue
        seen_line = True
        code = alias[m.group(1)]
        for mention in _split_items(m.group(2)):
            if (code, mention) not in pairs:
                pairs.append((code, mention))
    return pairs, seen_line


# --------------------------------------------------------------------------- span tasks


def parse_cmeee(text: str, example: dict) -> tuple[list, bool]:
    """CMeEE-V2: typed mention lines -> ``[(start, end_inclusive, type)]`` for every occurrence in the source text."""
    source = str(example.get("text", ""))
    pairs, seen = _typed_lines(text, CMEEE_NAMES)
    cands = []
    for code, mention in pairs:
        for s in occurrences(source, mention):
            if (s, s + len(mention) - 1, code) not in cands:
                cands.append((s, s + len(mention) - 1, code))
    # an occurrence inside a longer mention of the same type is part of that mention, not an entity of its own
    ents = [a for a in cands if not any(b != a and b[2] == a[2] and b[0] <= a[0] and a[1] <= b[1] for b in cands)]
    return ents, seen or _says_none(text)


def parse_imcs_ner(text: str, example: dict) -> tuple[list, bool]:
    """IMCS-V2-NER: typed mention lines -> BIO tags over the sentence (longer mentions first, no overlaps)."""
    sentence = str(example.get("sentence", ""))
    pairs, seen = _typed_lines(text, IMCS_NER_NAMES)
    tags = ["O"] * len(sentence)
    for code, mention in sorted(pairs, key=lambda p: -len(p[1])):
        for s in occurrences(sentence, mention):
            if all(t == "O" for t in tags[s : s + len(mention)]):
                tags[s] = f"B-{code}"
                for k in range(s + 1, s + len(mention)):
                    tags[k] = f"I-{code}"
    return tags, seen or _says_none(text)


_ARROW = re.compile(r"\s*(?:->|→|=>|－>|—>|⇒)\s*")
_CAUSAL_KIND = {"因果": 1, "因果关系": 1, "条件": 2, "条件关系": 2, "上下位": 3, "上下位关系": 3}


def parse_causal(text: str, example: dict) -> tuple[list, bool]:
    """CMedCausal: ``因果：A -> B`` / ``上下位：A -> B`` / ``条件：C -> A -> B`` -> relation units (first occurrence spans)."""
    source = str(example.get("text", ""))

    def spans(args: list[str]):
        """One occurrence per argument: the non-overlapping combination lying closest together (earliest on ties)."""
        occ = []
        for a in args:
            a = _item(a.strip("()（）"))
            found = [(i, i + len(a)) for i in occurrences(source, a)] if a else []
            if not found:
                return None
            occ.append(found)
        best = None
        for combo in itertools.product(*occ):
            if any(x[0] < y[1] and y[0] < x[1] for x, y in itertools.combinations(combo, 2)):
                continue
            gap = sum(max(0, y[0] - x[1], x[0] - y[1]) for x, y in itertools.combinations(combo, 2))
            key = (gap, [c[0] for c in combo])
            if best is None or key < best[0]:
                best = (key, combo)
        return list(best[1]) if best else None

    pat = re.compile(r"^[\[【(（]?\s*(因果关系|因果|条件关系|条件|上下位关系|上下位)\s*[\]】)）]?\s*" + _COLON + r"?\s*(.+)$")
    units, seen = [], False
    for line in _lines(text):
        m = pat.match(line)
        if not m:
            continue
        seen = True
        kind = _CAUSAL_KIND[m.group(1)]
        parts = [p for p in _ARROW.split(m.group(2).strip().strip("()（）")) if p.strip()]
        if len(parts) != (3 if kind == 2 else 2):
            continue
        sp = spans(parts)
        if sp is None:
            continue
        u = (sp[0], 2, (sp[1], 1, sp[2])) if kind == 2 else (sp[0], kind, sp[1])
        if u not in units:
            units.append(u)
    return units, seen or _says_none(text)


# --------------------------------------------------------------------------- structured extraction


def _fields(line: str, names: dict) -> dict:
    """``name：value`` fields of one line, separated by ``；``/``;``/``|``; ``names`` maps aliases to field keys."""
    keys = sorted(names, key=len, reverse=True)
    pat = re.compile("(" + "|".join(map(re.escape, keys)) + r")\s*" + _COLON)
    out = {}
    hits = list(pat.finditer(line))
    for i, h in enumerate(hits):
        end = hits[i + 1].start() if i + 1 < len(hits) else len(line)
        value = line[h.end() : end].strip().rstrip("；;|，,").strip()
        out[names[h.group(1)]] = value
    return out


_SPO_NAMES = {"主体": "s", "头实体": "s", "subject": "s", "关系": "p", "predicate": "p", "客体": "o", "尾实体": "o", "object": "o"}


def parse_cmeie(text: str, example: dict | None = None) -> tuple[list, bool]:
    """CMeIE: ``主体：X；关系：P；客体：Y`` lines (or ``(X，P，Y)`` with a known predicate) -> ``[(s, p, o)]``."""
    triples, seen = [], False
    for line in _lines(text):
        f = _fields(line, _SPO_NAMES)
        if {"s", "p", "o"} <= f.keys():
            t = (_item(f["s"]), _item(f["p"]), _item(f["o"]))
        else:
            parts = [_item(x) for x in re.split(r"[，,|｜\t]", line.strip().strip("()（）[]【】")) if _item(x)]
            if len(parts) != 3 or parts[1] not in CMEIE_PREDICATES:
                continue
            t = tuple(parts)
        seen = True
        if all(t) and t not in triples:
            triples.append(t)
    return triples, seen or _says_none(text)


_CDEE_NAMES = {"主体词": "core", "发生状态": "tend", "描述词": "char", "解剖部位": "anat",
               "core_name": "core", "tendency": "tend", "character": "char", "anatomy_list": "anat"}
_TENDENCY = {"": "", "否定": "否定", "不确定": "不确定", "肯定": "", "确定": "", "阳性": "", "无": "", "阴性": "否定"}


def parse_cdee(text: str, example: dict | None = None) -> tuple[list, bool]:
    """CHIP-CDEE: one event per line -> ``[(core_name, tendency, frozenset(character), frozenset(anatomy))]``."""
    events, seen = [], False
    for line in _lines(text):
        f = _fields(line, _CDEE_NAMES)
        if "core" not in f or not _item(f["core"]):
            continue
        seen = True
        tend = _item(f.get("tend", ""))
        tend = _TENDENCY.get(tend, tend)
        ev = (_item(f["core"]), tend, frozenset(_split_items(f.get("char", ""))), frozenset(_split_items(f.get("anat", ""))))
        if ev not in events:
            events.append(ev)
    return events, seen or _says_none(text)


def parse_cdn(text: str, example: dict | None = None) -> tuple[list, bool]:
    """CHIP-CDN: standard terms separated by ``##`` (or ，、; / new lines) -> ``[terms]``, kept to ``candidates`` if given."""
    example = example or {}
    body = "\n".join(re.sub(r"^[^：:]{0,12}(?:标准词|标准化|结果|答案)[^：:]{0,6}" + _COLON, "", line) for line in _lines(text))
    terms = []
    for piece in re.split(r"##|\n|[，,、;；/]", body):
        t = _item(piece)
        if t and re.search(r"\w", t) and t not in _NONE_WORDS and t not in terms:
            terms.append(t)
    cands = example.get("candidates")
    if cands:
        cset = set(cands)
        terms = [t for t in terms if t in cset]
    return terms, bool(terms) or _says_none(text)


# --------------------------------------------------------------------------- labels


def _pick_label(text: str, options: dict) -> str | None:
    """The label whose surface form matches the reply exactly, else the one mentioned first (longest on ties)."""
    t = _item(re.sub(r"^(?:答案|回答|答|结果|标签|类别|label|Label)\s*" + _COLON, "", _item(clean(text))))
    if t in options:
        return options[t]
    low = {k.lower(): v for k, v in options.items()}
    if t.lower() in low:
        return low[t.lower()]
    body = clean(text)
    best = None
    for form, label in options.items():
        i = body.find(form)
        if i < 0 and form.isascii():
            i = body.lower().find(form.lower())
        if i >= 0 and (best is None or (i, -len(form)) < (best[0], -len(best[1]))):
            best = (i, form, label)
    return best[2] if best else None


def _label_parser(options: dict) -> Callable:
    def parse(text: str, example: dict | None = None):
        label = _pick_label(text, options)
        return label, label is not None

    return parse


_CTC_OPTIONS = {**{l: l for l in CTC_LABELS}, **CTC_ZH_TO_EN, "症状": "Symptom", "体征": "Sign", "多个类别": "Multiple"}
_QIC_OPTIONS = {**{l: l for l in QIC_LABELS}, "疾病描述": "疾病表述", "非上述类型": "其他"}
_STS_OPTIONS = {"1": "1", "0": "0", "不是": "0", "不相同": "0", "不同": "0", "不相似": "0", "否": "0",
                "是的": "1", "是": "1", "相同": "1", "相似": "1"}
_QTR_OPTIONS = {"0": "0", "1": "1", "2": "2", "3": "3", "完全不匹配": "0", "没有参考价值": "0", "很少匹配": "1",
                "有一些参考价值": "1", "部分匹配": "2", "完全匹配": "3"}
_QQR_OPTIONS = {"0": "0", "1": "1", "2": "2", "完全一致": "2", "语义子集": "1", "子集": "1", "语义父集": "0", "父集": "0",
                "语义无直接关联": "0", "无直接关联": "0", "无关": "0"}
_DAC_OPTIONS = {**{l: l for l in DAC_LABELS}, **DAC_ZH_TO_EN}

parse_ctc = _label_parser(_CTC_OPTIONS)
parse_qic = _label_parser(_QIC_OPTIONS)
parse_sts = _label_parser(_STS_OPTIONS)
parse_qtr = _label_parser(_QTR_OPTIONS)
parse_qqr = _label_parser(_QQR_OPTIONS)
parse_dac = _label_parser(_DAC_OPTIONS)


def parse_ir(text: str, example: dict | None = None) -> tuple[list, bool]:
    """KUAKE-IR: doc ids in ranked order (separated by commas, spaces or lines)."""
    ids = []
    for x in re.split(r"[\s,，、;；]+", clean(text)):
        x = _item(x)
        if x and re.search(r"\w", x) and x not in ids:
            ids.append(x)
    return ids, bool(ids)


# --------------------------------------------------------------------------- dialogue tasks


def _finding_pairs(text: str) -> list[tuple[str, str]]:
    out = []
    for line in _lines(text):
        m = re.match(r"^(.+?)\s*" + _COLON + r"\s*(.+)$", line)
        if m:
            out.append((_item(m.group(1)), _item(m.group(2))))
    return out


def parse_mdcfnpc(text: str, example: dict) -> tuple[dict, bool]:
    """CHIP-MDCFNPC: ``mention：阳性`` lines -> ``{unit_key: attr}`` for the example's ``findings`` ``[(key, mention)]``.

    Findings take the lines of their mention in order (the second 发热 of a dialogue the second
    ``发热：`` line); a mention with fewer lines than findings reuses its last line.
    """
    by_mention: dict[str, list[str]] = {}
    for mention, value in _finding_pairs(text):
        value = next((a for a in MDCFNPC_ATTRS if a in value), None)
        if value:
            by_mention.setdefault(mention, []).append(value)
    out, used = {}, {}
    for key, mention in example.get("findings", []):
        values = by_mention.get(mention)
        if values:
            k = used.get(mention, 0)
            out[key] = values[min(k, len(values) - 1)]
            used[mention] = k + 1
    return out, bool(out)


def parse_sr(text: str, example: dict | None = None) -> tuple[dict, bool]:
    """IMCS-V2-SR: ``症状：阳性|阴性|不确定`` (or 1/0/2) lines -> ``{symptom: "1"|"0"|"2"}``."""
    out = {}
    for sym, value in _finding_pairs(text):
        v = SR_WORDS.get(value)
        if v is None:
            v = next((SR_WORDS[w] for w in sorted(SR_WORDS, key=len, reverse=True) if w in value), None)
        if v is not None and sym and sym not in out:
            out[sym] = v
    return out, bool(out) or _says_none(text)


def parse_mrg(text: str, example: dict | None = None) -> tuple[dict, bool]:
    """IMCS-V2-MRG: ``主诉：...`` lines -> the six-section report (absent sections empty)."""
    report = {k: "" for k in MRG_SECTIONS}
    found = False
    pat = re.compile(r"^[【\[]?(" + "|".join(MRG_SECTIONS) + r")[】\]]?\s*" + _COLON + r"?\s*(.*)$")
    current = None
    for line in _lines(text):
        m = pat.match(line)
        if m:
            current = m.group(1)
            report[current] = m.group(2).strip()
            found = True
        elif current is not None:
            report[current] += line.strip()
    return report, found


def parse_meddg(text: str, example: dict | None = None) -> tuple[str, bool]:
    """MedDG: the reply itself (a leading ``医生：`` and surrounding quotes removed)."""
    t = clean(text)
    t = re.sub(r"^(?:医生|Doctor|doctor)\s*" + _COLON + r"\s*", "", t).strip().strip("“”\"'")
    return t, bool(t)


def _json_array(text: str):
    t = clean(text)
    start, end = t.find("["), t.rfind("]")
    if start < 0 or end <= start:
        return None
    chunk = t[start : end + 1]
    for loader in (json.loads, ast.literal_eval):
        try:
            return loader(chunk)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return None


def parse_text2dt(text: str, example: dict | None = None) -> tuple[list, bool]:
    """Text2DT: a JSON array of nodes (or PromptCBLUE ``role=C；logical_rel=and；triples=[...]`` lines) -> tree."""
    data = _json_array(text)
    nodes = []
    if isinstance(data, list) and all(isinstance(n, dict) for n in data):
        for n in data:
            triples = [[str(x) for x in t] for t in n.get("triples") or [] if isinstance(t, (list, tuple)) and len(t) == 3]
            nodes.append({"role": str(n.get("role", "")).strip().upper(), "triples": triples,
                          "logical_rel": str(n.get("logical_rel", "null")).strip().lower() or "null"})
    else:
        for line in _lines(text):
            m = re.search(r"role\s*=\s*([CDcd])", line)
            if not m:
                continue
            rel = re.search(r"logical_rel\s*=\s*(and|or|null)", line)
            tri = re.search(r"triples\s*=\s*(\[.*\])", line)
            triples = []
            if tri:
                try:
                    val = ast.literal_eval(tri.group(1))
                    triples = [[str(x) for x in t] for t in val if isinstance(t, (list, tuple)) and len(t) == 3]
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    triples = []
            nodes.append({"role": m.group(1).upper(), "triples": triples, "logical_rel": rel.group(1) if rel else "null"})
    return nodes, bool(nodes)


# --------------------------------------------------------------------------- registry

PARSERS: dict[str, Callable] = {
    "CMeEE-V2": parse_cmeee, "CMeIE": parse_cmeie, "CMedCausal": parse_causal, "CHIP-CDEE": parse_cdee,
    "CHIP-CDN": parse_cdn, "CHIP-CTC": parse_ctc, "KUAKE-QIC": parse_qic, "CHIP-STS": parse_sts,
    "KUAKE-QTR": parse_qtr, "KUAKE-QQR": parse_qqr, "KUAKE-IR": parse_ir, "CHIP-MDCFNPC": parse_mdcfnpc,
    "IMCS-V2-NER": parse_imcs_ner, "IMCS-V2-DAC": parse_dac, "IMCS-V2-SR": parse_sr, "IMCS-V2-MRG": parse_mrg,
    "MedDG": parse_meddg, "Text2DT": parse_text2dt,
}  # fmt: skip


def parse(task: str, text, example: dict | None = None):
    """``(prediction, parse_ok)`` for a reply to ``task``; never raises on odd text."""
    if task not in PARSERS:
        raise KeyError(f"no parser for task {task!r}; known: {', '.join(PARSERS)}")
    return PARSERS[task](text if isinstance(text, str) else ("" if text is None else str(text)), example or {})


