"""The import picture runs one way: corpus -> train -> eval -> serve, shared formats and the model below.

Read statically with ``ast`` over the source files (every ``import`` and ``from ... import``,
top level or inside a function), so the check is fast and names the file and line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medgo"

FORBIDDEN = {
    "data": ("medgo.corpus", "medgo.train", "medgo.eval", "medgo.serve"),
    "model": ("medgo.corpus", "medgo.train", "medgo.eval", "medgo.serve"),
    "corpus": ("medgo.train", "medgo.eval", "medgo.serve"),
    "train": ("medgo.eval", "medgo.serve"),
}
"""Package under ``medgo/`` -> the packages its modules must not import."""


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in a source file (``from . import x`` resolved against ``path``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, _absolute(path, node)))
    return out


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)[: -node.level]
    return ".".join(parts + ([node.module] if node.module else []))


def violations(package: str) -> list[str]:
    banned = FORBIDDEN[package]
    return [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for line, module in imported_modules(path)
        if any(module == b or module.startswith(b + ".") for b in banned)
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(package):
    assert violations(package) == []


def test_the_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    pkg = tmp_path / "medgo" / "train"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text("def f():\n    from medgo.eval.metrics import parse\n    from ..serve import store\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "medgo")
    assert violations("train") == ["medgo/train/bad.py:2 imports medgo.eval.metrics", "medgo/train/bad.py:3 imports medgo.serve"]
