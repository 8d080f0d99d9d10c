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


def test_export_cli_writes_jsonl(tmp_path):
    from medgo.serve.store import FeedbackStore

    url = f"sqlite:///{tmp_path / 'fb.db'}"
    store = FeedbackStore(url)
    store.add_completion(id="chatcmpl-x", endpoint="chat", model="medgo-tiny", base_version="tiny@1", adapter=None, adapter_version=None,
                         prompt=[{"role": "user", "content": "头晕"}], answer="注意休息", params={}, finish_reason="stop",
                         prompt_tokens=5, completion_tokens=3, latency_s=0.1)
    store.add_feedback("chatcmpl-x", "acceptable", reviewer="dr-a")
    store.close()
    out = tmp_path / "out" / "feedback.jsonl"
    assert main(["serve", "export", "--database", url, "--output", str(out)]) == 0
    assert [json.loads(line)["response_id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["chatcmpl-x"]
