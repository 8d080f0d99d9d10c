"""A flywheel round on a store with planted feedback: lineage, hold-back, gate decision, registry, early stop.

One real round (tiny DPO, two optimizer steps; small gate samples) serves every test of the module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgo.assets import asset_path
from medgo.config import load_config
from medgo.flywheel.config import FlywheelConfig, GateRules
from medgo.flywheel.gate import decide
from medgo.flywheel.judgements import plant
from medgo.flywheel.registry import Registry, adapter_hash
from medgo.flywheel.round import run
from medgo.serve.store import FeedbackStore

SAMPLE = [json.loads(line) for line in asset_path("feedback", "feedback.jsonl").read_text(encoding="utf-8").splitlines()]
PHONE = "13812345678"
LENIENT = {"max_drop": {"clinicalqa_accuracy": 100.0, "cblue_mean": 100.0, "refusal_rate": 100.0}, "minimum": {"preference_accuracy": 0.0}}
IMPOSSIBLE = {"max_drop": {"clinicalqa_accuracy": -100.1}, "minimum": {"preference_accuracy": 100.1}}


def config(tmp: Path, url: str, rules: dict) -> FlywheelConfig:
    return load_config(FlywheelConfig, "jobs/configs/flywheel/tiny.yaml", [
        f"database_url={url}", "database_url_env=null", f"output_dir={tmp}",
        "training.overrides=[train.max_steps=2, ray.num_workers=1, train.per_device_train_batch_size=4]",
        "gate.clinicalqa.max_samples=4", "gate.cblue.tasks=[CHIP-CTC]", "gate.cblue.max_samples=4",
        "gate.safety.max_samples=6", "gate.safety.max_new_tokens=8", "gate.max_new_tokens=8",
        f"gate.rules={json.dumps(rules)}", "control.publish=false",
    ])  # fmt: skip


@pytest.fixture(scope="module")
def round_one(tmp_path_factory, ray_session):
    tmp = tmp_path_factory.mktemp("flywheel")
    url = f"sqlite:///{tmp / 'serve.db'}"
    store = FeedbackStore(url)
    old = plant(store, SAMPLE[:8], "old")
    Registry(url).register(model="medgo-tiny", parent=None, base_model="tiny", base_fingerprint="tiny@test", adapter_dir=None, adapter_hash=None,
                           method="dpo", train_config={}, feedback={"watermark": max(old), "count": len(old), "ids": old, "sha256": ""},
                           gate=None, reasons=["an earlier round"], status="retired", actor="test")  # fmt: skip
    records = [dict(r) for r in SAMPLE]
    records[0]["prompt"] = f"我的电话是{PHONE}，{records[0]['prompt']}"
    new = plant(store, records, "new")
    store.close()
    report = run(config(tmp, url, LENIENT))
    return {"url": url, "tmp": tmp, "old": old, "new": new, "report": report}


def test_the_candidate_names_exactly_the_new_rows(round_one):
    report, registry = round_one["report"], Registry(round_one["url"])
    version = registry.get(report["candidate"])
    new = round_one["new"]
    assert version["feedback"]["ids"] == new and version["feedback"]["count"] == len(new) == 64
    assert version["feedback"]["watermark"] == max(new) and registry.watermark("medgo-tiny") == max(new)
    lines = [json.loads(x) for x in (Path(report["training"]["run_dir"]).parents[1] / "feedback.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["feedback_id"] for r in lines] == new
    import hashlib

    raw = (Path(report["training"]["run_dir"]).parents[1] / "feedback.jsonl").read_bytes()
    assert version["feedback"]["file_sha256"] == hashlib.sha256(raw).hexdigest()
    assert PHONE not in raw.decode() and "[电话]" in raw.decode()


def test_the_candidate_is_registered_as_a_canary_of_production(round_one):
    report, registry = round_one["report"], Registry(round_one["url"])
    version = registry.get(report["candidate"])
    production = registry.live("medgo-tiny")["production"]
    assert report["decision"] == "canary" and version["status"] == "canary" and version["parent"] == production["version"]
    assert version["method"] == report["method"] and version["train_config"]["train"]["max_steps"] == 2
    adapter = Path(version["adapter_dir"])
    assert (adapter / "adapter_config.json").is_file() and version["adapter_hash"] == adapter_hash(adapter)
    assert version["gate"]["candidate"].keys() == version["gate"]["production"].keys()
    assert [r.split()[0] for r in version["reasons"][:4]] == ["ok"] * 4 and version["reasons"][:4] == report["reasons"]


def test_held_back_pairs_are_not_trained_on(round_one):
    report = round_one["report"]
    counts = report["judgements"]
    assert counts["read"] == 64 and counts["held_back_pairs"] >= 1
    assert counts["train_judgements"] + counts["held_back_judgements"] == counts["current"]
    folder = Path(report["training"]["run_dir"]).parents[1]
    held = {json.loads(x)["response_id"] for x in (folder / "holdout.jsonl").read_text(encoding="utf-8").splitlines()}
    trained = {json.loads(x)["response_id"] for x in (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()}
    assert held and not held & trained
    used = report["used_by_method"]  # the sample has unpaired judgements: auto chooses KTO, which uses every one
    assert report["method"] == "kto" and used["kto"] == counts["train_judgements"] and used["unused"] == 0 and used["unpaired"] > 0
    pref = report["gate_details"]["candidate"]["preference"]
    assert pref["pairs"] == counts["held_back_pairs"] and pref["wins"] + pref["ties"] + pref["losses"] == pref["pairs"]


def test_an_impossible_gate_rejects_and_a_lenient_one_accepts(round_one):
    gate = round_one["report"]["gate"]
    for metrics in gate.values():
        assert all(v is not None and 0 <= v <= 100 for v in metrics.values()), metrics
    passed, reasons = decide(gate["candidate"], gate["production"], GateRules(**IMPOSSIBLE))
    assert not passed and [r.split()[0] for r in reasons] == ["FAIL", "FAIL"]
    assert decide(gate["candidate"], gate["production"], GateRules(**LENIENT))[0]


def test_a_round_without_enough_new_judgements_stops_early(round_one):
    before = Registry(round_one["url"]).versions("medgo-tiny")
    report = run(config(round_one["tmp"], round_one["url"], LENIENT))
    assert "fewer than min_judgements 20" in report["stopped"] and report["judgements"]["read"] == 0
    assert Registry(round_one["url"]).versions("medgo-tiny") == before
