"""Embedded tokenizer and tiny model: formats, determinism, loading errors, generation."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medgo.config import ModelConfig
from medgo.model import ModelLoadError, load_model, load_model_and_tokenizer, load_tokenizer
from medgo.generate import GenerateConfig, chat_reply, run
from medgo.model.tokenizer import IM_END, IM_START, ENDOFTEXT, embedded_tokenizer_dir, tokenizer_fingerprint, train_bpe
from medgo.assets import iter_sample_corpus


def test_embedded_tokenizer_is_a_hf_directory(tokenizer):
    d = embedded_tokenizer_dir()
    assert (d / "tokenizer.json").is_file() and (d / "tokenizer_config.json").is_file()
    plain = AutoTokenizer.from_pretrained(d)
    assert len(plain) == len(tokenizer)
    for tok in (ENDOFTEXT, IM_START, IM_END):
        ids = plain(tok, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{tok} must be a single token"
    assert plain.eos_token == ENDOFTEXT and plain.pad_token == ENDOFTEXT


def test_tokenizer_learned_chinese_medical_words(tokenizer):
    text = "高血压患者应规律服用降压药物，监测血压。"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    # byte-level fallback would need about 3 tokens per character; merges learned from the corpus need far fewer
    assert len(ids) < len(text), (len(ids), len(text))


def test_chatml_template_and_assistant_mask(tokenizer):
    messages = [{"role": "user", "content": "头痛怎么办？"}, {"role": "assistant", "content": "请先测量血压。"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>user\n头痛怎么办？<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n请先测量血压。<|im_end|>\n")
    enc = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tokenizer.decode(masked) == "请先测量血压。<|im_end|>"


def test_bpe_training_is_deterministic():
    texts = list(iter_sample_corpus())[:40]
    a, b = train_bpe(texts, 2000), train_bpe(texts, 2000)
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(b)


def test_tiny_model_is_seeded_qwen2(tokenizer):
    cfg = ModelConfig()
    m1, m2 = load_model(cfg, tokenizer), load_model(cfg, tokenizer)
    assert m1.config.model_type == "qwen2"
    assert m1.config.vocab_size >= len(tokenizer)
    assert m1.config._attn_implementation == "sdpa"
    for (n, p1), p2 in zip(m1.named_parameters(), m2.parameters()):
        assert torch.equal(p1, p2), n
    m3 = load_model(ModelConfig(tiny={"seed": 1}), tokenizer)
    assert not torch.equal(next(m1.parameters()), next(m3.parameters()))


def test_local_checkpoint_round_trip(tmp_path, tokenizer):
    model = load_model(ModelConfig(), tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, tok = load_model_and_tokenizer(ModelConfig(base_model=str(tmp_path)))
    assert isinstance(loaded, type(model)) and len(tok) == len(tokenizer)
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert plain.config.vocab_size == model.config.vocab_size


def test_missing_model_path_is_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="model directory not found"):
        load_model_and_tokenizer(ModelConfig(base_model=str(tmp_path / "missing"), tokenizer="tiny"))


def test_tokenizer_too_big_for_model_is_clear(tmp_path, tokenizer):
    small = load_model(ModelConfig(), tokenizer)
    small.config.vocab_size = 100
    small.config.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="does not belong to this model"):
        load_model_and_tokenizer(ModelConfig(base_model=str(tmp_path), tokenizer="tiny"))


def test_generate_replies(tokenizer, capsys):
    reply = run(GenerateConfig(max_new_tokens=12))
    assert isinstance(reply, str) and reply.strip()
    out = capsys.readouterr().out
    assert "模型:" in out
    model = load_model(ModelConfig(), tokenizer)
    greedy = [chat_reply(model, tokenizer, [{"role": "user", "content": "发热怎么办"}], 8, temperature=0) for _ in range(2)]
    assert greedy[0] == greedy[1]
