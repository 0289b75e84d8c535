"""The dependency direction is one way: server -> embeddings_store -> model (DESIGN §2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"model": {"server", "embeddings_store"}, "embeddings_store": {"server"}}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_layers(package):
    files = list((ROOT / package).rglob("*.py"))
    assert files or package == "embeddings_store"
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported_top_levels(f) & FORBIDDEN[package]) for f in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def public_definitions(body: list[ast.stmt]):
    """Module-level functions and classes, and the methods of those classes."""
    for node in body:
        is_def = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        if is_def and not node.name.startswith("_"):
            yield node
            if isinstance(node, ast.ClassDef):
                yield from public_definitions(node.body)


def test_every_public_function_has_a_docstring():
    missing = []
    for package in ("model", "embeddings_store", "server"):
        for f in (ROOT / package).rglob("*.py"):
            for node in public_definitions(ast.parse(f.read_text()).body):
                if ast.get_docstring(node) is None:
                    missing.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert missing == []
