"""The split of the recurrence module: callers keep importing from ``recurrence``, and the grammar stays below it."""

from __future__ import annotations

import ast
from pathlib import Path

from mcp_todo.domain import recurrence, rrule

GRAMMAR_NAMES = (
    "Rule",
    "parse_rule",
    "normalize_rule",
    "describe_rule",
    "SUPPORTED",
    "MAX_RULE_LENGTH",
    "MAX_INTERVAL",
    "MAX_COUNT",
    "FREQUENCIES",
    "WEEKDAY_CODES",
)


def test_grammar_names_are_re_exported_from_recurrence_unchanged() -> None:
    for name in GRAMMAR_NAMES:
        assert name in recurrence.__all__, name
        assert getattr(recurrence, name) is getattr(rrule, name), name


def test_recurrence_all_names_exist() -> None:
    missing = [name for name in recurrence.__all__ if not hasattr(recurrence, name)]
    assert missing == []


def test_rrule_does_not_import_recurrence() -> None:
    # recurrence imports rrule; the reverse would be an import cycle.
    tree = ast.parse(Path(rrule.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "mcp_todo.domain.recurrence" not in imported
    assert not any(isinstance(node, ast.ImportFrom) and node.level > 0 for node in ast.walk(tree))
