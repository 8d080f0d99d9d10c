"""Feedback store on SQLite and PostgreSQL: no lost rows under concurrency, dedup, 404, export,
de-identification, the review queue, retention (purge) and the append-only audit table."""

from __future__ import annotations

import io
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from medgo.serve.store import FeedbackStore, UnknownResponse, parse_age

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


PHI_PROMPT = "患者张伟，男，56岁，电话13812345678，住院号ZY20240518，身份证号11010519491231002X，头痛三天。"
PHI_VALUES = ("张伟", "13812345678", "ZY20240518", "11010519491231002X")


def phi_completion(rid: str, created: datetime) -> dict:
    return completion(rid, created=created, prompt=[{"role": "user", "content": PHI_PROMPT}], answer="请患者张伟拨打13812345678复诊。")


def stored_text(store: FeedbackStore) -> str:
    """Every completion's and feedback row's text, as the database holds it."""
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT prompt, answer FROM medgo_completions")).all()
        rows += conn.execute(text("SELECT corrected_answer, comment FROM medgo_feedback")).all()
    return json.dumps([[str(v) for v in row] for row in rows], ensure_ascii=False)


def audit_rows(store: FeedbackStore) -> list[dict]:
    return list(reversed(store.audit_log()))


def test_export_is_deidentified_unless_raw(store):
    store.add_completion(**phi_completion("chatcmpl-p", datetime.now(timezone.utc)))
    store.add_feedback("chatcmpl-p", "unacceptable", corrected_answer="患者张伟应复查，联系电话13812345678。", comment="患者张伟的住院号ZY20240518")
    clean, raw, counts = io.StringIO(), io.StringIO(), Counter()
    assert store.export_jsonl(clean, counts=counts) == 1 and store.export_jsonl(raw, raw=True) == 1
    assert not [v for v in PHI_VALUES if v in clean.getvalue()], clean.getvalue()
    assert all(v in raw.getvalue() for v in PHI_VALUES)
    assert counts == {"name": 4, "phone": 3, "record_number": 2, "id_card": 1}  # the prompt repeats the message: counted once
    record = json.loads(clean.getvalue())
    assert "[姓名]" in record["prompt"] and record["messages"][0]["content"] == record["prompt"]


def test_review_queue_lists_unjudged_completions_deidentified(store):
    now = datetime.now(timezone.utc)
    store.add_completion(**phi_completion("chatcmpl-old", now - timedelta(minutes=2)))
    store.add_completion(**phi_completion("chatcmpl-new", now))
    store.add_completion(**completion("chatcmpl-judged"))
    store.add_feedback("chatcmpl-judged", "acceptable")
    items, counts = store.review_queue(limit=10)
    assert [i["response_id"] for i in items] == ["chatcmpl-new", "chatcmpl-old"]
    assert not [v for v in PHI_VALUES if v in json.dumps(items, ensure_ascii=False)]
    assert counts["phone"] == 4 and items[0]["answer"] == "请患者[姓名]拨打[电话]复诊。"
    assert [i["response_id"] for i in store.review_queue(limit=1, offset=1)[0]] == ["chatcmpl-old"]


@pytest.mark.parametrize("mode", ["delete", "deidentify"])
def test_purge_removes_or_deidentifies_only_old_rows_and_is_audited(store, mode):
    now = datetime.now(timezone.utc)
    store.add_completion(**phi_completion("chatcmpl-old", now - timedelta(days=100)))
    store.add_completion(**phi_completion("chatcmpl-recent", now - timedelta(days=10)))
    store.add_feedback("chatcmpl-old", "unacceptable", corrected_answer="请患者张伟复诊。", comment="电话13812345678")
    store.add_feedback("chatcmpl-recent", "acceptable")
    args = {"older_than": "90d", "mode": mode}
    result = store.purge(now - parse_age("90d"), mode, actor="tester", source="test", arguments=args)
    assert (result["completions"], result["feedback"]) == (1, 1)
    remaining = [r["response_id"] for r in store.iter_preferences()]
    if mode == "delete":
        assert remaining == ["chatcmpl-recent"] and store.counts() == (1, 1)
    else:
        assert remaining == ["chatcmpl-old", "chatcmpl-recent"] and result["replaced"]["name"] >= 3
        old = next(r for r in store.iter_preferences() if r["response_id"] == "chatcmpl-old")
        assert not [v for v in PHI_VALUES if v in json.dumps(old, ensure_ascii=False)], old
        assert old["corrected_answer"] == "请患者[姓名]复诊。" and old["comment"] == "电话[电话]"
    recent = stored_text(store)
    assert "13812345678" in recent, "a completion younger than the cutoff keeps its text"
    (row,) = audit_rows(store)
    assert (row["actor"], row["source"], row["action"], row["arguments"], row["rows"]) == ("tester", "test", "purge", args, 1)
    assert row["detail"]["feedback"] == 1


def test_audit_rows_cannot_be_changed_or_deleted(store):
    store.audit("tester", "test", "export", {"since": None}, 3)
    store.purge(datetime.now(timezone.utc) - timedelta(days=1), "delete", actor="tester", source="test", arguments={})
    statements = ["DELETE FROM medgo_audit", "UPDATE medgo_audit SET rows = 0"]
    statements += ["TRUNCATE medgo_audit"] if store.engine.dialect.name == "postgresql" else []
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert [(r["action"], r["rows"]) for r in audit_rows(store)] == [("export", 3), ("purge", 0)]


@pytest.mark.parametrize("age, expected", [("90d", timedelta(days=90)), ("12w", timedelta(weeks=12)), ("48h", timedelta(hours=48))])
def test_parse_age(age, expected):
    assert parse_age(age) == expected


