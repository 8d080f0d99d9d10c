"""Batched generation and log-likelihood: batching changes nothing; Ray replicas answer every request."""

from __future__ import annotations

import pytest
import torch

from medgo.config import ModelConfig, RayConfig
from medgo.eval.config import GenerationConfig
from medgo.eval.generation import continuation_logliks, generate_texts, make_request, render_prompt, run_requests
from medgo.model import load_model


@pytest.fixture(scope="module")
def model(tokenizer):
    m = load_model(ModelConfig(tiny={"seed": 3}), tokenizer)
    return m.eval()


def prompts(tokenizer, n=6):
    return [render_prompt(tokenizer, [{"role": "user", "content": "患者头痛" * (k + 1) + "，怎么办？"}]) for k in range(n)]


def test_batched_generation_equals_one_at_a_time(model, tokenizer):
    ps, limits = prompts(tokenizer), [6, 2, 6, 4, 1, 6]
    batched = generate_texts(model, tokenizer, ps, limits)
    single = [generate_texts(model, tokenizer, [p], n)[0] for p, n in zip(ps, limits)]
    assert batched == single
    assert [k for _, k in batched] <= limits and all(k <= n for (_, k), n in zip(batched, limits))


def test_loglik_matches_manual_forward_and_is_batch_invariant(model, tokenizer):
    ps = prompts(tokenizer, 4)
    conts = ["A", "B. 高血压", "胰岛素治疗", "D"]
    batched = continuation_logliks(model, tokenizer, ps, conts)
    single = [continuation_logliks(model, tokenizer, [p], [c])[0] for p, c in zip(ps, conts)]
    for (a, n), (b, m) in zip(batched, single):
        assert n == m and a == pytest.approx(b, abs=1e-4)
    # hand-computed: sum of log-softmax over the continuation positions
    p_ids = tokenizer(ps[1], add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(conts[1], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([p_ids + c_ids])).logits[0].float(), -1)
    manual = sum(float(logp[len(p_ids) - 1 + i, t]) for i, t in enumerate(c_ids))
    assert batched[1][0] == pytest.approx(manual, abs=1e-4) and batched[1][1] == len(c_ids)
    assert all(s < 0 for s, _ in batched)


def test_ray_replicas_answer_mixed_requests(ray_session, model, tokenizer):
    ps = prompts(tokenizer, 5)
    reqs = [make_request(f"g{i}", p, 3) for i, p in enumerate(ps)] + [make_request(f"l{i}", p, continuation="咳嗽") for i, p in enumerate(ps)]
    gen = GenerationConfig(batch_size=4)
    out = run_requests(ModelConfig(tiny={"seed": 3}), reqs, gen, RayConfig(num_workers=1, cpus_per_worker=1))
    assert set(out) == {r["uid"] for r in reqs}
    local_gen = generate_texts(model, tokenizer, ps, 3)
    local_ll = continuation_logliks(model, tokenizer, ps, ["咳嗽"] * 5)
    for i in range(5):
        assert out[f"g{i}"]["text"] == local_gen[i][0] and out[f"g{i}"]["n_tokens"] == local_gen[i][1]
        assert out[f"l{i}"]["loglik"] == pytest.approx(local_ll[i][0], abs=1e-3)


def test_long_prompts_lose_their_middle(tokenizer):
    from medgo.eval.generation import Renderer

    short_msgs = [{"role": "user", "content": "头痛"}]
    limit = len(tokenizer(render_prompt(tokenizer, short_msgs), add_special_tokens=False)["input_ids"]) + 30
    render = Renderer(tokenizer, max_prompt_tokens=limit)
    short = render(short_msgs)
    assert render.truncated == 0 and short.endswith("<|im_start|>assistant\n")
    long = render([{"role": "user", "content": "开头" + "中间的很长病史" * 50 + "结尾问题"}])
    ids = tokenizer(long, add_special_tokens=False)["input_ids"]
    assert render.truncated == 1 and len(ids) <= limit + 2  # decode/encode may merge a byte or two differently
    assert long.startswith("<|im_start|>system") and long.endswith("结尾问题<|im_end|>\n<|im_start|>assistant\n")
