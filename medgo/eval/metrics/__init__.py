"""Official CBLUE scorers, their file readers and the generation parsers — a pure library (no model, no Ray).

    from medgo.eval.metrics import TASKS, score_task, score_promptcblue
    score_task("CMeEE-V2", "CMeEE-V2_dev.json", "CMeEE-V2_test.json")["score"]     # 0–100
    score_task("CMeIE", gold_jsonl, pred_jsonl, metric_set="promptcblue")           # PromptCBLUE files
    score_promptcblue("dev.json", "dev_predictions.json")["tasks"]["CHIP-CTC"]

Two metric sets:

* ``native`` — each task's own definition (CBLUE, the IMCS-V2, MedDG and Text2DT authors), on the
  task's native gold file and official submission layout;
* ``promptcblue`` — the PromptCBLUE evaluator, on its JSONL format (:mod:`.promptcblue`).

Every task has a :class:`TaskSpec` in :data:`TASKS` with its readers and a pure scorer
``spec.score(gold, pred, **spec.read_resources(gold_path))`` taking the structures the readers
return, so a harness that parses generations itself (:mod:`.parsers`) can score
``{key: parsed}`` directly.  Results always hold ``score`` (0–100), ``metric``, the sub-metrics
and the counts ``n_gold``, ``n_pred``, ``n_missing`` and ``out_of_label_set``.  See
``docs/metrics.md`` for every definition and its source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medgo.data import cblue_gold as g
from medgo.eval.metrics import classification as cls
from medgo.eval.metrics import extraction as ext
from medgo.eval.metrics import imcs, meddg, text2dt
from medgo.eval.metrics.parsers import PARSERS, parse
from medgo.eval.metrics.promptcblue import score_promptcblue, score_promptcblue_rows

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "cblue"
"""Folder of the shipped sample files, one sub-folder per task (``TaskSpec.asset_dir``)."""


def _no_resources(gold_path) -> dict:
    return {}


@dataclass(frozen=True)
class TaskSpec:
    """One CBLUE task: what it is, how its files are read and how it is scored."""

    name: str
    description: str
    """The task in Chinese, as the paper's Table 1 names it."""
    metric: str
    """The headline metric (the ``score`` of the scorer's result)."""
    read_gold: Callable
    """Native gold file (the dev file) -> ``{unit_key: gold}``."""
    read_pred: Callable
    """Official submission layout -> ``{unit_key: prediction}``."""
    score: Callable
    """Pure scorer ``score(gold, pred, **resources) -> dict``."""
    asset_dir: str
    gold_file: str
    """The gold (dev) file name inside ``asset_dir``."""
    submission_file: str
    """The official name of a test-set submission."""
    labels: tuple[str, ...] | None = None
    """The label set where the task has one (types, predicates, classes, tags)."""
    read_resources: Callable = _no_resources
    """Gold path -> extra scorer arguments read from files beside it (vocabularies)."""
    promptcblue_name: str | None = None
    """The task's ``task_dataset`` in PromptCBLUE files (None: not a PromptCBLUE task)."""
    aliases: tuple[str, ...] = field(default=())

    @property
    def gold_path(self) -> Path:
        """The shipped sample gold file."""
        return ASSETS / self.asset_dir / self.gold_file


