"""The FastAPI app in-process on a local ModelRunner: wire format, errors, keys, limits, feedback."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import pytest

from medgo.serve.api import build_api
from medgo.serve.model import ModelRunner
from medgo.serve.settings import ServeSettings
from medgo.serve.store import FeedbackStore

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "医生您好，我最近经常头痛，需要吃药吗？"}]


@pytest.fixture(scope="module")
def runner(tiny_adapter):
    r = ModelRunner({"model": {"base_model": "tiny"}, "adapters": {"cardio": str(tiny_adapter)}, "max_tokens_limit": 64, "default_max_tokens": 16})
    yield r
    r.engine.close()


def make_app(runner, url: str, **over):
    settings = ServeSettings(**{**runner.settings.model_dump(), "database_url": url, **over})
    store = FeedbackStore(url)
    return build_api(runner, settings, store), store


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'fb.db'}"


def client(app, key: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers, timeout=60)


def run(coro):
    return asyncio.run(coro)


def test_chat_completion_shape_usage_and_record(runner, sqlite_url, tokenizer):
    app, store = make_app(runner, sqlite_url)

    async def go():
        async with client(app) as c:
            return await c.post(CHAT, json={"model": "medgo-tiny", "messages": MSG, "max_tokens": 12, "seed": 3, "ignore_eos": True, "temperature": 0.8})

    r = run(go())
    assert r.status_code == 200, r.text
    body = r.json()
    prompt_ids = tokenizer.apply_chat_template(MSG, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["usage"] == {"prompt_tokens": len(prompt_ids), "completion_tokens": 12, "total_tokens": len(prompt_ids) + 12}
    assert body["choices"][0]["finish_reason"] == "length" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"]
    rows = list(store.iter_preferences())
    assert rows == []  # no feedback yet
    assert store.counts() == (1, 0)


def test_stream_is_openai_sse_and_equals_non_stream(runner, sqlite_url):
    app, store = make_app(runner, sqlite_url)
    req = {"model": "cardio", "messages": MSG, "max_tokens": 10, "seed": 11, "ignore_eos": True}

    async def go():
        async with client(app) as c:
            whole = (await c.post(CHAT, json=req)).json()
            streamed = await c.post(CHAT, json={**req, "stream": True, "stream_options": {"include_usage": True}})
            return whole, streamed

    whole, streamed = run(go())
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in streamed.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [f["choices"][0]["finish_reason"] for f in finish] == ["length"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 10
    assert store.counts() == (2, 0)


def test_text_completion_and_models(runner, sqlite_url):
    app, _ = make_app(runner, sqlite_url)

    async def go():
        async with client(app) as c:
            models = (await c.get("/v1/models")).json()
            text = await c.post("/v1/completions", json={"model": "medgo-tiny", "prompt": "高血压的诊断标准是", "max_tokens": 5, "ignore_eos": True})
            streamed = await c.post("/v1/completions", json={"model": "medgo-tiny", "prompt": "高血压", "max_tokens": 3, "stream": True})
            return models, text, streamed

    models, text, streamed = run(go())
    assert [m["id"] for m in models["data"]] == ["medgo-tiny", "cardio"]
    assert models["data"][1]["parent"] == "medgo-tiny" and models["data"][1]["version"].startswith("cardio@")
    assert text.status_code == 200 and text.json()["object"] == "text_completion" and text.json()["usage"]["completion_tokens"] == 5
    chunks = [json.loads(line[6:]) for line in streamed.text.split("\n\n") if line.startswith("data: {")]
    assert chunks and all(c["object"] == "text_completion" for c in chunks) and streamed.text.rstrip().endswith("data: [DONE]")


BAD = [
    (b'{"model": "medgo-tiny", "messages": [', 400, None),                       # malformed JSON
    ({"model": "medgo-tiny", "messages": "hello"}, 400, "messages"),              # wrong type
    ({"model": "medgo-tiny", "messages": []}, 400, "messages"),                   # empty messages
    ({"model": "medgo-tiny", "messages": [{"role": "doctor", "content": "x"}]}, 400, "messages.0.role"),
    ({"model": "medgo-tiny", "messages": MSG, "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "medgo-tiny", "messages": MSG, "max_tokens": -5}, 400, "max_tokens"),
    ({"model": "medgo-tiny", "messages": MSG, "max_tokens": 65}, 400, "max_tokens"),  # above the limit
    ({"model": "medgo-tiny", "messages": MSG, "temperature": "hot"}, 400, "temperature"),
    ({"model": "medgo-tiny", "messages": MSG, "top_p": 0}, 400, "top_p"),
    ({"model": "medgo-tiny", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"model": "medgo-tiny", "messages": MSG, "n": 2}, 400, "n"),
    ({"model": "gpt-4", "messages": MSG}, 404, "model"),                          # unknown model
    ({"model": "medgo-tiny", "messages": [{"role": "user", "content": "血压" * 2000}], "max_tokens": 60}, 400, "messages"),  # context
    ({"model": "medgo-tiny", "messages": [{"role": "user", "content": "血压" * 2000}], "max_tokens": 64, "stream": True}, 400, None),
]


@pytest.mark.parametrize("body,status,param", BAD, ids=range(len(BAD)))
def test_bad_input_gets_openai_error_and_4xx(runner, sqlite_url, body, status, param):
    app, store = make_app(runner, sqlite_url, max_body_bytes=20_000)

    async def go():
        async with client(app) as c:
            if isinstance(body, bytes):
                return await c.post(CHAT, content=body, headers={"Content-Type": "application/json"})
            return await c.post(CHAT, json=body)

    r = run(go())
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    if param:
        assert err["param"] == param
    assert store.counts() == (0, 0)


def test_context_length_error_names_the_limit(runner, sqlite_url):
    app, _ = make_app(runner, sqlite_url)

    async def go():
        async with client(app) as c:
            return await c.post(CHAT, json={"model": "medgo-tiny", "messages": [{"role": "user", "content": "血压" * 2000}], "max_tokens": 64})

    r = run(go())
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert "1024" in r.json()["error"]["message"]


def test_body_size_limit_is_413(runner, sqlite_url):
    app, _ = make_app(runner, sqlite_url, max_body_bytes=2_000)

    async def go():
        async with client(app) as c:
            declared = await c.post(CHAT, json={"model": "medgo-tiny", "messages": [{"role": "user", "content": "x" * 5_000}]})

            async def chunks():  # no Content-Length: counted while reading
                for _ in range(10):
                    yield b" " * 500
            streamed = await c.post(CHAT, content=chunks(), headers={"Content-Type": "application/json"})
            return declared, streamed

    declared, streamed = run(go())
    assert declared.status_code == 413 and streamed.status_code == 413
    assert declared.json()["error"]["code"] == "body_too_large"


def test_api_keys_enforced_on_every_route_but_healthz(runner, sqlite_url, key_file, api_key, monkeypatch):
    monkeypatch.setenv("MEDGO_TEST_KEYS", "env-key-1, env-key-2")
    app, _ = make_app(runner, sqlite_url, api_key_file=str(key_file), api_keys_env="MEDGO_TEST_KEYS")
    calls = [("GET", "/v1/models", None), ("POST", CHAT, {"model": "medgo-tiny", "messages": MSG, "max_tokens": 2}),
             ("POST", "/v1/completions", {"model": "medgo-tiny", "prompt": "x", "max_tokens": 2}),
             ("POST", "/v1/feedback", {"response_id": "x", "verdict": "acceptable"}), ("GET", "/v1/feedback/export", None),
             ("GET", "/openapi.json", None), ("GET", "/docs", None), ("GET", "/no/such/route", None)]

    async def go(key):
        async with client(app, key) as c:
            return [(await c.request(m, p, json=b)).status_code for m, p, b in calls] + [(await c.get("/healthz")).status_code]

    assert run(go(None)) == [401] * len(calls) + [200]
    assert run(go("wrong-key")) == [401] * len(calls) + [200]
    for key in (api_key, "env-key-2"):
        statuses = run(go(key))
        assert 401 not in statuses and statuses[:3] == [200, 200, 200]


def test_missing_key_file_is_an_error(runner, sqlite_url, tmp_path):
    with pytest.raises(FileNotFoundError, match="api_key_file"):
        make_app(runner, sqlite_url, api_key_file=str(tmp_path / "nope"))


def test_feedback_flow_and_export(runner, store_url):
    app, store = make_app(runner, store_url)

    async def go():
        async with client(app) as c:
            done = (await c.post(CHAT, json={"model": "medgo-tiny", "messages": MSG, "max_tokens": 4})).json()
            fb = {"response_id": done["id"], "verdict": "unacceptable", "corrected_answer": "建议先测量血压。", "comment": "答非所问", "reviewer": "dr-li"}
            first = await c.post("/v1/feedback", json=fb)
            again = await c.post("/v1/feedback", json=fb)
            unknown = await c.post("/v1/feedback", json={**fb, "response_id": "chatcmpl-nope"})
            bad = await c.post("/v1/feedback", json={**fb, "verdict": "meh"})
            export = await c.get("/v1/feedback/export")
            return done, first, again, unknown, bad, export

    done, first, again, unknown, bad, export = run(go())
    assert first.status_code == 201 and first.json()["duplicate"] is False
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["id"] == first.json()["id"]
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "response_id"
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "verdict"
    records = [json.loads(line) for line in export.text.splitlines()]
    assert len(records) == 1 and records[0]["response_id"] == done["id"]
    assert records[0]["answer"] == done["choices"][0]["message"]["content"] and records[0]["messages"] == MSG
    assert records[0]["prompt"] == MSG[0]["content"]
    assert store.counts() == (1, 1)


def test_200_concurrent_feedback_posts_through_the_api(runner, store_url):
    app, store = make_app(runner, store_url)

    async def go():
        async with client(app) as c:
            rid = (await c.post(CHAT, json={"model": "medgo-tiny", "messages": MSG, "max_tokens": 2})).json()["id"]
            posts = [c.post("/v1/feedback", json={"response_id": rid, "verdict": ("acceptable", "unacceptable")[i % 2], "reviewer": f"dr-{i}"}) for i in range(200)]
            return await asyncio.gather(*posts)

    responses = run(go())
    assert [r.status_code for r in responses] == [201] * 200
    assert store.counts() == (1, 200)


def test_no_prompt_or_answer_text_in_logs(runner, sqlite_url, caplog):
    app, _ = make_app(runner, sqlite_url)
    secret = "患者张三身份证号3101151980"

    async def go():
        async with client(app) as c:
            r = await c.post(CHAT, json={"model": "medgo-tiny", "messages": [{"role": "user", "content": secret}], "max_tokens": 24, "ignore_eos": True})
            s = await c.post(CHAT, json={"model": "medgo-tiny", "messages": [{"role": "user", "content": secret}], "max_tokens": 24, "stream": True})
            return r.json(), s

    with caplog.at_level(logging.DEBUG):
        body, _ = run(go())
    logs = caplog.text
    assert body["id"] in logs, "the completion must be logged (by id)"
    assert secret not in logs and "张三" not in logs
    answer = body["choices"][0]["message"]["content"]
    assert len(answer) > 8 and answer not in logs


def test_slow_answer_times_out_with_504_and_is_cancelled(sqlite_url):
    slow = ModelRunner({"model": {"base_model": "tiny"}, "debug_step_delay_s": 0.1, "max_tokens_limit": 64, "default_max_tokens": 16})
    app, store = make_app(slow, sqlite_url, request_timeout_s=0.5)

    async def go():
        async with client(app) as c:
            return await c.post(CHAT, json={"model": "medgo-tiny", "messages": MSG, "max_tokens": 60, "ignore_eos": True})

    try:
        r = run(go())
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        deadline = time.monotonic() + 5
        while slow.engine.rows and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not slow.engine.rows, "the abandoned request must leave the batch"
        assert slow.engine.steps < 30, "generation must stop soon after the timeout"
        assert store.counts() == (0, 0)
    finally:
        slow.engine.close()
