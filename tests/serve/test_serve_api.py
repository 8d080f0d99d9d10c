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
    calls = [*ROUTE_CALLS, ("GET", "/openapi.json", None), ("GET", "/docs", None), ("GET", "/no/such/route", None)]

    async def go(key):
        async with client(app, key) as c:
            return [(await c.request(m, p, json=b)).status_code for m, p, b in calls] + [(await c.get("/healthz")).status_code]

    assert run(go(None)) == [401] * len(calls) + [200]
    assert run(go("wrong-key")) == [401] * len(calls) + [200]
    hashed = key_file.read_text(encoding="utf-8").splitlines()[1].split()[2]
    assert run(go(hashed)) == [401] * len(calls) + [200], "the hash in the key file is not a key"
    for key in (api_key, "env-key-2"):
        statuses = run(go(key))
        assert 401 not in statuses and 403 not in statuses and statuses[:3] == [200, 200, 200]


ROUTE_CALLS = [
    ("GET", "/v1/models", None),
    ("POST", CHAT, {"model": "medgo-tiny", "messages": MSG, "max_tokens": 2}),
    ("POST", "/v1/completions", {"model": "medgo-tiny", "prompt": "x", "max_tokens": 2}),
    ("POST", "/v1/feedback", {"response_id": "x", "verdict": "acceptable"}),
    ("GET", "/v1/review/queue", None),
    ("GET", "/v1/feedback/export", None),
    ("POST", "/v1/admin/purge", {"older_than": "90d"}),
    ("GET", "/v1/admin/audit", None),
    ("GET", "/v1/versions/stats", None),
]
ROUTE_SCOPE = ["chat", "chat", "chat", "feedback", "review", "admin", "admin", "admin", "admin"]


@pytest.mark.parametrize("scope", ["chat", "feedback", "review", "admin"])
def test_a_key_outside_its_scopes_gets_403_on_every_route(runner, sqlite_url, key_file, scope):
    from tests.serve.conftest import SCOPED_KEYS

    app, _ = make_app(runner, sqlite_url, api_key_file=str(key_file), api_keys_env=None)

    async def go():
        async with client(app, SCOPED_KEYS[scope]) as c:
            return [await c.request(m, p, json=b) for m, p, b in ROUTE_CALLS]

    responses = run(go())
    for (method, path, _), needed, r in zip(ROUTE_CALLS, ROUTE_SCOPE, responses):
        if needed == scope:
            assert r.status_code in (200, 404), f"{scope} key on {method} {path}: {r.status_code} {r.text[:200]}"
        else:
            assert r.status_code == 403, f"{scope} key on {method} {path}: {r.status_code}"
            assert r.json()["error"]["code"] == "insufficient_scope" and f"{scope}-only" in r.json()["error"]["message"]


def test_bad_key_file_line_is_named(runner, sqlite_url, tmp_path):
    path = tmp_path / "keys"
    path.write_text("# keys\nplain-secret-key\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path}:2: expected 'NAME SCOPES sha256:HEX'"):
        make_app(runner, sqlite_url, api_key_file=str(path))
    path.write_text("ops chat,superuser sha256:" + "0" * 64 + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path}:1: unknown or missing scope superuser"):
        make_app(runner, sqlite_url, api_key_file=str(path))


def test_missing_key_file_is_an_error(runner, sqlite_url, tmp_path):
    with pytest.raises(FileNotFoundError, match="api_key_file"):
        make_app(runner, sqlite_url, api_key_file=str(tmp_path / "nope"))


