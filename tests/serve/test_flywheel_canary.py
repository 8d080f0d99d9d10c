"""The canary in the running Serve app: sticky routing over HTTP, versions recorded per answer,
promote and rollback in place while 200 requests run, and the ``medgo flywheel`` commands."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from medgo.cli import main
from medgo.flywheel.control import promote, publish
from medgo.flywheel.registry import Registry, adapter_hash, feedback_lineage
from medgo.flywheel.routing import VERSION_HEADER, request_bucket
from medgo.serve.store import CompletionRow

MODEL = "medgo-tiny"


@pytest.fixture(scope="module")
def adapters(tiny_adapter, tmp_path_factory, tokenizer) -> list[str]:
    """Two LoRA adapters with different random weights: production's and the canary's."""
    from peft import LoraConfig, get_peft_model

    from medgo.config import ModelConfig
    from medgo.model import load_model

    torch.manual_seed(1)
    lora = get_peft_model(load_model(ModelConfig(), tokenizer), LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    second = tmp_path_factory.mktemp("adapters") / "round1"
    lora.save_pretrained(second)
    return [str(tiny_adapter), str(second)]


@pytest.fixture(scope="module")
def live(flywheel_app, adapters):
    """Registry: production r0000 on the first adapter, canary r0001 (second adapter) at 30%; published."""
    reg = Registry(flywheel_app.db)
    prod = reg.ensure_production(model=MODEL, base_model="tiny", base_fingerprint="tiny@test", adapter_dir=adapters[0], actor="test")
    canary = reg.register(model=MODEL, parent=prod["version"], base_model="tiny", base_fingerprint="tiny@test", adapter_dir=adapters[1],
                          adapter_hash=adapter_hash(adapters[1]), method="kto", train_config={}, feedback=feedback_lineage([1, 2]), gate={},
                          reasons=["gate passed"], status="canary", canary_share=0.3, actor="test")
    config = publish(reg, MODEL, app=flywheel_app.app, timeout_s=240)
    yield reg, config, prod["version"], canary["version"]
    reg.close()


def chat(first: str, turns: int = 0) -> list[dict]:
    msgs = [{"role": "user", "content": first}]
    for i in range(turns):
        msgs += [{"role": "assistant", "content": f"回答{i}"}, {"role": "user", "content": f"追问{i}"}]
    return msgs


def test_conversations_follow_the_sticky_routing_and_answers_name_their_version(flywheel_app, live):
    reg, config, prod, canary = live
    firsts = [f"第{i}位患者：头痛三天，怎么办？" for i in range(30)]

    async def scenario():
        async with httpx.AsyncClient(timeout=120, headers=flywheel_app.headers) as c:
            async def ask(messages, stream=False):
                r = await c.post(f"{flywheel_app.url}/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 2, "stream": stream})
                assert r.status_code == 200, r.text
                rid = json.loads(r.text.split("data: ", 2)[1])["id"] if stream else r.json()["id"]
                return r.headers[VERSION_HEADER], rid
            return await asyncio.gather(*[ask(chat(f, turns), stream=turns == 1) for f in firsts for turns in (0, 1, 2)])

    results = asyncio.run(scenario())
    by_conversation = [results[i:i + 3] for i in range(0, len(results), 3)]
    for first, answers in zip(firsts, by_conversation):
        expected = config.choose(request_bucket({}, None, "test-all", messages=chat(first))).version
        assert [v for v, _ in answers] == [expected] * 3, first
    versions = [v for v, _ in results]
    assert {prod, canary} == set(versions)
    with Session(reg.engine) as session:
        stored = {c.id: (c.model, c.adapter, c.adapter_version) for c in session.scalars(select(CompletionRow))}
    want_hash = {prod: adapter_hash(reg.get(prod)["adapter_dir"]), canary: adapter_hash(reg.get(canary)["adapter_dir"])}
    for version, rid in results:
        assert stored[rid] == (MODEL, version, want_hash[version])


def test_promote_and_rollback_in_place_while_200_requests_run(flywheel_app, live):
    reg, _, prod, canary = live
    switches: dict[str, float] = {}
    probes: dict[str, list[str]] = {}

    def probe(name: str) -> None:
        """Versions of a few fresh conversations, asked by the operator right after a switch (a 503 from backpressure is retried)."""
        def ask(c: httpx.Client, k: int) -> str:
            body = {"model": MODEL, "messages": chat(f"{name}{k}：发热"), "max_tokens": 2, "user": f"{name}-{k}"}
            deadline = time.monotonic() + 120
            while (r := c.post(f"{flywheel_app.url}/v1/chat/completions", json=body)).status_code == 503 and time.monotonic() < deadline:
                time.sleep(float(r.headers.get("retry-after", 1)))
            return r.headers.get(VERSION_HEADER) if r.status_code == 200 else str(r.status_code)

        with httpx.Client(timeout=120, headers=flywheel_app.headers) as c:
            probes[name] = [ask(c, k) for k in range(4)]

    def operator():
        time.sleep(1.5)
        switches["promote_start"] = time.monotonic()
        promote(reg, canary, actor="test", reason="test")
        publish(reg, MODEL, app=flywheel_app.app, timeout_s=240)
        switches["promote_done"] = time.monotonic()
        probe("promoted")
        switches["rollback_start"] = time.monotonic()
        reg.rollback(canary, actor="test", reason="test", source="test")
        publish(reg, MODEL, app=flywheel_app.app, timeout_s=240)
        switches["rollback_done"] = time.monotonic()
        probe("after")

    async def one(c: httpx.AsyncClient, i: int) -> dict:
        await asyncio.sleep(i * 0.03)
        body = {"model": MODEL, "messages": chat(f"患者{i}：咳嗽"), "max_tokens": 6, "ignore_eos": True, "stream": i % 2 == 0, "user": f"patient-{i}"}
        sent = time.monotonic()
        r = await c.post(f"{flywheel_app.url}/v1/chat/completions", json=body)
        return {"i": i, "sent": sent, "done": time.monotonic(), "status": r.status_code, "stream": body["stream"], "text": r.text,
                "version": r.headers.get(VERSION_HEADER), "retry": r.headers.get("retry-after")}

    async def scenario():
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(timeout=300, headers=flywheel_app.headers, limits=limits) as c:
            return await asyncio.gather(*[one(c, i) for i in range(200)])

    thread = threading.Thread(target=operator)
    thread.start()
    results = asyncio.run(scenario())
    thread.join()
    assert switches["promote_start"] < max(r["sent"] for r in results) and switches["rollback_done"] > min(r["done"] for r in results), "the switches must fall inside the load"
    assert {r["status"] for r in results} <= {200, 503}, [(r["status"], r["text"][:200]) for r in results if r["status"] not in (200, 503)]
    for r in results:
        if r["status"] == 503:
            assert json.loads(r["text"])["error"]["code"] == "overloaded" and r["retry"]
        elif r["stream"]:
            events = [line[6:] for line in r["text"].splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]" and '"error"' not in r["text"], r["text"][-300:]
            assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
        else:
            assert json.loads(r["text"])["usage"]["completion_tokens"] == 6
    ok = [r for r in results if r["status"] == 200]
    assert len(ok) >= 100 and {r["version"] for r in ok} <= {prod, canary}
    promoted = [r for r in ok if r["sent"] > switches["promote_done"] and r["done"] < switches["rollback_start"]]
    after = [r for r in ok if r["sent"] > switches["rollback_done"]]
    assert {r["version"] for r in promoted} <= {canary} and {r["version"] for r in after} <= {prod}
    assert probes == {"promoted": [canary] * 4, "after": [prod] * 4}
    # production again; the rejected canary's adapter is deleted once no request uses it
    from ray import serve

    handle, deadline = serve.get_deployment_handle("MedGoModel", flywheel_app.app), time.monotonic() + 90
    while (info := handle.info.remote().result(timeout_s=60))["flywheel_loaded"] != [prod] and time.monotonic() < deadline:
        time.sleep(1)  # deleted by the replica's next health check
    assert info["flywheel"]["production"]["version"] == prod and info["flywheel"]["canary"] is None
    assert info["flywheel_loaded"] == [prod]


def test_cli_share_status_and_feedback(flywheel_app, live, capsys):
    reg, _, prod, _ = live
    args = ["--database", flywheel_app.db, "--app", flywheel_app.app]
    assert main(["flywheel", "share", "0.5", *args]) == 2  # the canary was rolled back: nothing to share
    assert "has no canary" in capsys.readouterr().err
    with httpx.Client(timeout=120, headers=flywheel_app.headers) as c:
        ids = [c.post(f"{flywheel_app.url}/v1/chat/completions", json={"model": MODEL, "messages": chat(f"问题{i}"), "max_tokens": 2}).json()["id"] for i in range(3)]
        for rid, verdict in zip(ids, ["acceptable", "acceptable", "unacceptable"]):
            assert c.post(f"{flywheel_app.url}/v1/feedback", json={"response_id": rid, "verdict": verdict}).status_code == 201
    assert main(["flywheel", "status", "--json", *args]) == 0
    report = json.loads(capsys.readouterr().out)
    row = report["versions"][0]
    assert (row["role"], row["version"]) == ("production", prod) and row["judgements"] == 3 and row["accepted"] == 2
    assert row["answers"] >= 3 and row["interval"][0] < 2 / 3 < row["interval"][1]
    assert main(["flywheel", "rollback", prod, *args]) == 2  # r0000 has no parent
    assert main(["flywheel", "publish", *args]) == 0
    assert f"production {prod}" in capsys.readouterr().out