_SPECS = [
    TaskSpec("CMeEE-V2", "中文医学命名实体识别", "Micro-F1", g.read_cmeee_gold, ext.read_cmeee_pred, ext.score_cmeee,
             "CMeEE-V2", "CMeEE-V2_dev.json", "CMeEE-V2_test.json", g.CMEEE_TYPES, promptcblue_name="CMeEE-V2", aliases=("CMeEE",)),
    TaskSpec("CMeIE", "中文医学文本实体关系抽取", "Micro-F1", g.read_cmeie_gold, ext.read_cmeie_pred, ext.score_cmeie,
             "CMeIE", "CMeIE_dev.jsonl", "CMeIE_test.jsonl", g.CMEIE_PREDICATES, promptcblue_name="CMeIE-V2", aliases=("CMeIE-V2",)),
    TaskSpec("CMedCausal", "医学因果关系抽取", "Macro-F1", g.read_causal_gold, ext.read_causal_pred, ext.score_causal,
             "CMedCausal", "CMedCausal_dev.json", "CMedCausal_test.json", ("1", "2", "3"), promptcblue_name="CMedCausal"),
    TaskSpec("CHIP-CDEE", "临床发现事件抽取", "Micro-F1", g.read_cdee_gold, ext.read_cdee_pred, ext.score_cdee,
             "CHIP-CDEE", "CHIP-CDEE_dev.json", "CHIP-CDEE_test.json", g.CDEE_TENDENCIES, promptcblue_name="CHIP-CDEE"),
    TaskSpec("CHIP-CDN", "临床术语标准化", "Micro-F1", g.read_cdn_gold, ext.read_cdn_pred, ext.score_cdn,
             "CHIP-CDN", "CHIP-CDN_dev.json", "CHIP-CDN_test.json", read_resources=ext.read_cdn_vocab, promptcblue_name="CHIP-CDN"),
    TaskSpec("CHIP-CTC", "临床试验筛选标准短文本分类", "Macro-F1", g.read_labels, cls.read_label_preds, cls.score_ctc,
             "CHIP-CTC", "CHIP-CTC_dev.json", "CHIP-CTC_test.json", g.CTC_LABELS, promptcblue_name="CHIP-CTC"),
    TaskSpec("KUAKE-QIC", "医疗搜索检索词意图分类", "Accuracy", g.read_labels, cls.read_label_preds, cls.score_qic,
             "KUAKE-QIC", "KUAKE-QIC_dev.json", "KUAKE-QIC_test.json", g.QIC_LABELS, promptcblue_name="KUAKE-QIC"),
    TaskSpec("CHIP-STS", "医学句子语义相似度", "Macro-F1", g.read_labels, cls.read_label_preds, cls.score_sts,
             "CHIP-STS", "CHIP-STS_dev.json", "CHIP-STS_test.json", g.STS_LABELS, promptcblue_name="CHIP-STS"),
    TaskSpec("KUAKE-QTR", "医疗搜索查询词-页面标题相关性", "Accuracy", g.read_labels, cls.read_label_preds, cls.score_qtr,
             "KUAKE-QTR", "KUAKE-QTR_dev.json", "KUAKE-QTR_test.json", g.QTR_LABELS, promptcblue_name="KUAKE-QTR"),
    TaskSpec("KUAKE-QQR", "医疗搜索查询词-查询词相关性", "Accuracy", g.read_labels, cls.read_label_preds, cls.score_qqr,
             "KUAKE-QQR", "KUAKE-QQR_dev.json", "KUAKE-QQR_test.json", g.QQR_LABELS, promptcblue_name="KUAKE-QQR"),
    TaskSpec("KUAKE-IR", "医疗搜索段落检索", "MRR@10", cls.read_ir_gold, cls.read_ir_pred, cls.score_ir,
             "KUAKE-IR", "dev.tsv", "KUAKE-IR_test.tsv", promptcblue_name="KUAKE-IR"),
    TaskSpec("CHIP-MDCFNPC", "医疗对话临床发现阴阳性判别", "Micro-F1", g.read_mdcfnpc_gold, ext.read_mdcfnpc_pred, ext.score_mdcfnpc,
             "CHIP-MDCFNPC", "CHIP-MDCFNPC_dev.jsonl", "CHIP-MDCFNPC_test.jsonl", g.MDCFNPC_ATTRS, promptcblue_name="CHIP-MDCFNPC"),
    TaskSpec("IMCS-V2-NER", "医疗对话命名实体识别", "Entity-F1", g.read_ner_gold, imcs.read_ner_pred, imcs.score_ner,
             "IMCS-V2", "IMCS-V2_dev.json", "IMCS-V2-NER_test.json", g.NER_TAGS, promptcblue_name="IMCS-V2-NER"),
    TaskSpec("IMCS-V2-DAC", "医疗对话意图识别", "Accuracy", g.read_dac_gold, imcs.read_dac_pred, imcs.score_dac,
             "IMCS-V2", "IMCS-V2_dev.json", "IMCS-V2-DAC_test.json", g.DAC_LABELS, promptcblue_name="IMCS-V2-DAC"),
    TaskSpec("IMCS-V2-SR", "医疗对话症状识别", "Micro-F1", g.read_sr_gold, imcs.read_sr_pred, imcs.score_sr,
             "IMCS-V2", "IMCS-V2_dev.json", "IMCS-V2-SR_test.json", g.SR_LABELS, read_resources=imcs.read_sr_vocab,
             promptcblue_name="IMCS-V2-SR"),
    TaskSpec("IMCS-V2-MRG", "医疗报告生成", "ROUGE", g.read_mrg_gold, imcs.read_mrg_pred, imcs.score_mrg,
             "IMCS-V2", "IMCS-V2_dev.json", "IMCS-V2-MRG_test.json", g.MRG_SECTIONS, promptcblue_name="IMCS-V2-MRG"),
    TaskSpec("MedDG", "医疗对话生成", "Entity-F1", g.read_meddg_gold, meddg.read_meddg_pred, meddg.score_meddg,
             "MedDG", "MedDG_dev.json", "MedDG_test.json", read_resources=meddg.read_meddg_vocab, promptcblue_name="MedDG"),
    TaskSpec("Text2DT", "诊疗决策树抽取", "Decision-path F1", g.read_text2dt_gold, text2dt.read_text2dt_pred,
             text2dt.score_text2dt, "Text2DT", "Text2DT_dev.json", "Text2DT_test.json", g.TEXT2DT_RELATIONS, promptcblue_name="Text2DT"),
]  # fmt: skip

