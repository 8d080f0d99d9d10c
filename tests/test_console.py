"""The terminal of a long command: a bar and a summary per stage, the rest in the log; --verbose shows all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

from medgo import console

ROOT = Path(__file__).resolve().parents[1]
NOISY_STAGE = """
import os, subprocess, sys, warnings
from pathlib import Path
from medgo import console
with console.Console(Path(sys.argv[1])) as con:
    with con.stage("demo"):
        print("python print")
        subprocess.run(["sh", "-c", "echo child stdout; echo child stderr >&2"])
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("our own warning", FutureWarning)
        for i in range(4):
            console.progress(i + 1, 4)
        console.summary("demo: 4 of 4 done")
print("after the console")
"""


def env(**extra: str) -> dict:
    out = {k: v for k, v in os.environ.items() if k != console.VERBOSE_ENV}
    return {**out, **extra}


def test_terminal_gets_the_bar_and_summary_and_the_log_everything_else(tmp_path):
    log = tmp_path / "logs" / "demo.log"
    proc = subprocess.run([sys.executable, "-c", NOISY_STAGE, str(log)], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"log: {log}"
    assert re.fullmatch(r"demo\s+100%\|#+\| 4/4 \[00:0\d\]", lines[1]), lines[1]
    assert lines[2:] == ["demo: 4 of 4 done", "after the console"]
    assert proc.stderr == ""
    logged = log.read_text()
    for text in ("python print", "child stdout", "child stderr", "our own warning"):
        assert text in logged
    assert "is_gradient_checkpointing" not in logged, "a known library warning is filtered"


def test_verbose_shows_everything_and_writes_no_log(tmp_path):
    log = tmp_path / "demo.log"
    script = NOISY_STAGE.replace("console.Console(Path(sys.argv[1]))", "console.Console(None if console.verbose() else Path(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True, env=env(MEDGO_VERBOSE="1"), cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not log.exists()
    for text in ("python print", "child stdout", "demo: 4 of 4 done", "after the console"):
        assert text in proc.stdout
    assert "child stderr" in proc.stderr and "is_gradient_checkpointing" in proc.stderr


def test_library_warnings_are_filtered_by_category_and_message(monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        console.quiet_library_warnings()
        warnings.warn("`torch.distributed.all_gather_into_tensor` is deprecated. Please use ...", FutureWarning)
        warnings.warn("`torch.distributed.all_gather_into_tensor` is deprecated. Please use ...", UserWarning)  # other category
        warnings.warn("`past_key_values` is deprecated", FutureWarning)  # not a library's own call: never filtered
    assert [(w.category, str(w.message)[:40]) for w in seen] == [
        (UserWarning, "`torch.distributed.all_gather_into_tenso"),
        (FutureWarning, "`past_key_values` is deprecated"),
    ]


def test_medgo_command_prints_its_log_path_bar_and_reply(tmp_path):
    cmd = [sys.executable, "-m", "medgo.cli", "generate", "--config", "jobs/configs/generate/tiny.yaml", "--set", f"output_dir={tmp_path}", "--set", "max_new_tokens=4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    log = Path(lines[0].removeprefix("log: "))
    assert lines[0].startswith("log: ") and log.parent == tmp_path / "logs" and log.is_file()
    assert lines[1].startswith("generate") and "1/1" in lines[1]
    assert lines[2].startswith("用户: ") and lines[3].startswith("模型: ") and len(lines) == 4
    assert proc.stderr == ""


QUIET_BLOCK = """
import sys
from pathlib import Path
from medgo import console
with console.quietly("bench", Path(sys.argv[1])):
    print("measuring")
print("result: 1.5x")
"""


def test_quietly_puts_a_block_behind_one_bar_and_verbose_shows_it(tmp_path):
    proc = subprocess.run([sys.executable, "-c", QUIET_BLOCK, str(tmp_path)], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    log = Path(lines[0].removeprefix("log: "))
    assert log.parent == tmp_path / "logs" and log.name.startswith("bench-")
    assert re.fullmatch(r"bench\s+100%\|#+\| 1/1 \[00:0\d\]", lines[1]), lines[1]
    assert lines[2:] == ["result: 1.5x"]
    assert log.read_text() == "measuring\n"

    proc = subprocess.run([sys.executable, "-c", QUIET_BLOCK, str(tmp_path / "v")], capture_output=True, text=True, env=env(MEDGO_VERBOSE="1"), cwd=ROOT, timeout=120)
    assert proc.stdout.splitlines() == ["measuring", "result: 1.5x"]
    assert not (tmp_path / "v").exists()
