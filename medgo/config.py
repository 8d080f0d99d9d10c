"""Typed stage configs: pydantic models, YAML loading and ``--set a.b=value`` overrides.

Every stage owns one config class (a subclass of :class:`StageConfig`) and ships YAML files
under ``jobs/configs/<stage>/``.  Loading validates everything before any worker starts;
an unknown or mistyped key is a :class:`ConfigError` that names the key and the file::

    cfg = load_config(PretrainConfig, "jobs/configs/pretrain/tiny.yaml", ["train.learning_rate=1e-3"])

A key a stage has renamed (its ``renamed`` table) is refused with the new name, never read as an alias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_ROOT = REPO_ROOT / "jobs" / "configs"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


class Section(BaseModel):
    """Base for every config section: unknown keys are rejected, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True, protected_namespaces=())


class TinyModelSpec(Section):
    """Shape of the embedded tiny Qwen2 model (used when ``base_model: tiny``)."""

    hidden_size: int = Field(64, gt=0)
    intermediate_size: int = Field(176, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    num_attention_heads: int = Field(4, gt=0)
    num_key_value_heads: int = Field(2, gt=0)
    max_position_embeddings: int = Field(1024, gt=0)
    seed: int = 0


class ModelConfig(Section):
    """Which model and tokenizer a stage uses."""

    base_model: str = "tiny"
    """``tiny`` for the embedded default, or a local Hugging Face model directory."""
    tokenizer: str | None = None
    """Tokenizer directory; default: the model directory, or the embedded BPE for ``tiny``."""
    adapter: str | None = None
    """Optional PEFT (LoRA) adapter directory applied on top of the base model."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """``auto``: bf16 on CUDA, float32 on CPU."""
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = "auto"
    """``auto``: flash_attention_2 when CUDA and flash-attn are present, else sdpa."""
    tiny: TinyModelSpec = TinyModelSpec()


class RayConfig(Section):
    """Where and how wide a Ray stage runs."""

    address: str | None = None
    """Ray cluster address; default: ``RAY_ADDRESS`` if set, else a local instance."""
    num_workers: int = Field(1, gt=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(0, ge=0)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How training workers are placed on nodes (Ray's placement-group strategies); ``STRICT_SPREAD``: one per node."""
    storage_path: str = "runs"
    """Local directory or a pyarrow-supported URI (s3://, gs://, hdfs://) for results and checkpoints."""


class StageConfig(Section):
    """Base for a stage's top-level config."""

    stage: ClassVar[str] = "stage"
    """The stage's name: the folder of its run directories."""
    renamed: ClassVar[dict[str, str]] = {}
    """Old key -> its new name(s); an old key is an error that names the new one."""

    run_name: str = "default"
    output_dir: str = "runs"
    """Parent of the run directory ``<output_dir>/<stage>/<run_name>``."""

    def run_dir(self) -> Path:
        """``<output_dir>/<stage>/<run_name>``, absolute (not created)."""
        return Path(self.output_dir).expanduser().resolve() / self.stage / self.run_name


C = TypeVar("C", bound=StageConfig)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into its key path and a YAML-typed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return ``data`` with each ``a.b=value`` override set (sections are created as needed)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):  # ``models.0.name=x`` indexes a list
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {text!r}: {'.'.join(path[: i + 1])} is not an item of the list")
                part = int(part)
            elif not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(path[:i])} is not a section")
            if last:
                node[part] = value
            else:
                if isinstance(node, dict) and part not in node:
                    node[part] = {}
                node = node[part]
    return data


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        else:
            lines.append(f"key '{key}': {e['msg']} (got {e.get('input')!r})")
    return f"invalid config {source}: " + "; ".join(lines)


def _keys(data, prefix: str = "") -> list[str]:
    """Every dotted key path of a nested dict (a section and each key inside it)."""
    if not isinstance(data, dict):
        return []
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        out += [path, *_keys(value, path + ".")]
    return out


def check_renamed(cls: type, data: dict | None, source: str) -> None:
    """ConfigError naming each renamed key found in ``data`` and what it is called now."""
    table = getattr(cls, "renamed", {})
    old = [k for k in _keys(data or {}) if k in table]
    if old:
        raise ConfigError(f"invalid config {source}: " + "; ".join(f"key '{k}' is now '{table[k]}'" for k in old))


def build_config(cls: type[C], data: dict | None, source: str = "<dict>") -> C:
    """Validate a plain dict into ``cls``; errors name every bad key."""
    check_renamed(cls, data, source)
    try:
        return cls.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_config(cls: type[C], path: str | Path | None, overrides: list[str] | None = None) -> C:
    """Load YAML ``path`` (or the defaults when ``None``), apply overrides, validate into ``cls``."""
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded or {}
    return build_config(cls, apply_overrides(data, overrides or []), source)


def save_config(cfg: StageConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (kept in every run directory)."""
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False), encoding="utf-8")
