"""Autoscaling: sustained load grows the model deployment past its minimum; it shrinks back after.

The app under test reaches its model replicas with ``model_transport: ray``; the last test checks that
a stream and a whole answer come through that transport as through the default one.
"""

from __future__ import annotations

import threading
import time

import json

import httpx


def running_replicas(app: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments["MedGoModel"]
    return status.replica_states.get("RUNNING", 0)


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_grows_under_load_and_shrinks_after(scaling_app):
    assert running_replicas("scaling") == 1
    stop, errors, ok = threading.Event(), [], []

    def client():
        with httpx.Client(timeout=120) as c:
            while not stop.is_set():
                r = c.post(f"{scaling_app}/v1/chat/completions", json={"model": "medgo-tiny", "messages": [{"role": "user", "content": "咳嗽"}], "max_tokens": 8, "ignore_eos": True})
                (ok if r.status_code == 200 else errors).append(r.status_code)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        grew = wait_for(lambda: running_replicas("scaling") >= 2, timeout=90)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert grew, "6 concurrent clients against target_ongoing_requests=1 must add a replica"
    assert not errors and ok
    assert wait_for(lambda: running_replicas("scaling") == 1, timeout=90), "idle deployment must shrink back to min_replicas"


def test_the_object_reference_transport_streams_and_answers(scaling_app):
    req = {"model": "medgo-tiny", "messages": [{"role": "user", "content": "头痛"}], "max_tokens": 8, "temperature": 0}
    with httpx.Client(timeout=60) as c:
        whole = c.post(f"{scaling_app}/v1/chat/completions", json=req)
        streamed = c.post(f"{scaling_app}/v1/chat/completions", json={**req, "stream": True})
    assert whole.status_code == 200 and streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream") and streamed.text.rstrip().endswith("data: [DONE]")
    chunks = [json.loads(line[6:]) for line in streamed.text.split("\n\n") if line.startswith("data: {")]
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
    assert text == whole.json()["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole.json()["choices"][0]["finish_reason"]
