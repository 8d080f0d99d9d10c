"""Model registry, its audit rows and the auto-rollback rule on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from medgo.flywheel.control import check, export_acceptance, promote, set_share
from medgo.flywheel.registry import Registry, RegistryError, adapter_hash, feedback_lineage
from medgo.flywheel.stats import Acceptance, AutoRollbackConfig, acceptance, worse_p_value
from medgo.serve.store import FeedbackStore
from tests.serve.test_serve_store import completion

MODEL = "medgo-tiny"


@pytest.fixture
def registry(store_url):
    reg = Registry(store_url)
    yield reg
    reg.close()


def candidate(reg: Registry, parent: str, status: str = "canary", ids=(3, 1, 2), **over) -> dict:
    fields = dict(model=MODEL, parent=parent, base_model="tiny", base_fingerprint="tiny@abc", adapter_dir=None, adapter_hash=None, method="dpo",
                  train_config={"train": {"lr": 1e-4}}, feedback=feedback_lineage(list(ids)), gate={"preference_accuracy": 62.5}, reasons=["gate passed"],
                  status=status, actor="round")
    return reg.register(**{**fields, **over})


def test_versions_lineage_and_status_changes_are_audited(registry):
    prod = registry.ensure_production(model=MODEL, base_model="tiny", base_fingerprint="tiny@abc", adapter_dir=None, actor="ops")
    assert registry.ensure_production(model=MODEL, base_model="tiny", base_fingerprint="tiny@abc", adapter_dir=None, actor="ops")["version"] == prod["version"]
    assert (prod["version"], prod["status"], prod["parent"]) == ("medgo-tiny-r0000", "production", None)
    c1 = candidate(registry, prod["version"], ids=(7, 5, 6))
    assert c1["version"] == "medgo-tiny-r0001" and c1["canary_share"] == 0.1
    assert c1["feedback"]["ids"] == [5, 6, 7] and c1["feedback"]["watermark"] == 7 and c1["feedback"]["count"] == 3
    assert registry.watermark(MODEL) == 7 and registry.watermark("other") == 0
    rejected = candidate(registry, c1["version"], status="rejected", ids=(9,), reasons=["refusal rate fell 8 points"])
    assert registry.watermark(MODEL) == 9 and rejected["status"] == "rejected"

    set_share(registry, MODEL, 0.3, actor="dr-wang", reason="more traffic")
    assert registry.live(MODEL)["canary_share"] == 0.3
    promote(registry, c1["version"], actor="dr-wang", reason="acceptance up")
    live = registry.live(MODEL)
    assert live["production"]["version"] == c1["version"] and live["canary"] is None and live["canary_share"] == 0.0
    assert registry.get(prod["version"])["status"] == "retired"

    after = registry.rollback(c1["version"], actor="dr-li", reason="wrong dosages", source="medgo flywheel rollback")
    assert after["production"]["version"] == prod["version"] and registry.get(c1["version"])["status"] == "rejected"
    assert [v["version"] for v in registry.versions(MODEL)] == ["medgo-tiny-r0002", "medgo-tiny-r0001", "medgo-tiny-r0000"]

    log = registry.store.audit_log(100)
    moves = [(r["action"], r["arguments"].get("version"), r["actor"]) for r in reversed(log) if r["action"] != "flywheel register"]
    assert moves == [
        ("flywheel production", "medgo-tiny-r0000", "ops"), ("flywheel canary", "medgo-tiny-r0001", "round"), ("flywheel rejected", "medgo-tiny-r0002", "round"),
        ("flywheel canary", "medgo-tiny-r0001", "dr-wang"), ("flywheel retired", "medgo-tiny-r0000", "dr-wang"), ("flywheel production", "medgo-tiny-r0001", "dr-wang"),
        ("flywheel rejected", "medgo-tiny-r0001", "dr-li"), ("flywheel production", "medgo-tiny-r0000", "dr-li"),
    ]
    assert sum(r["action"] == "flywheel register" for r in log) == 3
    with registry.engine.begin() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("DELETE FROM medgo_audit WHERE action = 'flywheel production'"))


def test_forbidden_changes_are_refused(registry):
    prod = registry.ensure_production(model=MODEL, base_model="tiny", base_fingerprint="tiny@abc", adapter_dir=None, actor="ops")
    with pytest.raises(RegistryError, match="no parent"):
        registry.rollback(prod["version"], actor="x", reason="", source="t")
    with pytest.raises(RegistryError, match="is not registered"):
        candidate(registry, "medgo-tiny-r0042")
    with pytest.raises(RegistryError, match="status must be one of"):
        candidate(registry, prod["version"], status="live")
    rejected = candidate(registry, prod["version"], status="rejected")
    with pytest.raises(RegistryError, match="only a canary or a retired"):
        promote(registry, rejected["version"], actor="x", reason="")
    with pytest.raises(RegistryError, match="has no canary"):
        set_share(registry, MODEL, 0.5, actor="x", reason="")
    assert registry.live(MODEL)["production"]["version"] == prod["version"]


def test_adapter_hash_covers_every_file(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x00\x01")
    first = adapter_hash(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x00\x02")
    assert adapter_hash(tmp_path) != first and len(first) == 64


def plant(store: FeedbackStore, version: str, accepted: int, rejected: int) -> None:
    """``accepted + rejected`` answers by ``version``, each judged once."""
    for i in range(accepted + rejected):
        rid = f"chatcmpl-{version}-{i}"
        store.add_completion(**completion(rid, adapter=version, adapter_version="h"))
        store.add_feedback(rid, "acceptable" if i < accepted else "unacceptable", reviewer="dr-sim")
    store.add_completion(**completion(f"chatcmpl-{version}-unjudged", adapter=version))


@pytest.mark.parametrize(("canary_accepts", "fires"), [(40, True), (80, False)])
def test_auto_rollback_fires_on_a_worse_canary_only(registry, canary_accepts, fires):
    prod = registry.ensure_production(model=MODEL, base_model="tiny", base_fingerprint="tiny@abc", adapter_dir=None, actor="ops")
    canary = candidate(registry, prod["version"])
    plant(registry.store, prod["version"], 80, 20)
    plant(registry.store, canary["version"], canary_accepts, 100 - canary_accepts)
    stats = acceptance(registry.engine, [prod["version"], canary["version"]])
    assert stats[prod["version"]] == Acceptance(prod["version"], 101, 100, 80)
    assert stats[canary["version"]].judgements == 100 and stats[canary["version"]].rate == canary_accepts / 100
    low, high = stats[prod["version"]].interval()
    assert low < 0.8 < high and high - low < 0.2

    assert check(registry, MODEL, AutoRollbackConfig(min_judgements=101))["rolled_back"] is None  # too few judgements yet
    result = check(registry, MODEL, AutoRollbackConfig(alpha=0.05, min_judgements=50))
    assert (result["rolled_back"] == canary["version"]) is fires, result
    assert registry.get(canary["version"])["status"] == ("rejected" if fires else "canary")
    assert any(r["actor"] == "auto-rollback" for r in registry.store.audit_log()) is fires


def test_two_proportion_test_on_hand_computed_cases():
    prod = Acceptance("p", 0, 100, 80)
    assert worse_p_value(Acceptance("c", 0, 100, 80), prod) == pytest.approx(0.5)
    # pooled p = 0.6, se = sqrt(0.6*0.4*0.02) = 0.069282; z = -0.4/0.069282 = -5.7735
    assert worse_p_value(Acceptance("c", 0, 100, 40), prod) == pytest.approx(3.88e-9, rel=0.01)
    assert worse_p_value(Acceptance("c", 0, 0, 0), prod) is None


class FakeGauge:
    def __init__(self):
        self.values = {}

    def set(self, model, stats, status):
        self.values = {v: (a.rate, status[v]) for v, a in stats.items()}
        return {v: a.rate for v, a in stats.items()}


def test_acceptance_metric_per_live_version(registry):
    prod = registry.ensure_production(model=MODEL, base_model="tiny", base_fingerprint="tiny@abc", adapter_dir=None, actor="ops")
    canary = candidate(registry, prod["version"])
    plant(registry.store, prod["version"], 3, 1)
    plant(registry.store, canary["version"], 1, 1)
    gauge = FakeGauge()
    assert export_acceptance(registry, MODEL, gauge) == {prod["version"]: 0.75, canary["version"]: 0.5}
    assert gauge.values == {prod["version"]: (0.75, "production"), canary["version"]: (0.5, "canary")}


def test_a_changed_verdict_counts_once_and_version_stats_name_the_registry_status(registry):
    from medgo.serve.versions import version_stats

    prod = registry.ensure_production(model=MODEL, base_model="tiny", base_fingerprint="tiny@abc", adapter_dir=None, actor="ops")
    canary = candidate(registry, prod["version"])
    plant(registry.store, canary["version"], 2, 1)
    registry.store.add_feedback(f"chatcmpl-{canary['version']}-0", "unacceptable", reviewer="dr-sim")  # dr-sim changes a verdict
    stats = acceptance(registry.engine, [canary["version"]])[canary["version"]]
    assert (stats.judgements, stats.accepted) == (3, 1)
    [row] = [r for r in version_stats(registry.store) if r["adapter"] == canary["version"] and r["adapter_version"] == "h"]
    assert (row["status"], row["parent"], row["judgements"], row["acceptable"], row["answers"]) == ("canary", prod["version"], 3, 1, 3)
    registry.store.add_completion(**completion("chatcmpl-plain", adapter=None, adapter_version=None))
    assert [r["status"] for r in version_stats(registry.store) if r["adapter"] is None] == [None]


def test_status_of_an_empty_registry_says_how_to_start(registry):
    from medgo.flywheel.cli import Target, status_lines, status_rows
    from medgo.flywheel.control import ControlConfig

    assert status_lines(status_rows(registry, Target("unused", MODEL, ControlConfig()))) == [
        f"{MODEL}: no live version in the registry (medgo flywheel init registers the model served now)"]
