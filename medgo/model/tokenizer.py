"""Byte-level BPE tokenizer with Qwen2's special tokens and ChatML template.

``load_tokenizer(None)`` (or ``"tiny"``) returns the embedded tokenizer, trained on the sample
corpus with the ``tokenizers`` library the first time and cached under ``$MEDGO_CACHE``
(default ``~/.cache/medgo``) keyed by a hash of the corpus and settings, so every process and
node builds the same files.  Any other value is a local Hugging Face tokenizer directory, a
real Qwen2 tokenizer included.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from medgo.assets import iter_sample_corpus, sample_corpus_files

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]
EMBEDDED_VOCAB_SIZE = 8192
DEFAULT_SYSTEM_PROMPT = "你是一名专业、严谨的医学助手。"

# Qwen2's pre-tokenizer split: letters runs, single digits, punctuation runs, newlines.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ChatML as Qwen2 writes it; {% generation %} marks the tokens an SFT loss should train on.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

EMBEDDED_NAMES = {None, "", "tiny", "embedded"}


def cache_root() -> Path:
    return Path(os.environ.get("MEDGO_CACHE", Path.home() / ".cache" / "medgo"))


def embedded_fingerprint(vocab_size: int = EMBEDDED_VOCAB_SIZE) -> str:
    """Hash of everything the embedded tokenizer depends on."""
    h = hashlib.sha256()
    h.update(f"{vocab_size}|{tokenizers.__version__}|{QWEN2_SPLIT}|{CHATML_TEMPLATE}".encode())
    for path in sample_corpus_files():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def train_bpe(texts, vocab_size: int = EMBEDDED_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train a Qwen2-style byte-level BPE on ``texts`` and wrap it as a HF fast tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=CHATML_TEMPLATE,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )


def embedded_tokenizer_dir(vocab_size: int = EMBEDDED_VOCAB_SIZE) -> Path:
    """Directory of the embedded tokenizer, trained and cached on first use (atomic rename)."""
    target = cache_root() / f"tokenizer-{embedded_fingerprint(vocab_size)}"
    if (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=target.parent))
    train_bpe(iter_sample_corpus(), vocab_size).save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race; its files are identical
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(path: str | os.PathLike | None = None) -> PreTrainedTokenizerBase:
    """The embedded tokenizer (``None``/``"tiny"``) or a local HF tokenizer directory."""
    if path is None or str(path) in EMBEDDED_NAMES:
        path = embedded_tokenizer_dir()
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tokenizer_fingerprint(tok: PreTrainedTokenizerBase) -> str:
    """Stable hash of what maps text to ids: vocabulary, merges, normalisation, special tokens.

    Shards carry it so a model is never trained on ids from another tokenizer.
    """
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None), spec.pop("padding", None)
        payload = json.dumps(spec, sort_keys=True, ensure_ascii=False)
    else:
        payload = repr(sorted(tok.get_vocab().items()))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
