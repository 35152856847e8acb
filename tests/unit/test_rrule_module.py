"""The two recurrence modules: the grammar (``rrule``: parsing, canonical form, description) stands below the
expansion (``recurrence``). Each name has one home: no module imports a grammar name through ``recurrence``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from mcp_todo.domain import recurrence, rrule

ROOT = Path(__file__).resolve().parents[2]
RECURRENCE = "mcp_todo.domain.recurrence"


def defined_names(path: Path) -> set[str]:
    """The names a module's own top-level statements define (its imports are not among them)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def names_taken_from_recurrence(path: Path) -> Iterator[str]:
    """Every name `path` imports from ``recurrence`` or reads as an attribute of it (``recurrence.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == RECURRENCE:
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "mcp_todo.domain":
            aliases.update(alias.asname or alias.name for alias in node.names if alias.name == "recurrence")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            yield node.attr


def test_the_readers_find_names() -> None:
    # Known uses, so readers that find nothing cannot pass the test below.
    assert "validate_rule" in set(names_taken_from_recurrence(ROOT / "mcp_todo/service/hierarchy.py"))
    assert "next_occurrences" in set(names_taken_from_recurrence(ROOT / "mcp_todo/handlers/next_occurrence.py"))
    assert {"next_occurrence", "validate_rule"} <= defined_names(Path(recurrence.__file__))


def test_no_module_takes_a_grammar_name_from_the_expansion_module() -> None:
    own = defined_names(Path(recurrence.__file__))
    borrowed = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for folder in ("mcp_todo", "workers", "tests", "bench")
        for path in (ROOT / folder).rglob("*.py")
        for name in names_taken_from_recurrence(path)
        if name not in own and not name.startswith("__")
    )
    assert borrowed == []


def test_rrule_does_not_import_recurrence() -> None:
    # recurrence imports rrule; the reverse would be an import cycle.
    tree = ast.parse(Path(rrule.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert RECURRENCE not in imported
    assert not any(isinstance(node, ast.ImportFrom) and node.level > 0 for node in ast.walk(tree))
