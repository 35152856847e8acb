"""Every tool through the official MCP client, in-process, against the real PostgreSQL: results, rows and the outbox
events each call writes (docs/tools.md, docs/events.md)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.engine import create_engine
from mcp_todo.domain.rrule import normalize_rule
from mcp_todo.schemas import to_the_second
from mcp_todo.server.app import build_server
from mcp_todo.server.state import AppState
from mcp_todo.server.tools import REGISTRY
from tests.integration.tool_client import (
    Clock,
    Tools,
    execute,
    outbox,
    server_for,
    settings_for,
    task_row,
    tools_of,
)

TOOL_NAMES = [
    "add_task",
    "list_tasks",
    "complete_task",
    "update_task",
    "delete_task",
    "search_tasks",
    "add_category",
    "list_categories",
    "delete_category",
    "add_tag",
    "list_tags",
    "delete_tag",
    "add_tag_to_task",
    "remove_tag_from_task",
    "set_reminder",
    "get_overdue_tasks",
    "get_upcoming_tasks",
]
# The fields of subtasks, repeating after completion and the trash: absent (null) unless they say something (a
# subtask, subtasks, repeating after completion, the trash); the events carry the first two always.
SPARSE_FIELDS = {"parent_id", "open_subtasks", "total_subtasks", "recurrence_from", "deleted_at"}
TASK_FIELDS = {
    "id",
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "time_zone",
    "category",
    "tags",
    "recurrence_rule",
    "recurrence",
    "remind_at",
    "reminder_sent",
    "completed_at",
    "created_at",
    "updated_at",
}
OFFSET_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str, clock: Clock) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "alice", clock=clock)) as client:
        yield client


def assert_envelope(event: dict[str, Any], event_type: str, task_id: int, user: str = "alice") -> dict[str, Any]:
    """The event envelope (docs/events.md), keyed by the task id; returns its data."""
    assert event["event_type"] == event_type
    assert event["message_key"] == str(task_id)
    assert event["task_id"] == task_id
    assert event["user_id"] == user
    payload = event["payload"]
    assert set(payload) == {"event_id", "event_type", "schema_version", "occurred_at", "user_id", "task_id", "data"}
    uuid.UUID(payload["event_id"])
    assert payload["event_type"] == event_type
    assert payload["schema_version"] == 1
    assert payload["occurred_at"].endswith("Z")
    datetime.fromisoformat(payload["occurred_at"].replace("Z", "+00:00"))
    assert payload["user_id"] == user
    assert payload["task_id"] == task_id
    data: dict[str, Any] = payload["data"]
    return data


# --- the tool list ------------------------------------------------------------------------------------------------


async def test_tools_list_has_the_17_tools_with_hints_schemas_and_imperative_descriptions(tools: Tools) -> None:
    listed = (await tools.client.list_tools()).tools
    assert [tool.name for tool in listed] == TOOL_NAMES
    assert [spec.fn.__name__ for spec in REGISTRY] == TOOL_NAMES
    for tool in listed:
        assert tool.annotations is not None
        assert tool.annotations.open_world_hint is False
        # A hint left out means the MCP default: readOnly false, destructive true, idempotent false.
        spec = next(spec for spec in REGISTRY if spec.fn.__name__ == tool.name)
        assert bool(tool.annotations.read_only_hint) is spec.read_only
        if not spec.read_only:
            assert (tool.annotations.destructive_hint is not False) is spec.destructive
            assert bool(tool.annotations.idempotent_hint) is spec.idempotent
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.description and tool.description[0].isupper() and not tool.description.startswith("This")
        first_word = tool.description.split()[0]
        assert not first_word.endswith("s") or first_word in {"Sets"}, tool.description
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert "title" not in prop, (tool.name, name)
    read_only = {tool.name for tool in listed if tool.annotations and tool.annotations.read_only_hint}
    assert read_only == {
        "list_tasks",
        "search_tasks",
        "list_categories",
        "list_tags",
        "get_overdue_tasks",
        "get_upcoming_tasks",
    }
    size = len(json.dumps([tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed]))
    assert size / 4 <= 10_000, f"tools/list is {size} bytes (~{size // 4} tokens)"


async def test_update_task_schema_says_omitted_and_null_apart(tools: Tools) -> None:
    listed = {tool.name: tool for tool in (await tools.client.list_tools()).tools}
    schema = listed["update_task"].input_schema
    assert schema["required"] == ["task_id"]
    for name in ("title", "description", "priority", "due_date", "category_id", "recurrence_rule", "status"):
        prop = schema["properties"][name]
        assert "default" not in prop, name
        assert "null" in prop.get("type", []) or None in prop.get("enum", []), name


# --- add_task -----------------------------------------------------------------------------------------------------


async def test_add_task_returns_the_task_and_writes_task_created(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="Pay rent", description="to the landlord", due_date="2027-03-10")
    assert set(task) - SPARSE_FIELDS == TASK_FIELDS
    assert all(task.get(name) is None for name in SPARSE_FIELDS)
    assert task["id"] == 1
    assert task["status"] == "pending" and task["priority"] == "medium"
    assert task["time_zone"] == "America/New_York"
    # A date alone is the end of that day in the user's zone; its reminder is that morning (all-day reminder time).
    assert task["due_date"] == "2027-03-10T23:59:59-05:00"
    assert task["remind_at"] == "2027-03-10T09:00:00-05:00"
    assert task["reminder_sent"] is False
    assert task["recurrence"] is None and task["recurrence_rule"] is None
    assert task["category"] is None and task["tags"] == []
    assert OFFSET_TIME.match(task["created_at"]) and OFFSET_TIME.match(task["updated_at"])

    [event] = await outbox(db)
    assert event["topics"] == ["task-events"]
    # The event keeps the stored times' fractions; a result is to the second.
    data = assert_envelope(event, "task.created", 1)
    shown = {name: value for name, value in task.items() if name not in SPARSE_FIELDS}
    assert {key: to_the_second(v) if isinstance(v, str) else v for key, v in data.items()} == {
        **shown,
        "parent_id": None,
        "recurrence_from": "schedule",
        "blocked_by": [],
    }


async def test_add_task_with_everything(tools: Tools, db: AsyncEngine) -> None:
    work = await tools.add_category(name="Work", color="#112233")
    tag_a = await tools.add_tag(name="alpha")
    tag_b = await tools.add_tag(name="Beta", color="#abcdef")
    task = await tools.add_task(
        title="Standup",
        priority="high",
        due_date="2027-03-08T09:30",
        category_id=work["id"],
        tag_ids=[tag_b["id"], tag_a["id"], tag_b["id"]],
        recurrence_rule="RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3",
        remind_before_minutes=15,
    )
    assert task["priority"] == "high"
    assert task["due_date"] == "2027-03-08T09:30:00-05:00"
    assert task["remind_at"] == "2027-03-08T09:15:00-05:00"
    assert task["category"] == {"id": work["id"], "name": "Work", "color": "#112233"}
    assert [tag["name"] for tag in task["tags"]] == ["alpha", "Beta"]
    assert task["recurrence_rule"] == normalize_rule("RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3")
    assert not task["recurrence_rule"].startswith("RRULE:")
    assert task["recurrence"]["text"] == "every week on Monday, 3 times"
    # The next occurrences after this one, not including it; DST starts on 14 March 2027 and 09:30 stays 09:30.
    assert task["recurrence"]["next_occurrences"] == ["2027-03-15T09:30:00-04:00", "2027-03-22T09:30:00-04:00"]

    row = await task_row(db, task["id"])
    assert row["series_id"] == task["id"]
    assert row["series_start"] == row["due_date"]
    assert row["remind_before_minutes"] == 15
    [created] = [e for e in await outbox(db) if e["event_type"] == "task.created"]
    assert assert_envelope(created, "task.created", task["id"])["tags"] == task["tags"]


async def test_add_task_without_due_date_has_no_reminder(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="Someday", priority=None, description=None)
    assert task["due_date"] is None and task["remind_at"] is None and task["priority"] == "medium"
    row = await task_row(db, task["id"])
    assert row["remind_before_minutes"] is None


async def test_add_task_rejects_what_cannot_be(tools: Tools, db: AsyncEngine) -> None:
    assert (await tools.error("add_task", {"title": "r", "recurrence_rule": "FREQ=DAILY"})).startswith(
        "VALIDATION_ERROR: a recurring task needs a due date"
    )
    assert (await tools.error("add_task", {"title": "r", "remind_before_minutes": 5})).startswith("VALIDATION_ERROR")
    assert (await tools.error("add_task", {"title": "r", "category_id": 7})) == (
        "NOT_FOUND: category 7 does not exist for this user — list_categories shows the ids"
    )
    assert (await tools.error("add_task", {"title": "r", "tag_ids": [3]})) == (
        "NOT_FOUND: tag 3 does not exist for this user — list_tags shows the ids"
    )
    assert await outbox(db) == []


# --- list_tasks ---------------------------------------------------------------------------------------------------


async def test_list_tasks_filters(tools: Tools) -> None:
    home = await tools.add_category(name="Home")
    red = await tools.add_tag(name="red")
    blue = await tools.add_tag(name="blue")
    a = await tools.add_task(title="a", priority="low", due_date="2027-01-01T10:00", category_id=home["id"])
    b = await tools.add_task(title="b", priority="urgent", due_date="2027-01-05T10:00", tag_ids=[red["id"]])
    c = await tools.add_task(title="c", tag_ids=[blue["id"], red["id"]])
    d = await tools.add_task(title="d", priority="urgent", due_date="2027-01-03T10:00")
    await tools.complete_task(task_id=d["id"])

    async def ids(**filters: Any) -> list[int]:
        result = await tools.list_tasks(**filters)
        assert result["total"] >= len(result["tasks"])
        return [task["id"] for task in result["tasks"]]

    assert await ids() == [d["id"], c["id"], b["id"], a["id"]]  # newest first
    assert await ids(status="pending") == [c["id"], b["id"], a["id"]]
    assert await ids(status="completed") == [d["id"]]
    assert await ids(status="all", priority="urgent") == [d["id"], b["id"]]
    assert await ids(category_id=home["id"]) == [a["id"]]
    assert await ids(tag_ids=[blue["id"]]) == [c["id"]]
    assert await ids(tag_ids=[blue["id"], red["id"]]) == [c["id"], b["id"]]  # any of
    assert await ids(due_after="2027-01-03T10:00", due_before="2027-01-05T10:00") == [d["id"]]  # after <= due < before
    assert await ids(due_after="2027-01-02") == [d["id"], b["id"]]


async def test_list_tasks_sorts_and_pages(tools: Tools) -> None:
    low = await tools.add_task(title="Banana", priority="low", due_date="2027-02-01")
    urgent = await tools.add_task(title="apple", priority="urgent")
    high = await tools.add_task(title="cherry", priority="high", due_date="2027-01-01")
    medium = await tools.add_task(title="date", priority="medium")
    high2 = await tools.add_task(title="elder", priority="high", due_date="2027-01-01")

    async def ids(**options: Any) -> list[int]:
        return [task["id"] for task in (await tools.list_tasks(**options))["tasks"]]

    # Priority sorts by rank, urgent highest; ties by id in the same direction.
    assert await ids(sort_by="priority") == [urgent["id"], high2["id"], high["id"], medium["id"], low["id"]]
    assert await ids(sort_by="priority", sort_order="asc") == [
        low["id"],
        medium["id"],
        high["id"],
        high2["id"],
        urgent["id"],
    ]
    # Tasks without a due date sort last in both directions.
    assert await ids(sort_by="due_date", sort_order="asc") == [
        high["id"],
        high2["id"],
        low["id"],
        urgent["id"],
        medium["id"],
    ]
    assert (await ids(sort_by="due_date", sort_order="desc"))[:3] == [low["id"], high2["id"], high["id"]]
    assert (await ids(sort_by="due_date", sort_order="desc"))[3:] == [medium["id"], urgent["id"]]
    assert await ids(sort_by="title", sort_order="asc") == [
        urgent["id"],
        low["id"],
        high["id"],
        medium["id"],
        high2["id"],
    ]
    assert await ids(sort_by="created_at", sort_order="asc") == [
        low["id"],
        urgent["id"],
        high["id"],
        medium["id"],
        high2["id"],
    ]

    page = await tools.list_tasks(sort_by="created_at", sort_order="asc", limit=2, offset=2)
    assert [t["id"] for t in page["tasks"]] == [high["id"], medium["id"]]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)
    beyond = await tools.list_tasks(offset=10)
    assert beyond["tasks"] == [] and beyond["total"] == 5

    await tools.update_task(task_id=low["id"], title="Banana split")
    assert (await ids(sort_by="updated_at"))[0] == low["id"]


# --- complete_task ------------------------------------------------------------------------------------------------


async def test_complete_task_writes_task_completed_once(tools: Tools, db: AsyncEngine, clock: Clock) -> None:
    clock.fixed = datetime(2027, 1, 2, 15, 0, tzinfo=UTC)
    task = await tools.add_task(title="once", due_date="2027-01-05T12:00")
    done = await tools.complete_task(task_id=task["id"])
    assert done["status"] == "completed"
    assert done["completed_at"] == "2027-01-02T10:00:00-05:00"
    assert done["next_occurrence"] is None
    events = await outbox(db)
    assert [e["event_type"] for e in events] == ["task.created", "task.completed"]
    assert events[1]["topics"] == ["task-events"]
    assert assert_envelope(events[1], "task.completed", task["id"]) == {
        "completed_at": "2027-01-02T10:00:00-05:00",
        "due_date": "2027-01-05T12:00:00-05:00",
        "recurrence_rule": None,
        "series_id": None,
        "time_zone": "America/New_York",
        "recurrence_from": "schedule",
    }

    clock.fixed += timedelta(hours=1)
    again = await tools.complete_task(task_id=task["id"])
    assert again == done
    assert len(await outbox(db)) == 2


async def test_complete_recurring_task_feeds_the_recurrer(tools: Tools, db: AsyncEngine, clock: Clock) -> None:
    clock.fixed = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)
    task = await tools.add_task(title="water plants", due_date="2027-01-04T08:00", recurrence_rule="FREQ=WEEKLY")
    done = await tools.complete_task(task_id=task["id"])
    # Completed late (20 January): the next occurrence is the first after both the due date and the completion.
    assert done["next_occurrence"] == "2027-01-25T08:00:00-05:00"
    event = (await outbox(db))[-1]
    assert event["topics"] == ["task-events", "task-recurrence"]
    data = assert_envelope(event, "task.completed", task["id"])
    assert data["recurrence_rule"] == "FREQ=WEEKLY" and data["series_id"] == task["id"]
    # The new occurrence appears asynchronously (the recurrer), not here.
    assert (await tools.list_tasks())["total"] == 1


# --- update_task --------------------------------------------------------------------------------------------------


async def test_update_task_changes_only_what_is_given(tools: Tools, db: AsyncEngine, clock: Clock) -> None:
    clock.fixed = datetime(2027, 1, 1, tzinfo=UTC)
    work = await tools.add_category(name="Work")
    task = await tools.add_task(title="t", description="d", category_id=work["id"], due_date="2027-02-01T09:00")
    clock.fixed += timedelta(minutes=5)

    same = await tools.update_task(task_id=task["id"])
    assert same == task  # nothing given: nothing changed, not even updated_at
    same = await tools.update_task(task_id=task["id"], title="t", description="d")
    assert same == task
    assert [e["event_type"] for e in await outbox(db)] == ["task.created"]

    changed = await tools.update_task(task_id=task["id"], description=None, priority="urgent", category_id=None)
    assert changed["description"] is None and changed["priority"] == "urgent" and changed["category"] is None
    assert changed["title"] == "t" and changed["due_date"] == task["due_date"]
    assert changed["updated_at"] != task["updated_at"]
    event = (await outbox(db))[-1]
    assert assert_envelope(event, "task.updated", task["id"]) == {
        "description": None,
        "priority": "urgent",
        "category": None,
    }


async def test_moving_the_due_date_keeps_the_rule_reanchors_and_rearms(tools: Tools, db: AsyncEngine) -> None:
    first = await tools.add_task(title="report", due_date="2027-03-01T09:00", recurrence_rule="FREQ=MONTHLY")
    await execute(db, "UPDATE tasks SET reminder_sent = true WHERE id = :id", id=first["id"])

    moved = await tools.update_task(task_id=first["id"], due_date="2027-03-03T10:00")
    assert moved["recurrence_rule"] == "FREQ=MONTHLY"
    assert moved["due_date"] == "2027-03-03T10:00:00-05:00"
    assert moved["remind_at"] == "2027-03-03T09:00:00-05:00"  # lead-based: recomputed
    assert moved["reminder_sent"] is False  # and re-armed
    assert moved["recurrence"]["next_occurrences"][0] == "2027-04-03T10:00:00-04:00"
    row = await task_row(db, first["id"])
    assert row["series_id"] == first["id"] and row["series_start"] == row["due_date"]
    data = assert_envelope((await outbox(db))[-1], "task.updated", first["id"])
    assert data["due_date"] == moved["due_date"] and data["remind_at"] == moved["remind_at"]
    assert data["reminder_sent"] is False and "recurrence_rule" not in data

    # A recurring task cannot lose its due date; removing the rule ends the series.
    assert (await tools.error("update_task", {"task_id": first["id"], "due_date": None})).startswith(
        "VALIDATION_ERROR: a recurring task needs a due date"
    )
    plain = await tools.update_task(task_id=first["id"], recurrence_rule=None)
    assert plain["recurrence_rule"] is None and plain["recurrence"] is None
    row = await task_row(db, first["id"])
    assert row["series_id"] is None and row["series_start"] is None
    cleared = await tools.update_task(task_id=first["id"], due_date=None)
    assert cleared["due_date"] is None and cleared["remind_at"] is None


async def test_update_of_an_occurrence_reanchors_the_series_there(tools: Tools, db: AsyncEngine) -> None:
    anchor = await tools.add_task(title="gym", due_date="2027-01-04T07:00", recurrence_rule="FREQ=WEEKLY;COUNT=4")
    # The recurrer's N+1: same series, started at the anchor.
    await execute(
        db,
        "INSERT INTO tasks (user_id, title, due_date, time_zone, recurrence_rule, series_id, series_start, "
        "previous_task_id, remind_before_minutes) SELECT user_id, title, due_date + interval '7 days', time_zone, "
        "recurrence_rule, series_id, series_start, id, remind_before_minutes FROM tasks WHERE id = :id",
        id=anchor["id"],
    )
    second_id = anchor["id"] + 1
    before = await tools.update_task(task_id=second_id, title="gym!")
    assert len(before["recurrence"]["next_occurrences"]) == 2  # occurrences 3 and 4 of the original series
    await tools.update_task(task_id=second_id, recurrence_rule="FREQ=WEEKLY;COUNT=2")
    row = await task_row(db, second_id)
    assert row["series_id"] == second_id and row["series_start"] == row["due_date"]


async def test_update_status_completes_and_reopens(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="x", due_date="2027-05-01", recurrence_rule="FREQ=DAILY")
    done = await tools.update_task(task_id=task["id"], status="completed", title="x2")
    assert done["status"] == "completed" and done["completed_at"] is not None and done["title"] == "x2"
    events = await outbox(db)
    assert [e["event_type"] for e in events] == ["task.created", "task.updated", "task.completed"]
    assert assert_envelope(events[1], "task.updated", task["id"]) == {"title": "x2"}
    assert events[2]["topics"] == ["task-events", "task-recurrence"]

    reopened = await tools.update_task(task_id=task["id"], status="pending")
    assert reopened["status"] == "pending" and reopened["completed_at"] is None
    assert assert_envelope((await outbox(db))[-1], "task.updated", task["id"]) == {
        "status": "pending",
        "completed_at": None,
    }
    await tools.update_task(task_id=task["id"], status="pending")
    assert len(await outbox(db)) == 4


async def test_update_task_refuses_to_clear_required_fields(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="keep")
    for name in ("title", "priority", "status"):
        message = await tools.error("update_task", {"task_id": task["id"], name: None})
        assert message.startswith(f"VALIDATION_ERROR: {name} cannot be cleared"), message
    assert len(await outbox(db)) == 1


# --- delete_task --------------------------------------------------------------------------------------------------


async def test_delete_task(tools: Tools, db: AsyncEngine) -> None:
    tag = await tools.add_tag(name="t")
    task = await tools.add_task(title="bye", tag_ids=[tag["id"]])
    deleted = await tools.delete_task(task_id=task["id"])
    assert {k: v for k, v in deleted.items() if v is not None} == {"deleted_task_id": task["id"], "title": "bye"}
    event = (await outbox(db))[-1]
    data = assert_envelope(event, "task.deleted", task["id"])
    assert data["title"] == "bye" and data["reason"] == "trashed"
    # It went to the trash: a second delete says so, and how to get it back.
    assert (await tools.error("delete_task", {"task_id": task["id"]})) == (
        f"NOT_FOUND: task {task['id']} is in the trash — restore it with update_task(task_id={task['id']}, "
        "status=pending) first"
    )
    assert (await tools.error("delete_task", {"task_id": 999})) == (
        "NOT_FOUND: task 999 does not exist for this user — list_tasks shows the ids"
    )
    assert (await tools.list_tags())["tags"][0]["task_count"] == 0


# --- categories ---------------------------------------------------------------------------------------------------


async def test_categories(tools: Tools, db: AsyncEngine) -> None:
    work = await tools.add_category(name="  Work  ", color="#00ff00")
    assert work == {"id": work["id"], "name": "Work", "color": "#00ff00"}
    conflict = await tools.error("add_category", {"name": "WORK"})
    assert conflict.startswith("CONFLICT: a category named 'WORK' already exists")
    home = await tools.add_category(name="Home")
    t1 = await tools.add_task(title="1", category_id=work["id"])
    t2 = await tools.add_task(title="2", category_id=work["id"])
    await tools.add_task(title="3", category_id=home["id"])
    listed = await tools.list_categories()
    assert listed == {
        "categories": [
            {"id": home["id"], "name": "Home", "color": None, "task_count": 1},
            {"id": work["id"], "name": "Work", "color": "#00ff00", "task_count": 2},
        ],
        "total": 2,
    }
    before = len(await outbox(db))
    assert await tools.delete_category(category_id=work["id"]) == {
        "deleted_category_id": work["id"],
        "tasks_affected": 2,
    }
    events = (await outbox(db))[before:]
    assert [(e["event_type"], e["task_id"]) for e in events] == [("task.updated", t1["id"]), ("task.updated", t2["id"])]
    for event, task in zip(events, (t1, t2), strict=True):
        assert assert_envelope(event, "task.updated", task["id"]) == {"category": None}
    assert (await tools.list_tasks())["total"] == 3  # the tasks stay
    assert (await tools.error("delete_category", {"category_id": work["id"]})).startswith("NOT_FOUND: category")


async def test_category_limit(tools: Tools, db: AsyncEngine) -> None:
    await execute(
        db,
        "INSERT INTO categories (user_id, name) SELECT 'alice', 'c' || g FROM generate_series(1, 50) g",
    )
    assert (await tools.error("add_category", {"name": "one more"})).startswith("LIMIT_EXCEEDED: ")
    await execute(db, "INSERT INTO categories (user_id, name) VALUES ('bob', 'one more')")
    assert (await tools.list_categories())["total"] == 50


# --- tags ---------------------------------------------------------------------------------------------------------


async def test_tags_and_tagging(tools: Tools, db: AsyncEngine) -> None:
    red = await tools.add_tag(name="red", color="#FF0000")
    assert (await tools.error("add_tag", {"name": "Red"})).startswith("CONFLICT: a tag named 'Red' already exists")
    task = await tools.add_task(title="t")
    count = len(await outbox(db))

    tagged = await tools.add_tag_to_task(task_id=task["id"], tag_id=red["id"])
    assert tagged["tags"] == [{"id": red["id"], "name": "red", "color": "#FF0000"}]
    again = await tools.add_tag_to_task(task_id=task["id"], tag_id=red["id"])
    assert again == tagged  # idempotent, and silent
    events = (await outbox(db))[count:]
    assert len(events) == 1
    assert assert_envelope(events[0], "task.updated", task["id"]) == {"tags": tagged["tags"]}

    assert (await tools.list_tags())["tags"] == [{"id": red["id"], "name": "red", "color": "#FF0000", "task_count": 1}]

    untagged = await tools.remove_tag_from_task(task_id=task["id"], tag_id=red["id"])
    assert untagged["tags"] == []
    assert await tools.remove_tag_from_task(task_id=task["id"], tag_id=red["id"]) == untagged
    events = (await outbox(db))[count:]
    assert len(events) == 2
    assert assert_envelope(events[1], "task.updated", task["id"]) == {"tags": []}


async def test_delete_tag_updates_every_tagged_task(tools: Tools, db: AsyncEngine) -> None:
    red = await tools.add_tag(name="red")
    blue = await tools.add_tag(name="blue")
    t1 = await tools.add_task(title="1", tag_ids=[red["id"], blue["id"]])
    await tools.add_task(title="2", tag_ids=[blue["id"]])
    t3 = await tools.add_task(title="3", tag_ids=[red["id"]])
    count = len(await outbox(db))
    assert await tools.delete_tag(tag_id=red["id"]) == {"deleted_tag_id": red["id"], "tasks_affected": 2}
    events = (await outbox(db))[count:]
    assert [e["task_id"] for e in events] == [t1["id"], t3["id"]]
    assert assert_envelope(events[0], "task.updated", t1["id"]) == {
        "tags": [{"id": blue["id"], "name": "blue", "color": None}]
    }
    assert assert_envelope(events[1], "task.updated", t3["id"]) == {"tags": []}
    assert [tag["name"] for tag in (await tools.list_tags())["tags"]] == ["blue"]


async def test_tag_limits(tools: Tools, db: AsyncEngine) -> None:
    await execute(db, "INSERT INTO tags (user_id, name) SELECT 'alice', 't' || g FROM generate_series(1, 11) g")
    eleven = list(range(1, 12))
    assert (await tools.error("add_task", {"title": "x", "tag_ids": eleven})).startswith("VALIDATION_ERROR: tag_ids:")
    task = await tools.add_task(title="x", tag_ids=eleven[:10])
    assert len(task["tags"]) == 10
    message = await tools.error("add_tag_to_task", {"task_id": task["id"], "tag_id": 11})
    assert message.startswith(f"LIMIT_EXCEEDED: task {task['id']} can have at most 10 tags")
    await execute(db, "INSERT INTO tags (user_id, name) SELECT 'alice', 'u' || g FROM generate_series(1, 89) g")
    assert (await tools.error("add_tag", {"name": "the 101st"})).startswith("LIMIT_EXCEEDED: ")


# --- set_reminder -------------------------------------------------------------------------------------------------


async def test_set_reminder_kinds(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="dentist", due_date="2027-06-01T15:00")
    assert task["remind_at"] == "2027-06-01T14:00:00-04:00"

    lead = await tools.set_reminder(task_id=task["id"], remind_before_minutes=1440)
    assert lead == {"task_id": task["id"], "remind_at": "2027-05-31T15:00:00-04:00"}
    data = assert_envelope((await outbox(db))[-1], "task.updated", task["id"])
    assert data == {"remind_at": "2027-05-31T15:00:00-04:00"}
    moved = await tools.update_task(task_id=task["id"], due_date="2027-06-02T15:00")
    assert moved["remind_at"] == "2027-06-01T15:00:00-04:00"  # the task's own lead follows the due date

    absolute = await tools.set_reminder(task_id=task["id"], remind_at="2027-05-20T08:00:00Z")
    assert absolute["remind_at"] == "2027-05-20T04:00:00-04:00"
    moved = await tools.update_task(task_id=task["id"], due_date="2027-06-03T15:00")
    assert moved["remind_at"] == "2027-05-20T04:00:00-04:00"  # an absolute reminder survives a moved due date

    cleared = await tools.set_reminder(task_id=task["id"], remind_at=None)
    assert cleared == {"task_id": task["id"], "remind_at": None}
    moved = await tools.update_task(task_id=task["id"], due_date="2027-06-04T15:00")
    assert moved["remind_at"] is None  # a cleared reminder stays cleared

    count = len(await outbox(db))
    assert await tools.set_reminder(task_id=task["id"], remind_at=None) == cleared
    assert len(await outbox(db)) == count  # nothing changed, nothing emitted


async def test_set_reminder_needs_exactly_one_and_a_due_date_for_a_lead(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="no due")
    both = await tools.error("set_reminder", {"task_id": task["id"], "remind_before_minutes": 5, "remind_at": None})
    assert both.startswith("VALIDATION_ERROR: give exactly one of")
    neither = await tools.error("set_reminder", {"task_id": task["id"]})
    assert neither.startswith("VALIDATION_ERROR: give exactly one of")
    lead = await tools.error("set_reminder", {"task_id": task["id"], "remind_before_minutes": 5})
    assert lead.startswith(f"VALIDATION_ERROR: task {task['id']} has no due date")
    absolute = await tools.set_reminder(task_id=task["id"], remind_at="2027-01-01T09:00")
    assert absolute["remind_at"] == "2027-01-01T09:00:00-05:00"
    # A first due date keeps an absolute reminder.
    dated = await tools.update_task(task_id=task["id"], due_date="2027-02-01")
    assert dated["remind_at"] == "2027-01-01T09:00:00-05:00"


async def test_a_first_due_date_gets_the_default_reminder(tools: Tools) -> None:
    task = await tools.add_task(title="later")
    dated = await tools.update_task(task_id=task["id"], due_date="2027-02-01T12:00")
    assert dated["remind_at"] == "2027-02-01T11:00:00-05:00"


# --- agenda -------------------------------------------------------------------------------------------------------


async def test_overdue_and_upcoming(tools: Tools, db: AsyncEngine, clock: Clock) -> None:
    clock.fixed = datetime(2027, 3, 1, 17, 0, tzinfo=UTC)  # 12:00 in New York
    old = await tools.add_task(title="old", due_date="2027-02-01T09:00")
    older = await tools.add_task(title="older", due_date="2027-01-01T09:00")
    done = await tools.add_task(title="done", due_date="2027-01-15T09:00")
    await tools.complete_task(task_id=done["id"])
    now_due = await tools.add_task(title="now", due_date="2027-03-01T12:00")
    soon = await tools.add_task(title="soon", due_date="2027-03-03T09:00")
    edge = await tools.add_task(title="edge", due_date="2027-03-08T12:00")  # exactly now + 7 days: excluded
    await tools.add_task(title="undated")
    await execute(db, "UPDATE tasks SET reminder_sent = true WHERE id = :id", id=soon["id"])

    overdue = await tools.get_overdue_tasks()
    assert [t["id"] for t in overdue["tasks"]] == [older["id"], old["id"]] and overdue["total"] == 2
    upcoming = await tools.get_upcoming_tasks()
    assert [t["id"] for t in upcoming["tasks"]] == [now_due["id"], soon["id"]] and upcoming["total"] == 2
    assert [t["reminder_sent"] for t in upcoming["tasks"]] == [False, True]
    wider = await tools.get_upcoming_tasks(days=8, limit=1)
    assert [t["id"] for t in wider["tasks"]] == [now_due["id"]] and wider["total"] == 3
    assert edge["id"] not in [t["id"] for t in upcoming["tasks"]]


# --- the notifications resource, and the server's own lifespan -----------------------------------------------------


async def test_notifications_resource_lists_the_users_reminders(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="call mum", due_date="2027-04-01T18:00")
    await execute(
        db,
        "INSERT INTO notifications (user_id, task_id, remind_at, title, due_date, message, created_at) "
        "SELECT 'alice', :id, now() - g * interval '1 minute', 'call mum', now(), 'm' || g, "
        "now() - g * interval '1 minute' FROM generate_series(1, 60) g",
        id=task["id"],
    )
    await execute(
        db,
        "INSERT INTO notifications (user_id, task_id, remind_at, title, message) VALUES ('bob', 999, now(), 'x', 'x')",
    )
    listed = await tools.client.list_resources()
    assert "todo://notifications" in [str(r.uri) for r in listed.resources]
    result = await tools.client.read_resource("todo://notifications")
    body = json.loads(result.contents[0].text)  # type: ignore[union-attr]
    assert body["total"] == 50
    assert [n["message"] for n in body["notifications"][:2]] == ["m1", "m2"]
    assert {n["task_id"] for n in body["notifications"]} == {task["id"]}


async def test_server_opens_its_own_state_on_the_migrated_database(db: AsyncEngine, database_dsn: str) -> None:
    server = build_server(settings_for(database_dsn, "carol"))
    async with tools_of(server) as tools:
        task = await tools.add_task(title="from a fresh lifespan")
    assert (await task_row(db, task["id"]))["user_id"] == "carol"


@pytest.mark.parametrize(
    "dsn", ["postgresql://postgres@127.0.0.1:1/nothing_listens", "DATABASE/mcp_todo_no_such_database"]
)
async def test_an_unreachable_database_is_unavailable_not_internal(dsn: str, database_dsn: str) -> None:
    if dsn.startswith("DATABASE"):
        dsn = database_dsn.rsplit("/", 1)[0] + "/" + dsn.split("/", 1)[1]
    engine = create_engine(dsn, pool_size=1)
    try:
        async with tools_of(server_for(engine, dsn, "alice")) as tools:
            calls: list[tuple[str, dict[str, Any]]] = [
                ("add_task", {"title": "x"}),
                ("list_tasks", {}),
                ("search_tasks", {"query": "x"}),
                ("list_tags", {}),
                ("set_reminder", {"task_id": 1, "remind_at": None}),
            ]
            for tool, arguments in calls:
                assert (
                    await tools.error(tool, arguments) == "UNAVAILABLE: the database is unreachable — try again shortly"
                )
    finally:
        await engine.dispose()


async def test_background_jobs_run_beside_the_tools_and_stop_with_the_server(
    db: AsyncEngine, database_dsn: str
) -> None:
    seen: list[str] = []

    async def relay_like(state: AppState) -> None:
        seen.append(f"started for {state.settings.user}")
        await state.stopping.wait()
        seen.append("stopped cleanly")

    async def broken(_state: AppState) -> None:
        raise RuntimeError("a background job failed")

    server = build_server(settings_for(database_dsn, "dave"), background=[relay_like, broken])
    async with tools_of(server) as tools:
        await tools.add_task(title="tools still work")
        assert seen == ["started for dave"]
    assert seen == ["started for dave", "stopped cleanly"]
