"""Model loading: ``base_model: tiny`` builds a seeded tiny Qwen2; a path loads any HF causal LM.

Attention is ``flash_attention_2`` when CUDA and flash-attn are present, else ``sdpa``; weights
are bf16 on GPU and float32 on CPU unless the config says otherwise.  Every check that can fail
(missing directory, tokenizer larger than the embedding table) runs before any weights load.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from medgo.config import ModelConfig, TinyModelSpec
from medgo.model.tokenizer import EMBEDDED_NAMES, IM_END, load_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(ValueError):
    """A model or tokenizer that cannot be used, named with the reason."""


def is_tiny(cfg: ModelConfig) -> bool:
    return cfg.base_model in EMBEDDED_NAMES


def resolve_attn_implementation(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def resolve_dtype(requested: str = "auto") -> torch.dtype:
    if requested != "auto":
        return DTYPES[requested]
    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def tiny_config(spec: TinyModelSpec, tokenizer: PreTrainedTokenizerBase) -> Qwen2Config:
    """Qwen2 architecture at toy size; vocabulary rounded up to a multiple of 64."""
    vocab = -(-len(tokenizer) // 64) * 64
    return Qwen2Config(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=[tokenizer.convert_tokens_to_ids(tokenizer.eos_token), tokenizer.convert_tokens_to_ids(IM_END)],
        pad_token_id=tokenizer.pad_token_id,
    )


def resolve_tokenizer_path(cfg: ModelConfig) -> str | None:
    if cfg.tokenizer:
        return cfg.tokenizer
    return None if is_tiny(cfg) else cfg.base_model


def check_model_dir(path: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise ModelLoadError(f"model directory not found: {path} (base_model must be 'tiny' or a local Hugging Face model directory)")
    if not (p / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a Hugging Face model directory: config.json is missing")
    return p


def check_vocab(model_config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase, where: str) -> None:
    vocab = getattr(model_config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise ModelLoadError(
            f"tokenizer has {len(tokenizer)} tokens but the model {where} embeds only {vocab}: "
            "the tokenizer does not belong to this model"
        )


def model_config_for(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """The architecture config the model will have, validated against the tokenizer (no weights)."""
    if is_tiny(cfg):
        return tiny_config(cfg.tiny, tokenizer)
    config = AutoConfig.from_pretrained(check_model_dir(cfg.base_model))
    check_vocab(config, tokenizer, cfg.base_model)
    return config


def load_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase, device: str | torch.device | None = None) -> PreTrainedModel:
    """Build or load the causal LM described by ``cfg`` (plus its LoRA adapter, if any)."""
    config = model_config_for(cfg, tokenizer)
    dtype = resolve_dtype(cfg.dtype)
    attn = resolve_attn_implementation(cfg.attn_implementation)
    if cfg.adapter and not Path(cfg.adapter, "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter directory not found or not a PEFT adapter: {cfg.adapter}")
    if is_tiny(cfg):
        torch.manual_seed(cfg.tiny.seed)
        config._attn_implementation = attn
        model = Qwen2ForCausalLM(config).to(dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(cfg.base_model, dtype=dtype, attn_implementation=attn)
    if cfg.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, cfg.adapter)
    if device is not None:
        model.to(device)
    return model


def load_model_and_tokenizer(cfg: ModelConfig, device: str | torch.device | None = None):
    """Tokenizer first (it is checked against the model config), then the model."""
    tokenizer = load_tokenizer(resolve_tokenizer_path(cfg))
    return load_model(cfg, tokenizer, device), tokenizer
