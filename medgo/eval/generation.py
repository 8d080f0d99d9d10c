"""Batched generation and continuation log-likelihood on a pool of model replicas (Ray Data).

Every evaluation request is a row ``{uid, kind, prompt, continuation, max_new_tokens}``:
``kind="generate"`` asks for a greedy (or sampled) reply to the rendered ``prompt``;
``kind="loglik"`` asks for the summed log-probability of ``continuation`` after ``prompt``
(ClinicalQA options, KUAKE-IR reranking).  :func:`run_requests` streams the rows through
``Dataset.map_batches`` onto a fixed pool of :class:`ModelReplica` actors (``num_workers``, each with
``cpus_per_worker``/``gpus_per_worker``), so one CPU replica and one replica per GPU of a
cluster run the same code.  Rows are sorted by length first so each batch pads little.

:func:`generate_texts` and :func:`continuation_logliks` are the in-process kernels (left-padded
``generate``; one forward pass per batch); the benchmark calls them directly.  :class:`Renderer`
turns chat messages into prompt text with a model's template, within its context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from medgo import console
from medgo.config import ModelConfig, RayConfig
from medgo.eval.config import GenerationConfig

GENERATE, LOGLIK = "generate", "loglik"


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The chat-template text a model sees, ending with the assistant turn's opening."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclass
class Renderer:
    """Renders chat messages with one model's template, cutting the middle of over-long prompts."""

    tokenizer: object
    max_prompt_tokens: int
    truncated: int = 0

    def __call__(self, messages: list[dict]) -> str:
        text = render_prompt(self.tokenizer, messages)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_prompt_tokens:
            return text
        self.truncated += 1
        head = self.max_prompt_tokens // 2
        tail = self.max_prompt_tokens - head
        return self.tokenizer.decode(ids[:head]) + self.tokenizer.decode(ids[-tail:])

    def plain(self, text: str) -> str:
        """Plain text (no chat turn, e.g. a passage whose continuation is scored), cut at the end."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_prompt_tokens:
            return text
        self.truncated += 1
        return self.tokenizer.decode(ids[: self.max_prompt_tokens])


def _left_padded(tokenizer, prompts: list[str], device) -> dict:
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
    return {k: v.to(device) for k, v in enc.items()}


def generate_texts(model, tokenizer, prompts: list[str], max_new_tokens: list[int] | int, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> list[tuple[str, int]]:
    """Reply to every prompt in one left-padded ``generate`` call; returns (text, new token count).

    The batch runs to the largest ``max_new_tokens``; each reply is then cut to its own limit,
    which is exact for greedy decoding (rows do not interact under the attention mask).
    """
    limits = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    enc = _left_padded(tokenizer, prompts, model.device)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max(limits), pad_token_id=tokenizer.pad_token_id, **sampling)
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    stops = _stop_ids(model, tokenizer)
    replies = []
    for ids, limit in zip(new, limits):
        ids = ids[:limit]
        end = next((i for i, t in enumerate(ids) if t in stops), len(ids))
        replies.append((tokenizer.decode(ids[:end], skip_special_tokens=True), end))
    return replies


def _stop_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids | {tokenizer.pad_token_id, tokenizer.eos_token_id} - {None}


def continuation_logliks(model, tokenizer, prompts: list[str], continuations: list[str]) -> list[tuple[float, int]]:
    """Summed log P(continuation | prompt) and the continuation's token count, one forward pass."""
    pairs = [(tokenizer(p, add_special_tokens=False)["input_ids"], tokenizer(c, add_special_tokens=False)["input_ids"]) for p, c in zip(prompts, continuations)]
    width = max(len(p) + len(c) for p, c in pairs)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(pairs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (p, c) in enumerate(pairs):  # left padding keeps every sequence's end aligned
        seq = p + c
        ids[row, width - len(seq):] = torch.tensor(seq)
        mask[row, width - len(seq):] = 1
    with torch.no_grad():
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].to(model.device).unsqueeze(-1)).squeeze(-1)
    return [(float(logp[row, width - 1 - len(c):].sum()), len(c)) for row, (_, c) in enumerate(pairs)]


