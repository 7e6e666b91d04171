"""The layers of the house import downward only: no module of flashc imports itself in a circle.

Every import counts, wherever it stands: module level, inside a function, under
``TYPE_CHECKING``. A lazy import hides a circle from Python but not from a
reader, so it is a circle here too. An edge goes to the module named
(``from flashc.build.values import X`` -> ``flashc.build.values``); the parent
packages' ``__init__`` files that Python runs first are not counted, because a
package face re-exports its modules and so necessarily sits above them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "flashc"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The flashc modules ``name`` imports, anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    graph = _graph()
    assert "flashc.build.entry" in graph["flashc.build"]
    assert "flashc.build.train" in graph["flashc.build.entry"]
    assert "flashc.ops.base" in graph["flashc.build.values"]


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_ir_does_not_import_the_registry():
    graph = _graph()
    for name, deps in graph.items():
        if name.startswith("flashc.ir"):
            assert not {d for d in deps if d.startswith("flashc.ops")}, name


def test_backends_and_training_do_not_import_the_package_face():
    graph = _graph()
    for name, deps in graph.items():
        if name.startswith(("flashc.backends", "flashc.train", "flashc.build", "flashc.ops", "flashc.ir")):
            assert not deps & {"flashc", "flashc.api", "flashc.cli"}, name
