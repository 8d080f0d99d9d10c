"""Feedback store on SQLite and PostgreSQL: no lost rows under concurrency, dedup, 404, export."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from medgo.serve.store import FeedbackStore, UnknownResponse

EXPORT_FIELDS = ["response_id", "created", "model", "prompt", "answer", "verdict", "corrected_answer", "comment", "reviewer", "messages"]
ASSET = Path(__file__).resolve().parents[2] / "medgo" / "assets" / "feedback" / "feedback.jsonl"


def completion(rid: str, **over) -> dict:
    fields = dict(
        id=rid, endpoint="chat", model="medgo-tiny", base_version="tiny@abc", adapter=None, adapter_version=None,
        prompt=[{"role": "user", "content": "高血压患者可以喝咖啡吗？"}], answer="可以少量饮用。", params={"temperature": 0.7, "top_p": 0.9, "max_tokens": 16, "stop": [], "seed": 1},
        finish_reason="stop", prompt_tokens=12, completion_tokens=6, latency_s=0.05,
    )
    fields.update(over)
    return fields


@pytest.fixture
def store(store_url):
    s = FeedbackStore(store_url)
    yield s
    s.close()


def test_completion_and_feedback_round_trip(store):
    store.add_completion(**completion("chatcmpl-1"))
    first = store.add_feedback("chatcmpl-1", "unacceptable", corrected_answer="应限制咖啡因摄入。", comment="过于笼统", reviewer="dr-li")
    again = store.add_feedback("chatcmpl-1", "unacceptable", corrected_answer="应限制咖啡因摄入。", comment="过于笼统", reviewer="dr-li")
    other = store.add_feedback("chatcmpl-1", "acceptable", reviewer="dr-wang")
    assert first.created and not again.created and again.id == first.id
    assert other.created and other.id != first.id
    assert store.counts() == (1, 2)


def test_unknown_response_and_bad_verdict_are_refused(store):
    with pytest.raises(UnknownResponse):
        store.add_feedback("chatcmpl-missing", "acceptable")
    store.add_completion(**completion("chatcmpl-2"))
    with pytest.raises(ValueError, match="verdict"):
        store.add_feedback("chatcmpl-2", "fine")
    assert store.counts() == (1, 0)


def test_200_concurrent_feedback_posts_give_200_rows(store):
    store.add_completion(**completion("chatcmpl-c"))
    verdicts = ["acceptable", "unacceptable"]
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda i: store.add_feedback("chatcmpl-c", verdicts[i % 2], comment=f"意见 {i}", reviewer=f"dr-{i}"), range(200)))
    assert all(r.created for r in results)
    assert len({r.id for r in results}) == 200
    assert store.counts() == (1, 200)


def test_concurrent_identical_feedback_is_stored_once(store):
    store.add_completion(**completion("chatcmpl-d"))
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: store.add_feedback("chatcmpl-d", "acceptable", reviewer="dr-zhao"), range(40)))
    assert sum(r.created for r in results) == 1
    assert len({r.id for r in results}) == 1
    assert store.counts() == (1, 1)


def test_export_has_the_preference_stage_fields(store):
    store.add_completion(**completion("chatcmpl-e", answer="多喝热水。"))
    store.add_completion(**completion("cmpl-f", endpoint="text", prompt="高血压的定义", answer="收缩压≥140"))
    store.add_feedback("chatcmpl-e", "unacceptable", corrected_answer="请测量体温并就医。", reviewer="dr-chen")
    store.add_feedback("cmpl-f", "acceptable")
    out = io.StringIO()
    assert store.export_jsonl(out) == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [list(r) for r in lines] == [EXPORT_FIELDS, EXPORT_FIELDS]
    first, second = lines
    assert first["prompt"] == "高血压患者可以喝咖啡吗？" and first["messages"] == [{"role": "user", "content": "高血压患者可以喝咖啡吗？"}]
    assert (first["answer"], first["verdict"], first["corrected_answer"], first["reviewer"]) == ("多喝热水。", "unacceptable", "请测量体温并就医。", "dr-chen")
    assert second["prompt"] == "高血压的定义" and second["messages"] is None and second["verdict"] == "acceptable"
    created = datetime.strptime(first["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs((created - datetime.now(timezone.utc)).total_seconds()) < 120
    if ASSET.is_file():  # same field names and types as the embedded sample the preference stage reads
        sample = json.loads(ASSET.read_text(encoding="utf-8").splitlines()[0])
        assert set(sample) <= set(first)
        for key, value in sample.items():
            if value is not None and first[key] is not None:
                assert type(first[key]) is type(value), key
        datetime.strptime(sample["created"], "%Y-%m-%dT%H:%M:%SZ")


def test_export_prompt_is_the_last_question_of_a_conversation(store):
    chat = [{"role": "system", "content": "你是医生。"}, {"role": "user", "content": "我头痛。"},
            {"role": "assistant", "content": "多久了？"}, {"role": "user", "content": "三天了，怎么办？"}]
    store.add_completion(**completion("chatcmpl-h", prompt=chat))
    store.add_feedback("chatcmpl-h", "acceptable")
    (record,) = store.iter_preferences()
    assert record["prompt"] == "三天了，怎么办？" and record["messages"] == chat
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert store.export_jsonl(io.StringIO(), since=future) == 0


def test_schema_creation_is_idempotent(store_url):
    a, b = FeedbackStore(store_url), FeedbackStore(store_url)
    a.add_completion(**completion("chatcmpl-g"))
    assert b.counts() == (1, 0)
    a.close()
    b.close()