def load_replica(cfg: ModelConfig):
    """The model on this actor's devices: one GPU, the CPU, or sharded over several GPUs.

    A replica given several GPUs (``gpus_per_worker > 1``, e.g. a 72B model on 4 A100s) loads
    with ``device_map="auto"``, which splits the layers over the GPUs Ray assigned to it.
    """
    from medgo.model.loading import is_tiny, load_model_and_tokenizer, model_config_for, resolve_attn_implementation, resolve_dtype, resolve_tokenizer_path
    from medgo.model.tokenizer import load_tokenizer

    if torch.cuda.device_count() <= 1 or is_tiny(cfg):
        return load_model_and_tokenizer(cfg, "cuda" if torch.cuda.is_available() else "cpu")
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(resolve_tokenizer_path(cfg))
    model_config_for(cfg, tokenizer)  # same checks as load_model
    model = AutoModelForCausalLM.from_pretrained(cfg.base_model, dtype=resolve_dtype(cfg.dtype), attn_implementation=resolve_attn_implementation(cfg.attn_implementation), device_map="auto")
    if cfg.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, cfg.adapter)
    return model, tokenizer


class ModelReplica:
    """A Ray Data actor holding one copy of the model; answers batches of mixed requests."""

    def __init__(self, model_cfg: dict, sampling: dict):
        console.quiet_library_warnings()
        self.model, self.tokenizer = load_replica(ModelConfig(**model_cfg))
        self.model.eval()
        self.sampling = sampling

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["uid"])
        text, tokens, loglik = [""] * n, [0] * n, [0.0] * n
        gen = [i for i in range(n) if batch["kind"][i] == GENERATE]
        scr = [i for i in range(n) if batch["kind"][i] == LOGLIK]
        if gen:
            replies = generate_texts(self.model, self.tokenizer, [batch["prompt"][i] for i in gen], [int(batch["max_new_tokens"][i]) for i in gen], **self.sampling)
            for i, (t, k) in zip(gen, replies):
                text[i], tokens[i] = t, k
        if scr:
            scores = continuation_logliks(self.model, self.tokenizer, [batch["prompt"][i] for i in scr], [batch["continuation"][i] for i in scr])
            for i, (s, k) in zip(scr, scores):
                loglik[i], tokens[i] = s, k
        return {"uid": batch["uid"], "text": np.array(text, dtype=object), "n_tokens": np.array(tokens), "loglik": np.array(loglik)}


def make_request(uid: str, prompt: str, max_new_tokens: int = 0, continuation: str = "") -> dict:
    """One row for :func:`run_requests`: a generation when ``continuation`` is empty, else a log-likelihood."""
    kind = LOGLIK if continuation else GENERATE
    return {"uid": uid, "kind": kind, "prompt": prompt, "continuation": continuation, "max_new_tokens": int(max_new_tokens)}


def run_requests(model: ModelConfig, requests: list[dict], gen: GenerationConfig, ray_cfg: RayConfig, desc: str = "generate", on_answer=None) -> dict[str, dict]:
    """Answer every request on a pool of ``ray_cfg.num_workers`` replicas; returns ``uid -> row``.

    ``on_answer()``, when given, is called after each answer (progress bars).
    """
    import ray

    if not requests:
        return {}
    rows = sorted(requests, key=lambda r: (r["kind"], r["max_new_tokens"], len(r["prompt"]) + len(r["continuation"])))
    sampling = dict(temperature=gen.temperature, top_p=gen.top_p, seed=gen.seed)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // gen.batch_size, 4 * ray_cfg.num_workers)))
    ds = ds.map_batches(
        ModelReplica,
        fn_constructor_kwargs=dict(model_cfg=model.model_dump(), sampling=sampling),
        batch_size=gen.batch_size,
        compute=ray.data.ActorPoolStrategy(size=ray_cfg.num_workers),
        num_cpus=ray_cfg.cpus_per_worker,
        num_gpus=ray_cfg.gpus_per_worker if ray_cfg.use_gpu else 0,
    )
    results = {}
    for row in tqdm(ds.iter_rows(), total=len(rows), desc=desc, unit="req"):
        results[row["uid"]] = {"text": row["text"], "n_tokens": int(row["n_tokens"]), "loglik": float(row["loglik"])}
        if on_answer is not None:
            on_answer()
    missing = {r["uid"] for r in rows} - results.keys()
    if missing:
        raise RuntimeError(f"{len(missing)} requests came back without an answer, e.g. {sorted(missing)[:3]}")
    return results