def test_open_mode_warns_and_an_empty_key_file_is_not_open(runner, sqlite_url, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        open_app, _ = make_app(runner, sqlite_url, api_keys_env=None)
    assert "the API is OPEN" in caplog.text
    empty = tmp_path / "keys"
    empty.write_text("# every key revoked\n", encoding="utf-8")
    closed, _ = make_app(runner, sqlite_url, api_keys_env=None, api_key_file=str(empty))

    async def go(app):
        async with client(app) as c:
            return (await c.get("/v1/models")).status_code

    assert (run(go(open_app)), run(go(closed))) == (200, 401)


def test_env_keys_are_named_and_warned_about(runner, sqlite_url, monkeypatch, caplog):
    monkeypatch.setenv("MEDGO_TEST_KEYS", "k-one k-two")
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        app, _ = make_app(runner, sqlite_url, api_keys_env="MEDGO_TEST_KEYS")
    assert "named env-1.. with every scope" in caplog.text

    async def go():
        async with client(app, "k-two") as c:
            rid = (await c.post(CHAT, json={"model": "medgo-tiny", "messages": MSG, "max_tokens": 2})).json()["id"]
            await c.post("/v1/feedback", json={"response_id": rid, "verdict": "acceptable"})
            return (await c.get("/v1/feedback/export")).text

    assert json.loads(run(go()))["reviewer"] == "env-2"


def test_revoked_key_is_refused_without_a_restart(runner, sqlite_url, tmp_path):
    from medgo.serve.security import add_key, revoke_key

    path = tmp_path / "keys"
    keep, gone = add_key(path, "keep", "chat"), add_key(path, "gone", "chat")
    app, _ = make_app(runner, sqlite_url, api_keys_env=None, api_key_file=str(path))

    async def go(key):
        async with client(app, key) as c:
            return (await c.get("/v1/models")).status_code

    assert (run(go(keep)), run(go(gone))) == (200, 200)
    revoke_key(path, "gone")
    assert (run(go(keep)), run(go(gone))) == (200, 401)


def test_feedback_flow_and_export(runner, store_url, key_file):
    from tests.serve.conftest import SCOPED_KEYS

    app, store = make_app(runner, store_url, api_key_file=str(key_file), api_keys_env=None)

    async def go():
        async with client(app, SCOPED_KEYS["chat"]) as chat, client(app, SCOPED_KEYS["feedback"]) as doctor, client(app, SCOPED_KEYS["admin"]) as admin:
            done = (await chat.post(CHAT, json={"model": "medgo-tiny", "messages": MSG, "max_tokens": 4})).json()
            fb = {"response_id": done["id"], "verdict": "unacceptable", "corrected_answer": "建议先测量血压。", "comment": "答非所问"}
            first = await doctor.post("/v1/feedback", json=fb)
            again = await doctor.post("/v1/feedback", json=fb)
            unknown = await doctor.post("/v1/feedback", json={**fb, "response_id": "chatcmpl-nope"})
            bad = await doctor.post("/v1/feedback", json={**fb, "verdict": "meh"})
            claimed = await doctor.post("/v1/feedback", json={**fb, "reviewer": "dr-somebody-else"})
            export = await admin.get("/v1/feedback/export")
            return done, first, again, unknown, bad, claimed, export

    done, first, again, unknown, bad, claimed, export = run(go())
    assert first.status_code == 201 and first.json()["duplicate"] is False
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["id"] == first.json()["id"]
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "response_id"
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "verdict"
    assert claimed.status_code == 400 and claimed.json()["error"]["param"] == "reviewer"
    records = [json.loads(line) for line in export.text.splitlines()]
    assert len(records) == 1 and records[0]["response_id"] == done["id"]
    assert records[0]["reviewer"] == "feedback-only", "the reviewer is the name of the key that posted the judgement"
    assert records[0]["messages"] == MSG and records[0]["prompt"] == MSG[0]["content"]
    assert store.counts() == (1, 1)


PHI_MSG = [{"role": "user", "content": "患者张伟，男，56岁，电话13812345678，住院号ZY20240518，头痛三天。"}]


def test_review_export_and_purge_are_deidentified_and_audited(runner, store_url, key_file):
    from tests.serve.conftest import SCOPED_KEYS

    app, store = make_app(runner, store_url, api_key_file=str(key_file), api_keys_env=None)

    async def go():
        async with client(app, SCOPED_KEYS["chat"]) as chat, client(app, SCOPED_KEYS["review"]) as review, \
                client(app, SCOPED_KEYS["feedback"]) as doctor, client(app, SCOPED_KEYS["admin"]) as admin:
            rids = [(await chat.post(CHAT, json={"model": "medgo-tiny", "messages": PHI_MSG, "max_tokens": 2})).json()["id"] for _ in range(2)]
            queue = (await review.get("/v1/review/queue")).json()
            await doctor.post("/v1/feedback", json={"response_id": rids[0], "verdict": "acceptable", "comment": "患者张伟已复诊"})
            after = (await review.get("/v1/review/queue")).json()
            export = await admin.get("/v1/feedback/export", params={"limit": 5})
            too_old = await admin.post("/v1/admin/purge", json={"older_than": "800000d"})
            kept = (await admin.post("/v1/admin/purge", json={"older_than": "90d"})).json()
            scrubbed = (await admin.post("/v1/admin/purge", json={"older_than": "1h", "mode": "deidentify"})).json()
            audit = (await admin.get("/v1/admin/audit")).json()
            return rids, queue, after, export, too_old, kept, scrubbed, audit

    rids, queue, after, export, too_old, kept, scrubbed, audit = run(go())
    assert too_old.status_code == 400 and too_old.json()["error"]["param"] == "older_than"
    assert [i["response_id"] for i in queue["data"]] == rids[::-1] and [i["response_id"] for i in after["data"]] == [rids[1]]
    assert "张伟" not in json.dumps(queue, ensure_ascii=False) and queue["deidentified"]["phone"] == 2
    assert queue["data"][0]["prompt"] == "患者[姓名]，男，56岁，电话[电话]，住院号[病历号]，头痛三天。"
    assert "张伟" not in export.text and json.loads(export.headers["X-Deidentified"]) == {"name": 2, "phone": 1, "record_number": 1}
    assert (kept["completions"], scrubbed["completions"], scrubbed["feedback"]) == (0, 0, 0), "nothing is an hour old yet"
    rows = [(r["actor"], r["source"], r["action"], r["rows"]) for r in reversed(audit["data"])]
    assert rows == [("admin-only", "api", "export", 1), ("admin-only", "api", "purge", 0), ("admin-only", "api", "purge", 0)]
    assert audit["data"][1]["arguments"] == {"older_than": "90d", "mode": "delete", "before": kept["before"]}
    assert store.counts() == (2, 1)


def test_200_concurrent_feedback_posts_through_the_api(runner, store_url):
    app, store = make_app(runner, store_url)

    async def go():
        async with client(app) as c:
            rid = (await c.post(CHAT, json={"model": "medgo-tiny", "messages": MSG, "max_tokens": 2})).json()["id"]
            posts = [c.post("/v1/feedback", json={"response_id": rid, "verdict": ("acceptable", "unacceptable")[i % 2], "comment": f"意见 {i}"}) for i in range(200)]
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


def test_me_names_the_key_and_its_scopes(runner, sqlite_url, key_file):
    from tests.serve.conftest import SCOPED_KEYS

    app, _ = make_app(runner, sqlite_url, api_key_file=str(key_file), api_keys_env=None)

    async def go():
        async with client(app, SCOPED_KEYS["review"]) as c, client(app, "not-a-key") as bad:
            return await c.get("/v1/me"), await bad.get("/v1/me")

    me, bad = run(go())
    assert me.json() == {"object": "api_key", "name": "review-only", "scopes": ["review"]}
    assert bad.status_code == 401


def test_workbench_page_needs_no_key_and_is_served_safely(runner, sqlite_url, key_file):
    app, _ = make_app(runner, sqlite_url, api_key_file=str(key_file), api_keys_env=None)

    async def go():
        async with client(app) as c:
            page = await c.get("/ui/")
            script = page.text.split('<script src="')[1].split('"')[0]
            return page, await c.get("/ui"), await c.get(f"/ui/{script}"), await c.get("/ui/static/0123456789abcdef/app.js"), \
                await c.get("/ui/", headers={"If-None-Match": page.headers["etag"]}), await c.get("/uix")

    page, bare, asset, stale, again, other = run(go())
    assert page.status_code == 200 and "医生工作台" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-cache" and again.status_code == 304
    assert bare.status_code == 308 and bare.headers["location"] == "ui/"
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"] and asset.headers["content-type"].startswith("text/javascript")
    assert asset.headers["content-security-policy"] == csp
    assert stale.status_code == 404 and stale.json()["error"]["code"] == "not_found", "a file is served only under its content hash"
    assert other.status_code == 401, "only /ui and /ui/... are open"


def test_static_files_are_addressed_by_their_content_hash(tmp_path):
    import hashlib

    from medgo.serve.ui import load_assets, render_page

    (tmp_path / "index.html").write_text('<script src="{{static:app.js}}"></script>', encoding="utf-8")
    (tmp_path / "app.js").write_text("let x = 1;", encoding="utf-8")
    digest = hashlib.sha256(b"let x = 1;").hexdigest()[:16]
    assert render_page(load_assets(tmp_path), tmp_path).body.decode() == f'<script src="static/{digest}/app.js"></script>'
    (tmp_path / "index.html").write_text('<link href="{{static:gone.css}}">', encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="gone.css"):
        render_page(load_assets(tmp_path), tmp_path)
