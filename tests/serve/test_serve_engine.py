"""Continuous batching engine: batched = alone, joins mid-flight, stops, seeds, mixed LoRA rows."""

from __future__ import annotations

import asyncio

import pytest
import torch

from medgo.config import ModelConfig
from medgo.model import load_model
from medgo.serve.engine import Delta, Engine, Finish, GenerationRequest
from medgo.serve.model import ModelRunner

PROMPTS = ["头痛怎么办？", "高血压患者可以喝咖啡吗？请详细说明。", "发烧三天", "糖尿病的饮食注意事项有哪些？"]


@pytest.fixture(scope="module")
def model(tokenizer):
    m = load_model(ModelConfig(), tokenizer)
    m.eval()
    return m


def liven(model, std: float = 0.2):
    """Redraw the base model's matrices from N(0, std^2) with a fixed seed (LoRA weights are kept).
    The seeded tiny model's greedy reply to every prompt is a run of newlines; with larger weights
    greedy decoding takes a different path for each prompt, so comparing texts tests something."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1 and "lora_" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture(scope="module")
def lively_model(tokenizer):
    m = liven(load_model(ModelConfig(), tokenizer))
    m.eval()
    return m


@pytest.fixture(scope="module")
def prompt_ids(tokenizer):
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"] for p in PROMPTS]


async def collect(engine: Engine, request: GenerationRequest) -> tuple[str, Finish]:
    """Streamed text and the Finish event (whose full text must equal the streamed deltas)."""
    parts, finish = [], None
    async for event in engine.generate(request):
        if isinstance(event, Delta):
            parts.append(event.text)
        else:
            finish = event
    if isinstance(finish, Finish):
        assert finish.text == "".join(parts)
    return "".join(parts), finish


def sampled(ids, seed, **kw) -> GenerationRequest:
    return GenerationRequest(prompt_ids=ids, max_tokens=kw.pop("max_tokens", 24), temperature=1.0, top_p=0.9, seed=seed, ignore_eos=True, **kw)


def test_greedy_matches_transformers_generate(lively_model, tokenizer, prompt_ids):
    model = lively_model
    engine = Engine(model, tokenizer, max_batch_size=4)
    try:
        for ids in prompt_ids[:2]:
            text, finish = asyncio.run(collect(engine, GenerationRequest(ids, max_tokens=20, temperature=0, ignore_eos=True)))
            with torch.no_grad():
                out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=20, min_new_tokens=20, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            assert text == tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
            assert finish.reason == "length" and finish.completion_tokens == 20
    finally:
        engine.close()


def greedy(ids, **kw) -> GenerationRequest:
    return GenerationRequest(prompt_ids=ids, max_tokens=kw.pop("max_tokens", 24), temperature=0, ignore_eos=True, **kw)


@pytest.fixture
def logits_seen(monkeypatch):
    """Every row of logits the engine samples from and the token it drew, per request (prompt and
    seed), in step order."""
    from medgo.serve import engine as engine_module

    seen: dict[tuple, list[tuple[torch.Tensor, int]]] = {}
    original = engine_module.sample

    def recording(logits, seqs):
        tokens = original(logits, seqs)
        for row, seq, token in zip(logits, seqs, tokens, strict=True):
            seen.setdefault((tuple(seq.request.prompt_ids), seq.request.seed), []).append((row.clone(), token))
        return tokens

    monkeypatch.setattr(engine_module, "sample", recording)
    return seen


# A padded batch multiplies matrices of other shapes than one request alone, so float32 sums
# come out in another order: the logits agree to a few units in the last place, not bit for bit
# (seen: at most 3e-6 on the lively model, 2e-7 on the seeded one).
LOGIT_ATOL = 1e-4


def test_greedy_batched_and_staggered_requests_equal_requests_alone(lively_model, tokenizer, prompt_ids, logits_seen):
    engine = Engine(lively_model, tokenizer, max_batch_size=8)
    steps = {}

    async def scenario():
        alone = [await collect(engine, greedy(ids)) for ids in prompt_ids]
        solo_logits = {k: list(v) for k, v in logits_seen.items()}
        logits_seen.clear()
        steps["before"] = engine.steps
        together = await asyncio.gather(*[collect(engine, greedy(ids)) for ids in prompt_ids])
        steps["together"] = engine.steps - steps["before"]

        async def late(i, delay):
            await asyncio.sleep(delay)
            return await collect(engine, greedy(prompt_ids[i], max_tokens=6 + 6 * i))
        staggered = await asyncio.gather(*[late(i, 0.01 * i) for i in range(len(prompt_ids))])
        return alone, together, staggered, solo_logits

    try:
        alone, together, staggered, solo_logits = asyncio.run(scenario())
    finally:
        engine.close()
    assert [t for t, _ in together] == [t for t, _ in alone], "greedy decoding: token for token the same text"
    assert len({t for t, _ in alone}) == len(alone), "different prompts must give different text"
    assert steps["together"] <= 24 + 4, f"4 requests x 24 tokens took {steps['together']} forward passes, not ~24"
    for i, (text, finish) in enumerate(staggered):  # joined a running batch, left it at different steps
        assert finish.completion_tokens == 6 + 6 * i
        assert alone[i][0].startswith(text)
    for i, ids in enumerate(prompt_ids):  # batched (24 steps), then staggered (6 + 6 i steps)
        solo, batched = solo_logits[(tuple(ids), None)], logits_seen[(tuple(ids), None)]
        assert len(solo) == 24 and len(batched) == 24 + 6 + 6 * i
        for step, (row, _) in enumerate(batched):
            torch.testing.assert_close(row, solo[step if step < 24 else step - 24][0], rtol=0, atol=LOGIT_ATOL)


def test_sampled_batches_repeat_and_their_logits_match_requests_alone(model, tokenizer, prompt_ids, logits_seen):
    """Under sampling a last-bit difference in the logits can flip a draw, so batched text need not
    equal the text alone; what holds: the same seeds in the same batch give the same text, and every
    step's logits match the request alone while their tokens agree."""
    # The batching engine waits for a full batch, so both batched rounds hold the same four requests.
    solo_engine = Engine(model, tokenizer)
    batch_engine = Engine(model, tokenizer, max_batch_size=len(prompt_ids), batch_wait_s=60)
    requests = [sampled(ids, seed=10 + i) for i, ids in enumerate(prompt_ids)]

    async def scenario():
        alone = [await collect(solo_engine, r) for r in requests]
        solo_logits = {k: list(v) for k, v in logits_seen.items()}
        logits_seen.clear()
        first = await asyncio.gather(*[collect(batch_engine, r) for r in requests])
        batched_logits = {k: list(v) for k, v in logits_seen.items()}
        second = await asyncio.gather(*[collect(batch_engine, r) for r in requests])
        return alone, first, second, solo_logits, batched_logits

    try:
        alone, first, second, solo_logits, batched_logits = asyncio.run(scenario())
    finally:
        solo_engine.close()
        batch_engine.close()
    assert [t for t, _ in first] == [t for t, _ in second], "same seeds, same batch: same text"
    assert len({t for t, _ in alone}) == len(alone), "different seeds and prompts must give different text"
    for request in requests:
        key = (tuple(request.prompt_ids), request.seed)
        solo, batched = solo_logits[key], batched_logits[key]
        assert len(solo) == len(batched) == 24
        # Up to and including the first step whose draws differ, both runs saw the same tokens.
        diverged = next((step for step in range(24) if solo[step][1] != batched[step][1]), 23)
        for step in range(diverged + 1):
            torch.testing.assert_close(batched[step][0], solo[step][0], rtol=0, atol=LOGIT_ATOL)


