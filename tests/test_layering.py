"""The dependency direction is one way: server -> embeddings_store -> model
(docs/ARCHITECTURE.md, "Layers"), and no module imports itself back through others."""

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


def project_imports() -> dict[str, set[str]]:
    """module -> project modules it imports (at module level or inside functions)."""
    modules = {}
    for package in ("model", "embeddings_store", "server"):
        for f in (ROOT / package).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = f
    graph: dict[str, set[str]] = {}
    for name, f in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def test_no_import_cycles():
    graph = project_imports()
    assert len(graph) > 60
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
