"""Sticky canary routing: the share of 1,000 simulated conversations, and one conversation, one version."""

from __future__ import annotations

import random

import pytest

from medgo.flywheel.routing import LiveConfig, LiveVersion, bucket, conversation_key, request_bucket

LIVE = LiveConfig(model="medgo-tiny", production=LiveVersion(version="r1"), canary=LiveVersion(version="r2", adapter_dir="/a"), canary_share=0.3)
SYMPTOMS = ["头痛", "胸痛伴大汗", "咳嗽三周", "腹泻", "发热", "失眠", "皮疹", "关节痛"]


def conversations(n: int, seed: int = 0) -> list[list[dict]]:
    """``n`` distinct simulated chats, each opened by a user message, with a few later turns."""
    rng = random.Random(seed)
    chats = []
    for i in range(n):
        chat = [{"role": "system", "content": "你是医生助手。"}, {"role": "user", "content": f"{rng.choice(SYMPTOMS)}，第{i}位患者，怎么办？"}]
        for turn in range(rng.randint(0, 3)):
            chat += [{"role": "assistant", "content": f"回答{turn}"}, {"role": "user", "content": f"追问{turn}"}]
        chats.append(chat)
    return chats


def version_of(messages: list[dict], headers=None, user=None, key="dr-wang") -> str:
    return LIVE.choose(request_bucket(headers or {}, user, key, messages=messages)).version


def test_thirty_percent_of_1000_conversations_go_to_the_canary():
    chats = conversations(1000)
    share = sum(version_of(c) == "r2" for c in chats) / len(chats)
    # binomial sd at n=1000, p=0.3 is 1.45 points: 4 sd either side
    assert abs(share - 0.3) < 0.058, share
    users = sum(version_of(chats[0], user=f"patient-{i}") == "r2" for i in range(1000)) / 1000
    assert abs(users - 0.3) < 0.058, users


def test_a_conversation_never_switches_version():
    for chat in conversations(200, seed=1):
        first = version_of(chat[:2])
        assert all(version_of(chat[:k]) == first for k in range(2, len(chat) + 1, 2))
    assert version_of([{"role": "user", "content": "a"}], headers={"x-conversation-id": "c-17"}) == \
        version_of([{"role": "user", "content": "b"}], headers={"x-conversation-id": "c-17"})


def test_key_order_and_raising_the_share_only_adds_canary_conversations():
    assert conversation_key("c1", "u1", "k", "q") == "conversation:c1"
    assert conversation_key(None, "u1", "k", "q") == "user:u1"
    assert conversation_key(None, None, "k", "q") != conversation_key(None, None, "k2", "q")
    buckets = [bucket(f"user:{i}") for i in range(1000)]
    at = {s: {i for i, b in enumerate(buckets) if LIVE.model_copy(update={"canary_share": s}).choose(b).version == "r2"} for s in (0.1, 0.3, 0.6)}
    assert at[0.1] <= at[0.3] <= at[0.6]
    assert not {LIVE.model_copy(update={"canary": None}).choose(b).version for b in buckets} - {"r1"}


def test_production_and_canary_must_differ():
    with pytest.raises(ValueError, match="production and canary"):
        LiveConfig(model="m", production=LiveVersion(version="r1"), canary=LiveVersion(version="r1"))
