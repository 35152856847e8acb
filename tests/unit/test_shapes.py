"""Rows in, shapes out (mcp_todo.service.shapes), without a database: the lean form built straight from a row is the
one `lean_content` makes of its TaskOut, the event snapshot is the one TaskSnapshot makes of it, a column added to
the table shows without a list to edit, and db/ never imports the result shapes."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_type_hints

import jsonschema
import pytest

from mcp_todo.db.models import Task, table_of
from mcp_todo.db.tasks import TASK_COLUMNS, Label, TaskRow
from mcp_todo.events import TaskSnapshot, TaskUpdated
from mcp_todo.schemas import TaskList, TaskOut, lean_content
from mcp_todo.server.arguments import output_schema
from mcp_todo.service.shapes import INTERNAL, PUBLIC_COLUMNS, lean_task, snapshot, task_fields, task_out

ROOT = Path(__file__).resolve().parents[2]
USER_ZONE = "Europe/Paris"
CREATED = datetime(2027, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)


def _row(**changes: Any) -> TaskRow:
    base = TaskRow(
        id=12,
        user_id="alice",
        title="Buy milk",
        description=None,
        status="pending",
        priority="medium",
        due_date=None,
        time_zone=USER_ZONE,
        category_id=None,
        recurrence_rule=None,
        series_id=None,
        series_start=None,
        series_start_wall=None,
        previous_task_id=None,
        remind_before_minutes=None,
        remind_at=None,
        reminder_sent=False,
        completed_at=None,
        created_at=CREATED,
        updated_at=CREATED + timedelta(microseconds=5),
        uid="7f1c",
    )
    return replace(base, **changes)


DUE = datetime(2027, 3, 12, 8, 0, 0, 250000, tzinfo=UTC)
ROWS = {
    "plain": _row(),
    "full": _row(
        description="Bring the blue folder",
        priority="high",
        due_date=DUE,
        category_id=3,
        category=Label(3, "Home"),
        tags=(Label(1, "shopping", "#112233"), Label(2, "urgent")),
        recurrence_rule="FREQ=WEEKLY;BYDAY=MO",
        series_id=12,
        series_start=DUE,
        remind_before_minutes=60,
        remind_at=DUE - timedelta(hours=1),
        updated_at=CREATED + timedelta(days=1),
    ),
    "other_zone": _row(time_zone="Asia/Tokyo", due_date=DUE, reminder_sent=True, remind_at=DUE),
    "completed_from_completion": _row(
        status="completed",
        due_date=DUE,
        recurrence_rule="FREQ=DAILY;INTERVAL=2",
        recurrence_from="completion",
        completed_at=DUE + timedelta(hours=3),
    ),
    "parent_in_trash": _row(open_subtasks=2, total_subtasks=3, deleted_at=DUE),
    "subtask": _row(parent_id=7),
}


@pytest.mark.parametrize("name", sorted(ROWS))
@pytest.mark.parametrize("in_list", [True, False])
def test_the_lean_form_from_a_row_is_what_lean_content_makes_of_its_task(name: str, in_list: bool) -> None:
    row = ROWS[name]
    if in_list:
        page = lean_content(TaskList.model_validate({"tasks": [task_fields(row)], "total": 1, "limit": 50}), USER_ZONE)
        assert lean_task(row, USER_ZONE) == page["tasks"][0]
    else:
        assert lean_task(row, USER_ZONE, in_list=False) == lean_content(task_out(row), USER_ZONE)


def test_the_lean_form_leaves_out_defaults_bookkeeping_and_the_users_zone() -> None:
    shown = lean_task(ROWS["plain"], USER_ZONE)
    # updated_at is 5 µs after created_at: the same second, so absent (it then means created_at).
    assert shown == {"id": 12, "title": "Buy milk", "created_at": "2027-03-01T10:00:00+01:00"}
    full = lean_task(ROWS["full"], USER_ZONE)
    assert not INTERNAL & set(full) and "category_id" not in full
    assert full["category"] == {"id": 3, "name": "Home"}
    assert full["tags"] == [{"id": 1, "name": "shopping", "color": "#112233"}, {"id": 2, "name": "urgent"}]
    assert full["recurrence"] == {"text": "every week on Monday", "next_occurrences": ["2027-03-15T09:00:00+01:00"]}
    assert lean_task(ROWS["other_zone"], USER_ZONE)["time_zone"] == "Asia/Tokyo"


@pytest.mark.parametrize("name", sorted(ROWS))
def test_the_event_snapshot_is_what_the_payload_model_makes_of_the_task(name: str) -> None:
    row = ROWS[name]
    expected = TaskSnapshot.from_task(task_out(row)).model_dump(mode="json")
    assert snapshot(row) == expected
    assert TaskSnapshot.model_validate(snapshot(row)).model_dump(mode="json") == expected


def test_task_updated_names_the_snapshots_fields_with_its_types_but_the_unchanging_ones() -> None:
    hints = get_type_hints(TaskSnapshot, include_extras=True)
    changeable = set(TaskSnapshot.model_fields) - {"id", "created_at", "updated_at"}
    assert set(TaskUpdated.__optional_keys__) == changeable and not TaskUpdated.__required_keys__
    updated = TaskUpdated.__annotations__
    assert {name: updated[name] for name in changeable} == {name: hints[name] for name in changeable}


def test_the_columns_are_the_tables_and_every_shown_one_is_in_the_output_schema() -> None:
    table = table_of(Task)
    assert tuple(c.name for c in table.columns if c.computed is None) == TASK_COLUMNS
    assert "priority_rank" not in TASK_COLUMNS and "search_vector" not in TASK_COLUMNS
    # What a client may rely on is published: every column a result shows has its place in TaskOut.
    assert set(PUBLIC_COLUMNS) - {"category_id"} <= set(TaskOut.model_fields)
    assert set(task_fields(ROWS["full"])) <= set(TaskOut.model_fields)


def test_a_column_added_to_the_table_is_read_and_shown_without_a_list_to_edit() -> None:
    """In a fresh interpreter: one column added to the table definition is selected by every statement, carried by
    the row, shown by the lean form and by one task's result (as the table gives it: a time in the task's zone)."""
    script = textwrap.dedent(
        """
        import json
        from datetime import UTC, datetime
        from sqlalchemy import Column, DateTime, Integer
        from mcp_todo.db.models import Task, table_of
        table_of(Task).append_column(Column("effort", Integer))
        table_of(Task).append_column(Column("snoozed_until", DateTime(timezone=True)))
        from mcp_todo.db.tasks import TASK_COLUMNS, TaskRow, shape_select
        from mcp_todo.service.shapes import lean_task, task_out
        when = datetime(2027, 3, 1, 9, tzinfo=UTC)
        row = dict.fromkeys(TASK_COLUMNS) | {
            "id": 1, "user_id": "alice", "title": "t", "status": "pending", "priority": "medium",
            "time_zone": "Europe/Paris", "reminder_sent": False, "created_at": when, "updated_at": when,
            "recurrence_from": "schedule", "effort": 3, "snoozed_until": when,
            "category_name": None, "category_color": None, "tag_ids": None, "tag_names": None,
            "tag_colors": None, "open_subtasks": 0, "total_subtasks": 0, "blocked_by": None, "blocks": 0,
        }
        task = TaskRow.from_mapping(row)
        print(json.dumps({
            "selected": "t.effort" in shape_select("tasks") and "t.snoozed_until" in shape_select("tasks"),
            "carried": task.column("effort"),
            "lean": lean_task(task, "UTC"),
            "one": task_out(task).model_dump(mode="json", exclude_none=True),
        }))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    found = json.loads(done.stdout)
    assert found["selected"] and found["carried"] == 3
    assert found["lean"]["effort"] == 3 and found["lean"]["snoozed_until"] == "2027-03-01T10:00:00+01:00"
    assert found["one"]["effort"] == 3 and found["one"]["snoozed_until"] == "2027-03-01T10:00:00+01:00"


def test_db_never_imports_the_result_shapes() -> None:
    """db/ returns rows; the service shapes them (`service/shapes.py`)."""
    offenders = []
    for path in sorted((ROOT / "mcp_todo" / "db").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(name == "mcp_todo.schemas" or name.startswith("mcp_todo.service") for name in names):
                offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == []


def test_a_list_of_realistic_tasks_fits_its_flat_published_schema() -> None:
    """The published list schema names a task's category, tags and recurrence by what they require (a validating
    client descends into fewer levels per task), and still accepts every lean list and refuses a malformed one."""
    schema = output_schema(TaskList.model_json_schema())
    task = schema["properties"]["tasks"]["items"]["properties"]
    assert task["category"] == {"type": "object", "required": ["id", "name"]}
    assert task["tags"] == {"type": "array", "items": {"type": "object", "required": ["id", "name"]}}
    assert task["recurrence"] == {"type": "object", "required": ["text"]}
    content = {"tasks": [lean_task(row, USER_ZONE) for row in ROWS.values()], "total": 6, "limit": 50}
    jsonschema.validate(content, schema)
    broken = json.loads(json.dumps(content))
    del broken["tasks"][1]["tags"][0]["name"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
