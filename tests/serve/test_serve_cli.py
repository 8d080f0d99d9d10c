"""Serve configs and ``medgo serve``: shipped configs validate; bad ones are named before Ray starts."""

from __future__ import annotations

import json

import pytest
import yaml

from medgo.cli import main
from medgo.config import REPO_ROOT, ConfigError
from medgo.serve.app import build_app
from medgo.serve.cli import load_serve_config

CONFIGS = sorted((REPO_ROOT / "serve_configs").glob("*.yaml"))


def test_serve_configs_are_shipped():
    assert {p.name for p in CONFIGS} >= {"local.yaml", "qwen2_72b.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_serve_config_validates(path):
    raw, settings = load_serve_config(path, check_paths=False)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# serve ") and path.name in first, "a serve config opens with the command that runs it"
    deployments = {d["name"]: d for d in raw["applications"][0]["deployments"]}
    model = deployments["MedGoModel"]
    assert {"autoscaling_config", "max_ongoing_requests", "max_queued_requests", "ray_actor_options"} <= set(model)
    assert model["autoscaling_config"]["min_replicas"] <= model["autoscaling_config"]["max_replicas"]
    assert settings[0].served_model_name


def test_production_config_targets_gpus_and_postgres():
    raw, (settings,) = load_serve_config(REPO_ROOT / "serve_configs" / "qwen2_72b.yaml", check_paths=False)
    model = next(d for d in raw["applications"][0]["deployments"] if d["name"] == "MedGoModel")
    assert model["ray_actor_options"]["num_gpus"] >= 1 and settings.device == "cuda"
    assert settings.database_url.startswith("postgresql") and settings.api_key_file


def test_check_local_config(capsys):
    assert main(["serve", str(REPO_ROOT / "serve_configs" / "local.yaml"), "--check"]) == 0
    assert "ok" in capsys.readouterr().out


def test_bad_key_is_named_before_anything_starts(tmp_path, capsys):
    config = yaml.safe_load((REPO_ROOT / "serve_configs" / "local.yaml").read_text(encoding="utf-8"))
    config["applications"][0]["args"]["max_batch_sise"] = 8
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["serve", str(bad)]) == 2
    assert "unknown key 'max_batch_sise'" in capsys.readouterr().err


def test_missing_adapter_dir_is_named(tmp_path):
    config = yaml.safe_load((REPO_ROOT / "serve_configs" / "local.yaml").read_text(encoding="utf-8"))
    config["applications"][0]["args"]["adapters"] = {"cardio": str(tmp_path / "missing")}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ConfigError, match="adapter 'cardio'"):
        load_serve_config(bad)


def test_builder_rejects_bad_args_by_name():
    with pytest.raises(ConfigError, match="key 'max_batch_size'"):
        build_app({"max_batch_size": 0})
    with pytest.raises(ConfigError, match="clashes"):
        build_app({"served_model_name": "a", "adapters": {"a": "/x"}})


def seed(url: str, created=None) -> None:
    from medgo.serve.store import FeedbackStore

    store = FeedbackStore(url)
    store.add_completion(id="chatcmpl-x", endpoint="chat", model="medgo-tiny", base_version="tiny@1", adapter=None, adapter_version=None,
                         prompt=[{"role": "user", "content": "患者张伟头晕，电话13812345678"}], answer="注意休息", params={}, finish_reason="stop",
                         prompt_tokens=5, completion_tokens=3, latency_s=0.1, **({"created": created} if created else {}))
    store.add_feedback("chatcmpl-x", "acceptable", reviewer="dr-a")
    store.close()


def audit(url: str) -> list[dict]:
    from medgo.serve.store import FeedbackStore

    store = FeedbackStore(url, create=False)
    try:
        return list(reversed(store.audit_log()))
    finally:
        store.close()


