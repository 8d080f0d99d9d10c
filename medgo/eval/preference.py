"""Preference accuracy without a reference model: does the model prefer the doctor's choice?

    from medgo.eval.preference import preference_accuracy
    result = preference_accuracy(model, tokenizer, rows)     # rows: TRL preference rows
    result["accuracy"], result["pairs"], result["ties"]

For each ``{prompt, chosen, rejected}`` row the model scores both answers by their
*length-normalised* log-probability after the prompt (the mean log-probability per answer token,
end-of-turn token included, under the model's chat template).  A pair is won when the chosen
answer scores higher, lost when lower, and a tie (equal within ``tie_tolerance``) counts as half.

Unlike the implicit DPO reward, which is zero for any policy equal to its reference, this needs
no reference model, so two models (a candidate adapter and the production one, or the SFT and
the DPO policy) can be compared on the same held-out pairs.

``prompt`` is a list of ``{role, content}`` messages or a plain user question; ``chosen`` and
``rejected`` are one assistant message (or a list holding one, TRL's conversational format) or
a plain string.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from medgo.eval.generation import continuation_logliks, render_prompt

TIE_TOLERANCE = 1e-6


def as_messages(prompt) -> list[dict]:
    """A prompt as chat messages (a plain string is one user turn)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def answer_text(answer) -> str:
    """The assistant's text from a string, a message, or a one-message list."""
    if isinstance(answer, list):
        answer = answer[-1]
    return answer["content"] if isinstance(answer, dict) else str(answer)


def answer_continuation(tokenizer, messages: list[dict], answer: str) -> tuple[str, str]:
    """``(prompt text, continuation)``: the templated chat up to the assistant turn, and the turn itself."""
    prompt = render_prompt(tokenizer, messages)
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt):  # a template that rewrites earlier turns: fall back to the bare answer
        return prompt, answer
    return prompt, full[len(prompt):].rstrip("\n")


def mean_logprobs(model, tokenizer, items: list[tuple[list[dict], str]], batch_size: int = 8) -> list[float]:
    """Mean log P(answer token | prompt, earlier answer tokens) for each ``(messages, answer)``."""
    texts = [answer_continuation(tokenizer, messages, answer) for messages, answer in items]
    out: list[float] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        scores = continuation_logliks(model, tokenizer, [p for p, _ in chunk], [c for _, c in chunk])
        out.extend(total / max(n, 1) for total, n in scores)
    return out


def outcome(chosen: float, rejected: float, tie_tolerance: float = TIE_TOLERANCE) -> float:
    """1 when the chosen answer scores higher, 0 when lower, 0.5 for a tie."""
    if abs(chosen - rejected) <= tie_tolerance:
        return 0.5
    return 1.0 if chosen > rejected else 0.0


def preference_accuracy(model, tokenizer, rows: Iterable[dict], batch_size: int = 8, tie_tolerance: float = TIE_TOLERANCE) -> dict:
    """``{accuracy, pairs, wins, ties, losses}`` over the rows (accuracy is None for no rows)."""
    rows = list(rows)
    items = []
    for row in rows:
        messages = as_messages(row["prompt"])
        items += [(messages, answer_text(row["chosen"])), (messages, answer_text(row["rejected"]))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        scores = mean_logprobs(model, tokenizer, items, batch_size)
    model.train(was_training)
    outcomes = [outcome(scores[2 * i], scores[2 * i + 1], tie_tolerance) for i in range(len(rows))]
    ties = sum(o == 0.5 for o in outcomes)
    wins = sum(o == 1.0 for o in outcomes)
    return {"accuracy": sum(outcomes) / len(outcomes) if outcomes else None, "pairs": len(outcomes),
            "wins": wins, "ties": ties, "losses": len(outcomes) - wins - ties}
