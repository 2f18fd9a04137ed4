"""Imports run one way: no module imports one that imports it back (``TYPE_CHECKING`` and function-level
imports count: a cycle there is still a cycle in the design; ``from . import sub`` counts as an import of
the package too, since it runs the package's ``__init__``)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "captivate_chat_api").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found |= {c for c in (target, *(f"{target}.{a.name}" for a in node.names)) if c in known}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
    return found - {name}


@cache
def import_graph() -> tuple[dict[str, Path], dict[str, set[str]]]:
    """The modules of src and what each imports, parsed once for every layer's test (~0.7 CPU-s a parse)."""
    known = modules()
    return known, {name: imports_of(name, path, known) for name, path in known.items()}


def cycle_through(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


@pytest.mark.parametrize(
    "layer",
    [
        "captivate_chat_api.client",
        "captivate_chat_api.protocol",
        "captivate_chat_api.server.store",
        "captivate_chat_api.server",
        "captivate_chat_api",
    ],
)
def test_no_import_cycles(layer: str) -> None:
    known, graph = import_graph()
    for name in sorted(n for n in known if n.startswith(layer + ".")):
        assert cycle_through(name, graph) is None, cycle_through(name, graph)


def test_the_checker_sees_a_cycle() -> None:
    assert cycle_through("a", {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
