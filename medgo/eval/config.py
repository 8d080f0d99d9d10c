"""The evaluation stage's config: which models, which tasks, where the data lives, how to generate.

    medgo eval run --config jobs/configs/eval/tiny.yaml --set cblue.max_samples=5

Every field is checked when the YAML loads (task names, unique model names, file kinds); the
files themselves are checked by ``medgo.eval.run.run`` before Ray or any model starts, so a
config written for a cluster's paths still loads (and is tested) anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from medgo.config import ModelConfig, RayConfig, Section, StageConfig

CBLUE_TASKS = (
    "CMeEE-V2", "CMeIE", "CMedCausal", "CHIP-CDEE", "CHIP-CDN", "CHIP-CTC", "KUAKE-QIC", "CHIP-STS",
    "KUAKE-QTR", "KUAKE-QQR", "KUAKE-IR", "CHIP-MDCFNPC", "IMCS-V2-NER", "IMCS-V2-DAC", "IMCS-V2-SR",
    "IMCS-V2-MRG", "MedDG", "Text2DT",
)  # fmt: skip
"""The 18 CBLUE 3.0 tasks, in the order of the paper's Table 1."""


def _check_task_names(names, key: str) -> None:
    unknown = [t for t in names if t not in CBLUE_TASKS]
    if unknown:
        raise ValueError(f"{key}: unknown task(s) {', '.join(unknown)}; known: {', '.join(CBLUE_TASKS)}")


class EvalModel(Section):
    """One evaluated model: a column of the report."""

    name: str = Field("tiny", min_length=1, pattern=r"^[\w.+-]+$")
    """Column name in the report and folder name under ``predictions/`` (letters, digits, ``._+-``)."""
    model: ModelConfig = ModelConfig()


class GenerationConfig(Section):
    """How replies are generated (shared by every task and model)."""

    batch_size: int = Field(16, gt=0)
    """Prompts per ``generate`` call on one replica."""
    max_new_tokens: int = Field(128, gt=0)
    """Default reply budget; ``max_new_tokens_per_task`` overrides it per task."""
    max_new_tokens_per_task: dict[str, int] = {}
    """e.g. ``{CHIP-CTC: 16, IMCS-V2-MRG: 512}``."""
    max_prompt_tokens: int | None = Field(None, gt=0)
    """Longer prompts lose their middle (head and tail kept); default: what the model's context allows."""
    temperature: float = Field(0.0, ge=0)
    """0 means greedy decoding (the default for evaluation)."""
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0

    @field_validator("max_new_tokens_per_task")
    @classmethod
    def _known_tasks(cls, value: dict[str, int]) -> dict[str, int]:
        _check_task_names(value, "max_new_tokens_per_task")
        if any(v <= 0 for v in value.values()):
            raise ValueError("every max_new_tokens_per_task value must be > 0")
        return value


class CBLUEConfig(Section):
    """The CBLUE tasks, read from their official native files."""

    tasks: list[str] = list(CBLUE_TASKS)
    """Task names (see ``CBLUE_TASKS``); ``[]`` skips CBLUE."""
    data_dir: str | None = None
    """Folder holding ``<TASK>/<TASK>_<split>.json`` etc. (``medgo://`` for an embedded one); default: the embedded samples."""
    split: Literal["dev", "train", "test"] = "dev"
    """Labelled split used as the gold (CBLUE's test labels are not public)."""
    metric_set: Literal["native", "promptcblue"] = "native"
    """``native``: native files, this project's prompts, the CBLUE task definitions; ``promptcblue``:
    the PromptCBLUE file's prompts, scored exactly as the PromptCBLUE evaluator scores them."""
    max_samples: int | None = Field(None, gt=0)
    """Score only the first N examples of each task (per level for IMCS-V2-SR; quick runs)."""
    cdn_candidates: int = Field(10, ge=0)
    """CHIP-CDN: show the N ICD-10 terms closest by BM25 (``icd10_vocab.tsv``) in the prompt; 0: none."""
    promptcblue_file: str | None = None
    """``metric_set: promptcblue``: the PromptCBLUE JSONL (with ``target``; ``medgo://`` for an embedded one); default: the embedded sample."""

    @field_validator("tasks")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        _check_task_names(value, "cblue.tasks")
        if len(set(value)) != len(value):
            raise ValueError("cblue.tasks lists a task twice")
        return value


class RetrievalConfig(Section):
    """KUAKE-IR: BM25 top-k retrieval (``rank_bm25``), optionally reranked by the model."""

    top_k: int = Field(10, gt=0)
    """Passages returned per query (MRR@10 reads the first 10)."""
    tokens: Literal["char_bigram", "model"] = "char_bigram"
    """``char_bigram``: characters plus character bigrams; ``model``: the model tokenizer's BPE pieces."""
    k1: float = Field(1.2, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    rerank: bool = False
    """Rerank the BM25 candidates by the model's query likelihood log P(query | passage)."""
    rerank_depth: int = Field(30, gt=0)
    """BM25 candidates the model reranks (at least ``top_k``)."""
    rerank_weight: float = Field(1.0, ge=0, le=1)
    """Final score = weight x model z-score + (1 - weight) x BM25 z-score (per query)."""


class ClinicalQAConfig(Section):
    """Four-option clinical multiple choice: strict letter extraction, option log-likelihood, shuffling."""

    enabled: bool = True
    files: list[str] = []
    """JSONL ``{question, options{A..D}, answer}`` or CMMLU-style CSV files; default: the embedded samples."""
    max_new_tokens: int = Field(16, gt=0)
    loglik: Literal["letter", "option", "off"] = "letter"
    """Score log P(letter) after the prompt, or per-token log P(``"X. option text"``), or skip."""
    shuffle_seed: int | None = 0
    """Seed of the option shuffle for the consistency rate; ``null`` skips the shuffled pass."""
    max_samples: int | None = Field(None, gt=0)

    @field_validator("files")
    @classmethod
    def _suffix(cls, value: list[str]) -> list[str]:
        bad = [f for f in value if Path(f).suffix not in {".jsonl", ".csv"}]
        if bad:
            raise ValueError(f"ClinicalQA files must be .jsonl or .csv: {', '.join(bad)}")
        return value


class EvalConfig(StageConfig):
    """``medgo eval run``: score one or more models; the run directory is ``<output_dir>/eval/<run_name>``."""

    stage: ClassVar[str] = "eval"

    models: list[EvalModel] = [EvalModel()]
    """One report column per model (e.g. a base model and its LoRA-tuned version)."""
    cblue: CBLUEConfig = CBLUEConfig()
    clinicalqa: ClinicalQAConfig = ClinicalQAConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    generation: GenerationConfig = GenerationConfig()
    ray: RayConfig = RayConfig()
    """``num_workers`` model replicas, each with ``cpus_per_worker`` / ``gpus_per_worker``."""
    chart: bool = True
    """Write ``scores.png`` (bar chart of every score, one bar per model)."""

    @model_validator(mode="after")
    def _unique_models(self) -> EvalConfig:
        names = [m.name for m in self.models]
        if not names:
            raise ValueError("models must list at least one model")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        return self

