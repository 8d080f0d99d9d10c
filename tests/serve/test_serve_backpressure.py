"""Backpressure: with the model replica held busy, the overflow gets 503 + Retry-After at once."""

from __future__ import annotations

import asyncio
import time

import httpx

MSG = [{"role": "user", "content": "胸痛伴大汗"}]


def test_overflow_gets_503_with_retry_after(busy_app):
    body = {"model": "medgo-tiny", "messages": MSG, "max_tokens": 8, "ignore_eos": True}

    async def scenario():
        async with httpx.AsyncClient(timeout=120) as c:
            async def ask(stream=False):
                t = time.perf_counter()
                r = await c.post(f"{busy_app}/v1/chat/completions", json={**body, "stream": stream})
                return r, time.perf_counter() - t

            running = asyncio.create_task(ask())       # occupies the only replica slot
            await asyncio.sleep(0.7)
            queued = asyncio.create_task(ask(stream=True))  # waits in the caller's queue (max 1)
            await asyncio.sleep(0.3)
            overflow = await asyncio.gather(*[ask(stream=i % 2 == 1) for i in range(4)])
            return await running, await queued, overflow

    running, queued, overflow = asyncio.run(scenario())
    assert running[0].status_code == 200 and queued[0].status_code == 200
    assert queued[0].text.rstrip().endswith("data: [DONE]") and '"error"' not in queued[0].text
    for r, elapsed in overflow:
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "2"
        assert r.json()["error"]["code"] == "overloaded"
        assert elapsed < 1.5, "rejections must not wait for the busy replica"
