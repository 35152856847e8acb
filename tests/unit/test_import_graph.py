"""The import graph of `mcp_todo/` and `workers/`, read from the source with `ast` (every import, including those
inside functions, since a lazy import only hides a cycle): no cycle between modules, only the entry point
`python -m mcp_todo` imports the command line, and every import is one that docs/architecture.md's table of layers
allows (the table is read from the page, so the map and the code cannot drift apart)."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mcp_todo", "workers")
CLI = "mcp_todo.cli"
# `python -m mcp_todo` is the command line's other entry point; it is nothing but that import.
MAY_IMPORT_CLI = frozenset({"mcp_todo.__main__"})


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(module: str, path: Path) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            # `from a.b import c` names module a.b.c when there is one, else a name inside a.b.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
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


def test_the_graph_is_read_from_the_source() -> None:
    graph = import_graph()
    # Known edges, so a resolver that finds nothing cannot pass the tests below.
    assert "mcp_todo.server.state" in graph["mcp_todo.server.tools"]
    assert "mcp_todo.runtime.supervise" in graph["workers.notifier"]
    assert CLI in graph["mcp_todo.__main__"]


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_that_imports_it_back() -> None:
    assert cycles(import_graph()) == []


def test_only_the_entry_point_imports_the_command_line() -> None:
    importers = sorted(m for m, targets in import_graph().items() if CLI in targets and m not in MAY_IMPORT_CLI)
    assert importers == []


# --- the map: docs/architecture.md's table of layers ------------------------------------------------------------

ARCHITECTURE = ROOT / "docs" / "architecture.md"
ROOT_PACKAGE = "mcp_todo"  # its __init__ holds only the version, which any module may import
PATH_IN_CELL = re.compile(r"`([\w/.]+(?:/|\.py))`")
NAME_IN_CELL = re.compile(r"`([\w.]+)`")


@dataclass(frozen=True)
class Layer:
    """One row of the table: the modules it places (path prefixes), the layers they may import, and the libraries
    (None: any)."""

    name: str
    paths: tuple[str, ...]
    may_import: frozenset[str]
    libraries: frozenset[str] | None


def layers(text: str | None = None) -> dict[str, Layer]:
    """The rows of the table under "## Layers" whose last column is "may import"."""
    text = ARCHITECTURE.read_text() if text is None else text
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    found: dict[str, Layer] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split(" | ")]
        where, allowed = cells[0], cells[-1]
        paths = tuple(PATH_IN_CELL.findall(where))
        name = Path(paths[0]).stem if paths[0].endswith(".py") else Path(paths[0].rstrip("/")).name
        internal, _, libraries = allowed.partition("libraries:")
        found[name] = Layer(
            name=name,
            paths=paths,
            may_import=frozenset(NAME_IN_CELL.findall(internal)),
            libraries=(
                frozenset()
                if "stdlib only" in allowed
                else None
                if libraries.strip() == "any"
                else frozenset(NAME_IN_CELL.findall(libraries))
            ),
        )
    return found


def layer_of(module: str, table: dict[str, Layer]) -> str | None:
    """The row placing `module` (the longest path that holds it), ROOT_PACKAGE for the root itself, else None."""
    if module == ROOT_PACKAGE:
        return ROOT_PACKAGE
    path = module.replace(".", "/")
    best: tuple[int, str] | None = None
    for layer in table.values():
        for prefix in layer.paths:
            held = path + ".py" == prefix if prefix.endswith(".py") else (path + "/").startswith(prefix)
            if held and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer.name)
    return best[1] if best else None


def libraries_imported(path: Path) -> set[str]:
    """The top-level names of what `path` imports from outside the standard library and this project."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in PACKAGES}


def layer_violations(graph: dict[str, set[str]], table: dict[str, Layer]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        own = layer_of(module, table)
        for target in sorted(targets):
            other = layer_of(target, table)
            if own is None or other in (own, ROOT_PACKAGE) or own == ROOT_PACKAGE:
                continue
            if other not in table[own].may_import:
                found.append(f"{module} -> {target} ({own} may not import {other})")
    return found


def test_the_table_is_read_from_the_architecture_page() -> None:
    table = layers()
    # Known rows, so a parser that finds nothing cannot pass the tests below.
    assert {"domain", "db", "service", "server", "pipeline", "jobs", "handlers", "runtime", "cli", "workers"} <= set(
        table
    )
    assert table["runtime"].libraries == frozenset() and table["runtime"].may_import == frozenset()
    assert table["service"].libraries is not None and "mcp" not in table["service"].libraries
    assert table["cli"].paths == ("mcp_todo/cli.py", "mcp_todo/__main__.py")
    assert layer_of("mcp_todo.__main__", table) == "cli"
    assert layer_of("mcp_todo.db.tasks", table) == "db"
    assert layer_of("workers.notifier", table) == "workers"


def test_every_module_is_on_the_map_and_every_name_in_it_is_a_row() -> None:
    table = layers()
    unplaced = sorted(module for module in source_modules() if layer_of(module, table) is None)
    assert unplaced == []
    unknown = sorted(f"{layer.name}: {name}" for layer in table.values() for name in layer.may_import - set(table))
    assert unknown == []


def test_the_checker_finds_a_forbidden_import() -> None:
    table = layers()
    graph = {"mcp_todo.db.tasks": {"mcp_todo.server.app"}, "mcp_todo.server.app": {"mcp_todo.db.tasks"}}
    assert layer_violations(graph, table) == ["mcp_todo.db.tasks -> mcp_todo.server.app (db may not import server)"]


def test_every_import_is_one_the_map_allows() -> None:
    assert layer_violations(import_graph(), layers()) == []


def test_libraries_are_those_the_map_names() -> None:
    table = layers()
    found = []
    for module, path in source_modules().items():
        layer = layer_of(module, table)
        allowed = table[layer].libraries if layer in table else None
        if allowed is not None:
            found += [f"{module} imports {name}" for name in sorted(libraries_imported(path) - allowed)]
    assert sorted(found) == []


def test_workers_and_the_pipeline_never_load_the_server_or_the_command_line() -> None:
    # Stated apart from the table so that widening the table cannot quietly allow it: a worker's image and start-up
    # carry neither the MCP server nor click's commands.
    table = layers()
    for name in ("workers", "pipeline", "handlers", "jobs"):
        assert table[name].may_import.isdisjoint({"server", "cli", "doctor"}), name
