"""The app deployed on Ray Serve (HTTP on a test port): openai client, adapters, feedback, logs, metrics."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from medgo.serve.store import FeedbackStore

MSG = [{"role": "user", "content": "孩子发烧38.5度，需要去医院吗？"}]


@pytest.fixture(scope="module")
def oai(main_app, api_key):
    return OpenAI(base_url=f"{main_app.url}/v1", api_key=api_key, max_retries=0, timeout=120)


def test_models_list_base_and_adapter(oai):
    models = oai.models.list().data
    assert [m.id for m in models] == ["medgo-tiny", "cardio"]


def test_openai_client_plain_and_streaming(oai, main_app):
    kw = dict(model="medgo-tiny", messages=MSG, max_tokens=12, seed=21, temperature=0.9, extra_body={"ignore_eos": True})
    whole = oai.chat.completions.create(**kw)
    assert whole.usage.completion_tokens == 12 and whole.choices[0].finish_reason == "length"
    chunks = list(oai.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 12 and len({c.id for c in chunks}) == 1
    assert whole.id != chunks[0].id
    with httpx.Client(headers=main_app.headers) as c:
        for rid in (whole.id, chunks[0].id):  # both answers were recorded: feedback on them is accepted
            assert c.post(f"{main_app.url}/v1/feedback", json={"response_id": rid, "verdict": "acceptable"}).status_code == 201


def test_adapter_chosen_per_request(oai):
    def ask(model):
        return oai.chat.completions.create(model=model, messages=MSG, max_tokens=16, seed=5, temperature=1.0, extra_body={"ignore_eos": True}).choices[0].message.content

    base, lora = ask("medgo-tiny"), ask("cardio")
    assert base == ask("medgo-tiny") and lora == ask("cardio"), "seeded requests must be reproducible"
    assert base != lora, "the adapter must change the answer"


def test_unknown_model_and_missing_key(main_app):
    with httpx.Client() as c:
        assert c.get(f"{main_app.url}/v1/models").status_code == 401
        assert c.get(f"{main_app.url}/healthz").status_code == 200
        r = c.post(f"{main_app.url}/v1/chat/completions", json={"model": "gpt-4", "messages": MSG}, headers=main_app.headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_200_concurrent_feedback_posts_over_http(main_app, oai):
    rid = oai.chat.completions.create(model="medgo-tiny", messages=MSG, max_tokens=2).id
    store = FeedbackStore(main_app.db, create=False)
    before = store.counts()[1]

    async def post_all():
        async with httpx.AsyncClient(headers=main_app.headers, timeout=120, limits=httpx.Limits(max_connections=200)) as c:
            posts = [c.post(f"{main_app.url}/v1/feedback", json={"response_id": rid, "verdict": "unacceptable", "comment": f"第{i}条"}) for i in range(200)]
            return await asyncio.gather(*posts)

    statuses = [r.status_code for r in asyncio.run(post_all())]
    try:
        assert statuses == [201] * 200
        assert store.counts()[1] - before == 200
    finally:
        store.close()


def test_health_check_runs_the_model(main_app):
    from ray import serve

    model = serve.get_deployment_handle("MedGoModel", app_name="main")
    before = model.info.remote().result(timeout_s=60)["engine_steps"]
    model.check_health.remote().result(timeout_s=60)
    after = model.info.remote().result(timeout_s=60)["engine_steps"]
    assert after > before, "an idle replica's health check must run a forward pass"


def test_no_prompt_or_answer_text_in_serve_logs(main_app, oai, ray_session):
    secret = "住院号A7731患者王小明"
    done = oai.chat.completions.create(model="cardio", messages=[{"role": "user", "content": secret}], max_tokens=24, extra_body={"ignore_eos": True})
    answer = done.choices[0].message.content
    logs_dir = Path(ray_session._private.worker._global_node.get_logs_dir_path())
    deadline = time.monotonic() + 30
    while True:
        text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in logs_dir.rglob("*") if p.is_file() and p.suffix in {".log", ".out", ".err"})
        if done.id in text or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert done.id in text, "the API replica must log each completion by id"
    assert secret not in text and "王小明" not in text
    assert len(answer) > 8 and answer not in text


def test_metrics_reach_prometheus(main_app, oai, ray_session):
    oai.chat.completions.create(model="medgo-tiny", messages=MSG, max_tokens=3, extra_body={"ignore_eos": True})
    assert httpx.get(f"{main_app.url}/v1/models").status_code == 401  # no key: counted with status 401
    port = ray_session._private.worker._global_node.metrics_export_port
    wanted = ["ray_medgo_requests_total", "ray_medgo_completion_tokens_total", "ray_medgo_request_latency_seconds_bucket",
              "ray_medgo_time_to_first_token_seconds_bucket", "ray_medgo_feedback_total"]
    deadline, found = time.monotonic() + 60, {}
    while time.monotonic() < deadline:  # each replica exports on its own schedule: wait for every line asserted below
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        found = {name: [line for line in page.splitlines() if line.startswith(name + "{")] for name in wanted}
        if all(found.values()) and any('status="401"' in line for line in found["ray_medgo_requests_total"]):
            break
        time.sleep(2)
    assert all(found.values()), {k: len(v) for k, v in found.items()}
    chat_ok = [line for line in found["ray_medgo_requests_total"] if 'route="/v1/chat/completions"' in line and 'status="200"' in line]
    assert chat_ok and float(chat_ok[0].rsplit(" ", 1)[1]) >= 1
    tokens = sum(float(line.rsplit(" ", 1)[1]) for line in found["ray_medgo_completion_tokens_total"])
    assert tokens >= 3
    assert any(re.search(r'status="401"', line) for line in found["ray_medgo_requests_total"])
