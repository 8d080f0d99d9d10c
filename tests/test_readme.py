"""The README's commands are real: every `medgo ...` line parses, every file it names exists,
and CI runs the test command the README gives."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from medgo.cli import build_parser
from medgo.config import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
MEDGO_COMMANDS = sorted(set(re.findall(r"`(medgo [^`]+)`", README)))


def test_two_commands_at_the_top():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    assert re.search(r"^make quickstart", first_block, re.M) and re.search(r"^make test", first_block, re.M)
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("install", "quickstart", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile lacks target {target}"
    assert re.search(r"^make test$", (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.M)


@pytest.mark.parametrize("command", MEDGO_COMMANDS)
def test_readme_medgo_command_parses(command):
    argv = shlex.split(command)[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, value in zip(argv, argv[1:]):
        if flag == "--config":
            assert (REPO_ROOT / value).is_file(), f"README names a missing config: {value}"
    assert args.command_name
