"""Preference accuracy without a reference model: hand-checked scores, ties as half, swap symmetry."""

from __future__ import annotations

import pytest
import torch

from medgo.config import ModelConfig
from medgo.eval.preference import answer_continuation, mean_logprobs, preference_accuracy
from medgo.model import load_model

ROWS = [
    {"prompt": [{"role": "user", "content": "头痛三天，怎么办？"}], "chosen": [{"role": "assistant", "content": "建议先测量血压，必要时就医。"}],
     "rejected": [{"role": "assistant", "content": "没事。"}]},
    {"prompt": "咳嗽一周伴发热，需要做什么检查？", "chosen": "血常规和胸片。", "rejected": "不用检查，多喝水就好，过几天自然会好的。"},
    {"prompt": [{"role": "system", "content": "你是医生。"}, {"role": "user", "content": "糖尿病患者能吃水果吗？"}],
     "chosen": {"role": "assistant", "content": "可以适量吃低糖水果。"}, "rejected": {"role": "assistant", "content": "完全不能吃。"}},
]


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    m = load_model(ModelConfig(tiny={"seed": 5}), tokenizer).eval()
    with torch.no_grad():  # spread the logits so scores differ clearly between answers
        for p in m.parameters():
            p.normal_(0, 0.2)
    return m


def test_mean_logprob_matches_a_manual_forward(model, tokenizer):
    messages = [{"role": "user", "content": "头痛三天，怎么办？"}]
    [score] = mean_logprobs(model, tokenizer, [(messages, "多休息。")])
    prompt, cont = answer_continuation(tokenizer, messages, "多休息。")
    assert cont.startswith("多休息。") and cont != "多休息。"  # the end-of-turn token is scored too
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(cont, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + c_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    manual = sum(float(logp[len(p_ids) - 1 + k, t]) for k, t in enumerate(c_ids)) / len(c_ids)
    assert score == pytest.approx(manual, abs=1e-4)


def test_accuracy_counts_wins_and_swapping_sides_mirrors_it(model, tokenizer):
    result = preference_accuracy(model, tokenizer, ROWS, batch_size=2)
    swapped = preference_accuracy(model, tokenizer, [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in ROWS])
    assert result["pairs"] == 3 and result["wins"] + result["ties"] + result["losses"] == 3
    assert result["accuracy"] + swapped["accuracy"] == pytest.approx(1.0)
    assert result["wins"] == swapped["losses"]
    one_by_one = [preference_accuracy(model, tokenizer, [r])["accuracy"] for r in ROWS]
    assert result["accuracy"] == pytest.approx(sum(one_by_one) / 3)


def test_identical_answers_tie_and_count_half(model, tokenizer):
    rows = [{**ROWS[0], "rejected": ROWS[0]["chosen"]}, ROWS[1]]
    result = preference_accuracy(model, tokenizer, rows)
    assert result["ties"] >= 1
    alone = preference_accuracy(model, tokenizer, rows[1:])["accuracy"]
    assert result["accuracy"] == pytest.approx((0.5 + alone) / 2)
    assert preference_accuracy(model, tokenizer, [])["accuracy"] is None