@pytest.mark.parametrize("age", ["0d", "90", "d", "-3d", "1.5d", "90days", "", "800000d", "999999w"])
def test_parse_age_names_the_forms(age):
    with pytest.raises(ValueError, match="48h, 90d, 12w"):
        parse_age(age)


def test_a_changed_verdict_is_a_new_row_that_supersedes_the_old(store):
    store.add_completion(**completion("chatcmpl-s"))
    first = store.add_feedback("chatcmpl-s", "acceptable", reviewer="dr-li")
    changed = store.add_feedback("chatcmpl-s", "unacceptable", corrected_answer="应避免浓咖啡。", reviewer="dr-li")
    repeated = store.add_feedback("chatcmpl-s", "unacceptable", corrected_answer="应避免浓咖啡。", reviewer="dr-li")
    back = store.add_feedback("chatcmpl-s", "acceptable", reviewer="dr-li")
    colleague = store.add_feedback("chatcmpl-s", "unacceptable", reviewer="dr-wang")
    assert (first.supersedes, changed.supersedes, back.supersedes, colleague.supersedes) == (None, first.id, changed.id, None)
    assert first.id < changed.id < back.id < colleague.id, "ids only grow: a watermark finds every new judgement"
    assert not repeated.created and repeated.id == changed.id, "repeating the current judgement stores nothing"
    assert back.created, "returning to an earlier verdict is a new judgement, not the old row"
    assert store.counts() == (1, 4), "old judgements stay (lineage), none is edited"
    current = {(r["reviewer"], r["verdict"]) for r in store.iter_preferences()}
    assert current == {("dr-li", "acceptable"), ("dr-wang", "unacceptable")}, "exports hold each reviewer's current judgement only"
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, verdict, corrected_answer, supersedes FROM medgo_feedback ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(first.id, "acceptable", None, None), (changed.id, "unacceptable", "应避免浓咖啡。", first.id),
                                        (back.id, "acceptable", None, changed.id), (colleague.id, "unacceptable", None, None)]


def test_concurrent_changes_by_one_reviewer_leave_one_current_judgement(store):
    store.add_completion(**completion("chatcmpl-r"))
    store.add_feedback("chatcmpl-r", "acceptable", reviewer="dr-zhao")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: store.add_feedback("chatcmpl-r", "unacceptable", comment=f"意见 {i}", reviewer="dr-zhao"), range(8)))
    (record,) = store.iter_preferences()
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, supersedes, comment FROM medgo_feedback ORDER BY id")).all()
    assert len(rows) == 9 and rows[0].supersedes is None and all(r.supersedes is not None and r.supersedes < r.id for r in rows[1:])
    assert record["comment"] == rows[-1].comment, "the newest judgement is the current one"


def test_a_feedback_table_from_before_superseding_gets_the_column(tmp_path):
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with create_engine(url).begin() as conn:  # the table as it was made before
        conn.execute(text("CREATE TABLE medgo_feedback (id INTEGER PRIMARY KEY, response_id VARCHAR(64), created DATETIME, verdict VARCHAR(16), "
                          "corrected_answer TEXT, comment TEXT, reviewer VARCHAR(256), digest VARCHAR(64) UNIQUE)"))
    store = FeedbackStore(url)
    store.add_completion(**completion("chatcmpl-m"))
    first = store.add_feedback("chatcmpl-m", "acceptable", reviewer="dr-li")
    assert store.add_feedback("chatcmpl-m", "unacceptable", reviewer="dr-li").supersedes == first.id


def test_review_queue_filters_by_model_and_names_the_models(store):
    store.add_completion(**completion("chatcmpl-base"))
    store.add_completion(**completion("chatcmpl-cardio", model="cardio", adapter="cardio", adapter_version="cardio@1"))
    store.add_completion(**completion("chatcmpl-done", model="derm", adapter="derm", adapter_version="derm@1"))
    store.add_feedback("chatcmpl-done", "acceptable")
    items, _ = store.review_queue(model="cardio")
    assert [(i["response_id"], i["adapter"], i["adapter_version"]) for i in items] == [("chatcmpl-cardio", "cardio", "cardio@1")]
    assert store.queue_models() == ["cardio", "medgo-tiny"], "only models with answers awaiting judgement"


def test_version_stats_count_current_judgements_with_a_wilson_interval(store):
    from medgo.serve.versions import version_stats

    for i in range(5):
        store.add_completion(**completion(f"chatcmpl-a{i}", model="cardio", adapter="cardio", adapter_version="cardio@1"))
    store.add_completion(**completion("chatcmpl-b0"))
    for i, verdict in enumerate(["acceptable", "acceptable", "acceptable", "unacceptable"]):
        store.add_feedback(f"chatcmpl-a{i}", verdict, reviewer="dr-li")
    store.add_feedback("chatcmpl-a3", "acceptable", reviewer="dr-li")  # supersedes the unacceptable one
    store.add_feedback("chatcmpl-a0", "unacceptable", reviewer="dr-wang")
    stats = {(s["model"], s["adapter_version"]): s for s in version_stats(store)}
    cardio, base = stats[("cardio", "cardio@1")], stats[("medgo-tiny", None)]
    assert (cardio["answers"], cardio["judgements"], cardio["acceptable"]) == (5, 5, 4)
    assert cardio["acceptance_rate"] == pytest.approx(0.8)
    # Wilson 95%, 4 of 5: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.959964
    assert cardio["interval_95"] == pytest.approx((0.37553, 0.96378), abs=1e-4)
    assert (base["answers"], base["judgements"], base["acceptance_rate"], base["interval_95"]) == (1, 0, None, None)