def test_seed_reproducible_and_seeds_differ(model, tokenizer, prompt_ids):
    engine = Engine(model, tokenizer)
    try:
        a = asyncio.run(collect(engine, sampled(prompt_ids[0], seed=1)))[0]
        b = asyncio.run(collect(engine, sampled(prompt_ids[0], seed=1)))[0]
        c = asyncio.run(collect(engine, sampled(prompt_ids[0], seed=2)))[0]
    finally:
        engine.close()
    assert a == b and a != c


def test_stop_strings_cut_text_and_streamed_text_matches(model, tokenizer, prompt_ids):
    engine = Engine(model, tokenizer)
    try:
        full, _ = asyncio.run(collect(engine, sampled(prompt_ids[1], seed=5, max_tokens=40)))
        stop = full[10:12]
        cut, finish = asyncio.run(collect(engine, sampled(prompt_ids[1], seed=5, max_tokens=40, stop=(stop,))))
    finally:
        engine.close()
    assert finish.reason == "stop"
    assert cut == full[: full.find(stop)]
    assert stop not in cut


def test_eos_stops_unless_ignored(model, tokenizer, prompt_ids):
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    engine = Engine(model, tokenizer, eos_token_ids={eos})
    # Force the end token: greedy decoding of a model whose every logit favours it.
    bias = torch.zeros(model.config.vocab_size)
    bias[eos] = 1e4
    handle = model.lm_head.register_forward_hook(lambda _m, _i, out: out + bias)
    try:
        _, stopped = asyncio.run(collect(engine, GenerationRequest(prompt_ids[0], max_tokens=10, temperature=0)))
        _, ignored = asyncio.run(collect(engine, GenerationRequest(prompt_ids[0], max_tokens=10, temperature=0, ignore_eos=True)))
    finally:
        handle.remove()
        engine.close()
    assert (stopped.reason, stopped.completion_tokens) == ("stop", 1)
    assert (ignored.reason, ignored.completion_tokens) == ("length", 10)


