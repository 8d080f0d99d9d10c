"""End to end: ``serve run serve_configs/local.yaml`` (its own local Ray) serves the tiny model to
the real ``openai`` client, streaming and not; feedback is stored and exported as JSONL."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from openai import OpenAI

from medgo.cli import main as medgo_main


def wait_healthy(server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"serve run exited with {server.proc.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"{server.url} not healthy after {timeout}s:\n{server.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(serve_run_process):
    wait_healthy(serve_run_process, timeout=300)
    return serve_run_process


def test_openai_client_streaming_and_feedback(served, tmp_path):
    url, config, key = served.url, served.config, served.key
    client = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == ["medgo-tiny"]
    question = [{"role": "user", "content": "医生您好，我最近经常头痛，量血压160/100 mmHg，需要吃降压药吗？"}]

    whole = client.chat.completions.create(model="medgo-tiny", messages=question, max_tokens=24, temperature=0.7, seed=1)
    assert whole.id.startswith("chatcmpl-") and whole.usage.prompt_tokens > 10
    assert 1 <= whole.usage.completion_tokens <= 24 and whole.choices[0].finish_reason in {"stop", "length"}

    chunks = list(client.chat.completions.create(model="medgo-tiny", messages=question, max_tokens=24, stream=True, extra_body={"ignore_eos": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 3 and text and chunks[-1].choices[0].finish_reason == "length"

    text_completion = client.completions.create(model="medgo-tiny", prompt="高血压的诊断标准是", max_tokens=8, extra_body={"ignore_eos": True})
    assert text_completion.usage.completion_tokens == 8

    with httpx.Client(base_url=url, timeout=60) as http:
        fb = {"response_id": whole.id, "verdict": "unacceptable", "corrected_answer": "需要结合病史，建议就医评估后决定。"}
        assert http.post("/v1/feedback", json=fb).status_code == 401
        assert http.post("/v1/feedback", json=fb, headers={"Authorization": f"Bearer {key}"}).status_code == 201

    out = tmp_path / "feedback.jsonl"
    assert medgo_main(["serve", "export", "--config", str(config), "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 1
    assert records[0]["response_id"] == whole.id and records[0]["answer"] == whole.choices[0].message.content
    assert records[0]["prompt"] == question[0]["content"] and records[0]["messages"] == question
    assert records[0]["corrected_answer"] == fb["corrected_answer"]
    assert records[0]["reviewer"] == "env-1", "the reviewer is the name of the key that posted the judgement"