TASKS: dict[str, TaskSpec] = {s.name: s for s in _SPECS}
"""The 18 CBLUE tasks by name, in the order of the paper's Table 1."""
METRIC_SETS = ("native", "promptcblue")


def get_task(task: str) -> TaskSpec:
    """The spec of ``task`` (its CBLUE name or an alias such as ``CMeEE`` or ``CMeIE-V2``)."""
    if task in TASKS:
        return TASKS[task]
    for spec in _SPECS:
        if task in spec.aliases or task == spec.promptcblue_name:
            return spec
    raise KeyError(f"unknown task {task!r}; known: {', '.join(TASKS)}")


def score_task(task: str, gold_path, pred_path, metric_set: str = "native", lenient: bool = False) -> dict:
    """Score a prediction file against a gold file; ``score`` is 0–100.

    ``native``: the task's gold (dev) file and a prediction in the official submission layout.
    ``promptcblue``: PromptCBLUE JSONL files; only the records of this task are scored (``lenient``
    as in :func:`score_promptcblue`).
    """
    spec = get_task(task)
    if metric_set == "native":
        gold = spec.read_gold(gold_path)
        pred = spec.read_pred(pred_path)
        res = spec.score(gold, pred, **spec.read_resources(gold_path))
    elif metric_set == "promptcblue":
        if spec.promptcblue_name is None:
            raise KeyError(f"{spec.name} is not a PromptCBLUE task")
        from medgo.eval.metrics.promptcblue import _rows, score_task_rows, task_name

        gold_rows = [r for r in _rows(gold_path) if task_name(r.get("task_dataset")) == spec.promptcblue_name]
        preds: dict = {}
        for r in _rows(pred_path):
            preds.setdefault(str(r.get("sample_id")), r)
        res = {**score_task_rows(spec.promptcblue_name, gold_rows, preds, lenient), "mode": "lenient" if lenient else "official"}
    else:
        raise ValueError(f"unknown metric_set {metric_set!r}; known: {', '.join(METRIC_SETS)}")
    return {"task": spec.name, "metric_set": metric_set, **res}


__all__ = [
    "ASSETS", "METRIC_SETS", "PARSERS", "TASKS", "TaskSpec", "get_task", "parse", "score_promptcblue",
    "score_promptcblue_rows", "score_task",
]  # fmt: skip
