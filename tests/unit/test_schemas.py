"""The compacted output schemas accept and reject exactly what pydantic's originals do."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from mcp_todo.schemas import TaskOut, inline_refs

TASK: dict[str, Any] = {
    "id": 1,
    "title": "t",
    "description": None,
    "status": "pending",
    "priority": "high",
    "due_date": "2027-03-10T23:59:59+00:00",
    "time_zone": "UTC",
    "category": {"id": 2, "name": "home", "color": None},
    "tags": [{"id": 3, "name": "x", "color": "#aabbcc"}],
    "recurrence_rule": "FREQ=DAILY",
    "recurrence": {"text": "every day", "next_occurrences": ["2027-03-11T23:59:59+00:00"]},
    "remind_at": None,
    "reminder_sent": False,
    "completed_at": None,
    "created_at": "2026-11-27T00:00:00+00:00",
    "updated_at": "2026-11-27T00:00:00+00:00",
}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"category": None, "recurrence": None},
        {"category": "home"},
        {"category": {"id": 2, "name": "home"}},
        {"recurrence": {"text": 1, "next_occurrences": []}},
        {"recurrence": []},
        {"status": "done"},
        {"due_date": 5},
    ],
)
def test_compact_schema_agrees_with_pydantics(change: dict[str, Any]) -> None:
    original = TaskOut.model_json_schema()
    compact = inline_refs(original)
    instance = TASK | change

    def valid(schema: dict[str, Any]) -> bool:
        return not list(jsonschema.Draft202012Validator(schema).iter_errors(instance))

    assert valid(compact) == valid(original)
    assert "anyOf" not in str(compact) and "$ref" not in str(compact)
