"""The base model a TRL stage trains on, written where every worker (and later ``peft``) can load it; driver side.

    base = materialise_base(cfg.model, run_dir)     # tiny -> <run dir>/base, adapter -> merged into it
    merge_adapter(base.base_model, run_dir / "adapter", run_dir / "merged")
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from medgo.config import ModelConfig


def materialise_base(model_cfg: ModelConfig, run_dir: str | Path) -> ModelConfig:
    """A model config every worker (and later ``peft``) can load by path; driver side.

    * ``base_model: tiny`` -> the seeded tiny model and its tokenizer saved to ``<run dir>/base``
      (so the adapter's ``base_model_name_or_path`` names a real directory);
    * ``adapter`` set -> base + adapter merged into ``<run dir>/base`` (the new LoRA trains on top;
      for a 72B base this needs the driver to hold the model in CPU memory once);
    * otherwise the base directory itself, made absolute.
    """
    from medgo.model.loading import check_model_dir, is_tiny, load_model_and_tokenizer

    if not is_tiny(model_cfg) and not model_cfg.adapter:
        base = str(check_model_dir(model_cfg.base_model).resolve())
        tokenizer = str(Path(model_cfg.tokenizer).resolve()) if model_cfg.tokenizer else None
        return model_cfg.model_copy(update={"base_model": base, "tokenizer": tokenizer})
    out = Path(run_dir) / "base"
    model, tokenizer = load_model_and_tokenizer(model_cfg.model_copy(update={"attn_implementation": "sdpa"}))  # the driver may have no GPU
    if model_cfg.adapter:
        model = model.merge_and_unload()
    write_model_dir(model, tokenizer, out)
    return model_cfg.model_copy(update={"base_model": str(out), "tokenizer": None, "adapter": None})


def write_model_dir(model, tokenizer, out: str | Path) -> Path:
    """``save_pretrained`` of model and tokenizer into ``out``, replaced atomically."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Plain Hugging Face model directory with the adapter merged in (``export.merged``); driver side."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    return write_model_dir(merged, AutoTokenizer.from_pretrained(str(adapter_dir)), out_dir)
