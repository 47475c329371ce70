"""The layout is the architecture (ADR 0016): who may import whom, read from the code itself.

Every import counts — at module level, inside functions, under `TYPE_CHECKING` — because a function-level
import is still a dependency. The rules:

* the packages form layers with no cycle between them, and no two files import each other in a loop;
* `outbox` never imports `relay`: the relay depends on the outbox's kernel and data layer, and the tools
  run the relay by its handler name (`outbox.core.functions`), as Lambda does;
* the Lambda functions' code (everything the two handlers import) holds no CLI, local emulator, test
  tooling, operator action or CDK code — the parts the asset leaves out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from outbox.cdk.bundling import EXCLUDED
from outbox.core.functions import INGEST_HANDLER, RELAY_HANDLER

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("outbox", "relay", "infra", "bench", "chaos")

ALLOWED: dict[str, set[str]] = {
    # unit: what it may import (besides itself). Units are subpackages of outbox, or a top-level package.
    "outbox.core": set(),
    "outbox.data": {"outbox.core"},
    "outbox.ingest": {"outbox.core", "outbox.data"},
    "outbox.api": {"outbox.core", "outbox.data", "outbox.ingest"},
    "outbox": {"outbox.core", "outbox.data", "outbox.ingest", "outbox.api"},
    "outbox.provisioning": {"outbox.core"},
    "relay": {"outbox.core", "outbox.data"},
    "outbox.ops": {"outbox.core", "outbox.data"},
    "outbox.consumer": {"outbox.core", "outbox.data"},
    "outbox.testing": {"outbox.core", "outbox.data"},
    "outbox.cdk": {"outbox.core"},
    "outbox.local": {
        "outbox.core",
        "outbox.data",
        "outbox.ingest",
        "outbox.consumer",  # the demo's consumer stage uses the helper as a team's consumer would
        "outbox.ops",
        "outbox.provisioning",
        "outbox.testing",
    },
    "outbox.cli": {
        "outbox.core",
        "outbox.data",
        "outbox.ingest",
        "outbox.ops",
        "outbox.provisioning",
        "outbox.local",
    },
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[str]:
    """Every project module `module` imports, wherever the import statement stands."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for imported in names:
            name = imported
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


GRAPH = {module: set(_imports(module, path)) for module, path in MODULES.items()}


def unit_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "outbox":
        return parts[0]
    if len(parts) == 1:
        return "outbox"
    return f"outbox.{parts[1]}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_files_import_each_other_in_a_loop() -> None:
    assert _cycles(GRAPH) == []


def test_no_cycle_between_packages() -> None:
    units: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        units.setdefault(unit_of(module), set()).update(
            unit_of(t) for t in targets if unit_of(t) != unit_of(module)
        )
    assert _cycles(units) == []


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_each_part_imports_only_the_layers_below_it(unit: str) -> None:
    crossing = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if unit_of(module) == unit
        for target in targets
        if unit_of(target) != unit and unit_of(target) not in ALLOWED[unit]
    )
    assert crossing == []


def test_outbox_never_imports_relay() -> None:
    assert (
        sorted(
            f"{m} -> {t}"
            for m, ts in GRAPH.items()
            if unit_of(m) != "relay" and m.startswith("outbox")
            for t in ts
            if t.startswith("relay")
        )
        == []
    )


def _reach(start: str) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize("handler", [INGEST_HANDLER, RELAY_HANDLER])
def test_the_functions_import_nothing_the_lambda_asset_leaves_out(handler: str) -> None:
    module = handler.rpartition(".")[0]
    excluded = tuple(entry.removesuffix(".py").replace("/", ".") for entry in EXCLUDED)
    reached = _reach(module)
    assert {"outbox.core.settings", "outbox.core.clients"} <= reached  # the walk does follow imports
    assert sorted(m for m in reached if m.startswith(excluded)) == []
