"""Every shipped YAML loads into its stage's config; bad keys are rejected by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgo.cli import COMMANDS, _resolve, main
from medgo.config import CONFIG_ROOT, ConfigError, apply_overrides, load_config
from medgo.generate import GenerateConfig

STAGE_OF_DIR = {cmd.configs: cmd for cmd in COMMANDS.values() if cmd.configs}
YAMLS = sorted(CONFIG_ROOT.rglob("*.yaml"))


def test_configs_exist():
    assert YAMLS, "no shipped configs found"


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(CONFIG_ROOT)))
def test_every_shipped_yaml_loads(path: Path):
    stage = path.parent.name
    assert stage in STAGE_OF_DIR, f"{path}: no command reads configs from jobs/configs/{stage}/"
    cfg = load_config(_resolve(STAGE_OF_DIR[stage].config), path)
    assert cfg.run_name
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and ("medgo " in first or "python jobs/" in first), f"{path} must open with the command that runs it"
    assert path.name in first, f"{path}: the opening command must name this file"


def test_unknown_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  base_model: tiny\n  tiny:\n    hiden_size: 32\nmax_new_tokens: 8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key 'model\.tiny\.hiden_size'"):
        load_config(GenerateConfig, bad)


def test_mistyped_value_is_named():
    with pytest.raises(ConfigError, match=r"key 'max_new_tokens'"):
        load_config(GenerateConfig, None, ["max_new_tokens=lots"])
    with pytest.raises(ConfigError, match=r"key 'max_new_tokens'"):
        load_config(GenerateConfig, None, ["max_new_tokens=0"])


def test_overrides_are_typed_and_nested():
    cfg = load_config(GenerateConfig, None, ["model.tiny.hidden_size=32", "temperature=0", "prompt=你好"])
    assert cfg.model.tiny.hidden_size == 32 and cfg.temperature == 0.0 and cfg.prompt == "你好"
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"prompt": "x"}, ["prompt.a=1"])
    data = apply_overrides({"models": [{"name": "a"}, {"name": "b"}]}, ["models.1.name=c"])
    assert data["models"][1]["name"] == "c"
    with pytest.raises(ConfigError, match="not an item of the list"):
        apply_overrides({"models": [{"name": "a"}]}, ["models.3.name=c"])
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["noequals"])


def test_cli_rejects_unknown_key_with_exit_2(capsys):
    assert main(["generate", "--set", "model.base_modle=tiny"]) == 2
    assert "unknown key 'model.base_modle'" in capsys.readouterr().err


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(GenerateConfig, tmp_path / "nope.yaml")


def test_cli_names_a_missing_model_directory_with_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MEDGO_DEBUG", raising=False)
    missing = tmp_path / "no-such-model"
    assert main(["generate", "--set", f"model.base_model={missing}"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err