def test_mixed_adapter_batch_equals_separate_runs(tiny_adapter, prompt_ids):
    runner = ModelRunner({"model": {"base_model": "tiny"}, "adapters": {"cardio": str(tiny_adapter)}})
    engine = runner.engine
    liven(engine.model)
    base = lambda i: greedy(prompt_ids[i])  # greedy: the engine promises the same tokens batched or alone
    lora = lambda i: greedy(prompt_ids[i], adapter=runner.adapters["cardio"])

    async def scenario():
        alone_base = [await collect(engine, base(i)) for i in range(2)]
        alone_lora = [await collect(engine, lora(i)) for i in range(2)]
        mixed = await asyncio.gather(collect(engine, base(0)), collect(engine, lora(0)), collect(engine, base(1)), collect(engine, lora(1)))
        return alone_base, alone_lora, mixed

    try:
        alone_base, alone_lora, mixed = asyncio.run(scenario())
    finally:
        engine.close()
    assert [t for t, _ in mixed] == [alone_base[0][0], alone_lora[0][0], alone_base[1][0], alone_lora[1][0]]
    assert alone_base[0][0] != alone_lora[0][0], "the adapter must change the output"


def test_cancelled_request_leaves_the_batch(model, tokenizer, prompt_ids):
    engine = Engine(model, tokenizer)

    async def scenario():
        gen = engine.generate(sampled(prompt_ids[0], seed=0, max_tokens=500))
        await anext(gen)
        await gen.aclose()
        other = await collect(engine, sampled(prompt_ids[1], seed=0, max_tokens=5))
        return other

    try:
        text, finish = asyncio.run(scenario())
        assert finish.completion_tokens == 5
        assert not engine.rows, "the cancelled sequence must have been pruned"
    finally:
        engine.close()


@pytest.mark.parametrize("temperature,top_p", [(1e-300, 1.0), (5e-5, 0.5), (2.0, 1e-300), (1e-4, 1.0)])
def test_extreme_sampling_values_still_generate(model, tokenizer, prompt_ids, temperature, top_p):
    engine = Engine(model, tokenizer)
    try:
        text, finish = asyncio.run(collect(engine, GenerationRequest(prompt_ids[0], max_tokens=6, temperature=temperature, top_p=top_p, seed=0, ignore_eos=True)))
    finally:
        engine.close()
    assert finish.completion_tokens == 6 and finish.reason == "length"


