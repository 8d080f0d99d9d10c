"""Generate a reply to one chat prompt with any model the config names.

    medgo generate --config jobs/configs/generate/tiny.yaml --set prompt="高血压患者可以喝咖啡吗？"
"""

from __future__ import annotations

import torch
from pydantic import Field

from medgo import console
from medgo.config import ModelConfig, StageConfig
from medgo.model.loading import load_model_and_tokenizer


class GenerateConfig(StageConfig):
    """One chat turn: model, prompt and sampling settings."""

    model: ModelConfig = ModelConfig()
    prompt: str = Field("医生您好，我最近经常头痛，量血压160/100 mmHg，需要吃降压药吗？", min_length=1)
    system: str | None = None
    """System message; default: the tokenizer's chat template default."""
    max_new_tokens: int = Field(64, gt=0)
    temperature: float = Field(0.7, ge=0)
    """0 means greedy decoding."""
    top_p: float = Field(0.9, gt=0, le=1)
    seed: int = 0


def chat_reply(model, tokenizer, messages: list[dict], max_new_tokens: int = 64, temperature: float = 0.7, top_p: float = 0.9, seed: int = 0) -> str:
    """Apply the chat template, sample a continuation and decode it without special tokens."""
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    torch.manual_seed(seed)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def run(cfg: GenerateConfig) -> str:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model_and_tokenizer(cfg.model, device)
    model.eval()
    messages = ([{"role": "system", "content": cfg.system}] if cfg.system else []) + [{"role": "user", "content": cfg.prompt}]
    reply = chat_reply(model, tokenizer, messages, cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed)
    console.summary(f"用户: {cfg.prompt}\n模型: {reply}")
    return reply