def test_export_cli_writes_deidentified_jsonl_and_an_audit_row(store_url, tmp_path, capsys):
    import getpass

    seed(store_url)
    out = tmp_path / "out" / "feedback.jsonl"
    assert main(["serve", "export", "--database", store_url, "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["response_id"] for r in records] == ["chatcmpl-x"] and records[0]["prompt"] == "患者[姓名]头晕，电话[电话]"
    assert "identifiers replaced: name 1, phone 1" in capsys.readouterr().out
    assert main(["serve", "export", "--database", store_url, "--output", str(out), "--raw-unsafe"]) == 0
    assert "张伟" in out.read_text(encoding="utf-8") and "NOT de-identified" in capsys.readouterr().err
    rows = [(r["actor"], r["source"], r["action"], r["rows"], r["arguments"]["raw_unsafe"]) for r in audit(store_url)]
    user = getpass.getuser()
    assert rows == [(user, "medgo serve export", "export", 1, False), (user, "medgo serve export", "export", 1, True)]


@pytest.mark.parametrize("mode", ["delete", "deidentify"])
def test_purge_cli_applies_retention_and_is_audited(store_url, mode, capsys):
    from datetime import datetime, timedelta, timezone

    from medgo.serve.store import FeedbackStore

    seed(store_url, created=datetime.now(timezone.utc) - timedelta(days=120))
    assert main(["serve", "purge", "--database", store_url, "--older-than", "150d", "--mode", mode]) == 0
    assert main(["serve", "purge", "--database", store_url, "--older-than", "90d", "--mode", mode]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert " 0 completions and 0 feedback rows" in printed[0]
    assert " 1 completions and 1 feedback rows" in printed[1]
    store = FeedbackStore(store_url, create=False)
    left = list(store.iter_preferences())
    store.close()
    if mode == "delete":
        assert left == []
    else:
        assert [r["prompt"] for r in left] == ["患者[姓名]头晕，电话[电话]"] and "phone" in printed[1]
    rows = [(r["source"], r["action"], r["arguments"]["older_than"], r["arguments"]["mode"], r["rows"]) for r in audit(store_url)]
    assert rows == [("medgo serve purge", "purge", "150d", mode, 0), ("medgo serve purge", "purge", "90d", mode, 1)]


def test_purge_cli_names_a_bad_age(tmp_path, capsys):
    assert main(["serve", "purge", "--database", f"sqlite:///{tmp_path / 'fb.db'}", "--older-than", "3 months"]) == 2
    assert "--older-than: age '3 months' must be" in capsys.readouterr().err


def test_keys_cli_stores_only_hashes(tmp_path, capsys):
    import hashlib

    path = tmp_path / "secrets" / "api_keys"
    assert main(["serve", "keys", "--key-file", str(path), "add", "frontend", "--scopes", "chat"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["serve", "keys", "--key-file", str(path), "add", "dr-wang", "--scopes", "review,feedback"]) == 0
    capsys.readouterr()
    content = path.read_text(encoding="utf-8")
    assert key.startswith("medgo-") and len(key) > 40 and key not in content
    assert f"frontend chat sha256:{hashlib.sha256(key.encode()).hexdigest()}" in content.splitlines()
    assert "dr-wang feedback,review sha256:" in content and oct(path.stat().st_mode & 0o777) == "0o600"
    assert main(["serve", "keys", "--key-file", str(path), "list"]) == 0
    listed = capsys.readouterr().out
    assert "frontend\tchat\t" in listed and "dr-wang\tfeedback,review\t" in listed and key not in listed
    assert main(["serve", "keys", "--key-file", str(path), "revoke", "frontend"]) == 0
    assert "frontend" not in path.read_text(encoding="utf-8") and "dr-wang" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("argv, message", [
    (["add", "ops", "--scopes", "chat,root"], "unknown or missing scope root"),
    (["add", "env-3", "--scopes", "chat"], "not start with 'env-'"),
    (["revoke", "nobody"], "no key named 'nobody'"),
])
def test_keys_cli_errors_are_named(tmp_path, capsys, argv, message):
    path = tmp_path / "api_keys"
    path.write_text("", encoding="utf-8")
    assert main(["serve", "keys", "--key-file", str(path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_keys_cli_takes_the_key_file_from_the_config(capsys):
    assert main(["serve", "keys", "--config", "serve_configs/local.yaml", "list"]) == 2
    assert "sets no api_key_file: pass --key-file" in capsys.readouterr().err