def test_closing_the_engine_fails_waiting_requests(model, tokenizer, prompt_ids):
    from medgo.serve.engine import Failure

    engine = Engine(model, tokenizer, step_delay_s=0.01)

    async def scenario():
        gen = engine.generate(sampled(prompt_ids[0], seed=0, max_tokens=1000))
        await anext(gen)
        await asyncio.get_running_loop().run_in_executor(None, engine.close)
        return [event async for event in gen]

    events = asyncio.run(scenario())
    assert isinstance(events[-1], Failure) and "closed" in events[-1].error


def test_non_streaming_requests_get_one_event_with_the_same_text(model, tokenizer, prompt_ids):
    from dataclasses import replace

    engine = Engine(model, tokenizer)

    async def scenario():
        streamed = await collect(engine, sampled(prompt_ids[2], seed=9))
        events = [e async for e in engine.generate(replace(sampled(prompt_ids[2], seed=9), stream=False))]
        return streamed, events

    try:
        (text, _), events = asyncio.run(scenario())
    finally:
        engine.close()
    assert len(events) == 1 and isinstance(events[0], Finish) and events[0].text == text and text


@pytest.mark.parametrize("interval_ms,expected_deltas", [(0, 20), (60_000, 2)])
def test_stream_interval_gathers_text_into_fewer_chunks(interval_ms, expected_deltas):
    runner = ModelRunner({"model": {"base_model": "tiny"}, "stream_interval_ms": interval_ms})
    params = {"kind": "chat", "model": "medgo-tiny", "messages": [{"role": "user", "content": "失眠"}], "max_tokens": 20, "seed": 4, "ignore_eos": True}

    async def scenario():
        streamed = [e async for e in runner.stream(params)]
        whole = await runner.complete(params)
        return streamed, whole

    try:
        streamed, whole = asyncio.run(scenario())
    finally:
        runner.engine.close()
    deltas = [e["delta"] for e in streamed if "delta" in e]
    assert "".join(deltas) == whole["text"] and streamed[-1]["completion_tokens"] == 20
    if interval_ms:  # the first text at once, the rest when the request finishes
        assert len(deltas) == expected_deltas
    else:  # every token that completes a character is its own chunk
        assert len(deltas) >= expected_deltas // 2


@pytest.mark.parametrize("temperature,top_p,expected", [
    (1.0, 1.0, [0.5, 0.3, 0.15, 0.05]),
    (1.0, 0.7, [0.625, 0.375, 0.0, 0.0]),                         # nucleus keeps 0.5 + 0.3, renormalised
    (0.5, 1.0, [0.25 / 0.365, 0.09 / 0.365, 0.0225 / 0.365, 0.0025 / 0.365]),  # p ** (1 / T), renormalised
    (0.0, 1.0, [1.0, 0.0, 0.0, 0.0]),                             # greedy
])
def test_sampler_frequencies_match_hand_computed_distribution(temperature, top_p, expected):
    from medgo.serve.engine import Sequence, sample

    n = 5_000  # binomial std <= 0.007: the tolerance is over 4 sigma
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().repeat(n, 1)
    seqs = [Sequence(GenerationRequest([0], temperature=temperature, top_p=top_p), print, torch.Generator().manual_seed(i)) for i in range(n)]
    counts = torch.bincount(torch.tensor(sample(logits, seqs)), minlength=4).float() / n
    assert torch.allclose(counts, torch.tensor(expected), atol=0.03), counts


def test_our_forward_calls_raise_no_deprecation_warning(model, tokenizer, prompt_ids):
    import warnings

    engine = Engine(model, tokenizer)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            asyncio.run(collect(engine, greedy(prompt_ids[0], max_tokens=3)))
    finally:
        engine.close()
    assert not [str(w.message) for w in seen if issubclass(w.category, (FutureWarning, DeprecationWarning))]
