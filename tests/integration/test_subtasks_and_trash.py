"""Through the MCP client: subtasks (one level), the trash (delete_task, list_tasks status=deleted,
restore with update_task status=pending, the purge) and what each writes to the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.events import Envelope
from mcp_todo.handlers.next_occurrence import handle_task_completed
from mcp_todo.jobs.reminder_scheduler import ReminderScheduler
from mcp_todo.jobs.trash_purge import purge_trash, run_purge_forever
from tests.integration.tool_client import (
    Clock,
    Tools,
    execute,
    outbox,
    row_counts,
    server_for,
    settings_for,
    task_row,
    tools_of,
)
from tests.support.polling import eventually


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2027, 1, 2, 15, 0, tzinfo=UTC))


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str, clock: Clock) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "alice", clock=clock)) as client:
        yield client


async def events_after(db: AsyncEngine, count: int) -> list[dict[str, Any]]:
    return (await outbox(db))[count:]


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(event["event_type"], event["task_id"]) for event in events]


async def family(tools: Tools) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    parent = await tools.add_task(title="Move house", due_date="2027-02-01T09:00")
    first = await tools.add_task(title="Book the van", parent_id=parent["id"])
    second = await tools.add_task(title="Pack books", parent_id=parent["id"])
    return parent, first, second


# --- subtasks -----------------------------------------------------------------------------------------------------


async def test_a_task_shows_its_parent_and_its_subtask_counts(tools: Tools) -> None:
    parent, first, second = await family(tools)
    assert first["parent_id"] == parent["id"]
    shown = (await tools.list_tasks(parent_id=parent["id"], sort_order="asc"))["tasks"]
    assert [task["id"] for task in shown] == [first["id"], second["id"]]
    found = await tools.search_tasks(query="", parent_id=parent["id"])
    assert {task["id"] for task in found["tasks"]} == {first["id"], second["id"]}
    assert (await tools.search_tasks(query="van", parent_id=parent["id"]))["total"] == 1

    await tools.complete_task(task_id=first["id"])
    [listed] = [t for t in (await tools.list_tasks())["tasks"] if t["id"] == parent["id"]]
    assert (listed["open_subtasks"], listed["total_subtasks"]) == (1, 2)
    # A task without subtasks says nothing about them (absent or null).
    assert listed.get("parent_id") is None
    assert first.get("open_subtasks") is None and first.get("total_subtasks") is None


async def test_subtasks_are_one_level_and_never_loop(tools: Tools, db: AsyncEngine, database_dsn: str) -> None:
    parent, first, _ = await family(tools)
    lone = await tools.add_task(title="Lone")
    before = await row_counts(db)

    nested = await tools.error("add_task", {"title": "Deeper", "parent_id": first["id"]})
    assert nested.startswith(f"VALIDATION_ERROR: task {first['id']} is itself a subtask (of task {parent['id']})")
    own = await tools.error("update_task", {"task_id": lone["id"], "parent_id": lone["id"]})
    assert own.startswith("VALIDATION_ERROR: task") and "its own parent" in own
    # A parent under its own subtask would be a loop; one level deep already refuses it.
    loop = await tools.error("update_task", {"task_id": parent["id"], "parent_id": first["id"]})
    assert loop.startswith("VALIDATION_ERROR:") and "itself a subtask" in loop
    has_children = await tools.error("update_task", {"task_id": parent["id"], "parent_id": lone["id"]})
    assert has_children.startswith(f"VALIDATION_ERROR: task {parent['id']} has subtasks of its own")
    assert (await tools.error("add_task", {"title": "x", "parent_id": 999})).startswith("NOT_FOUND: task 999")

    async with tools_of(server_for(db, database_dsn, "bob")) as bob:
        theirs = await bob.error("add_task", {"title": "x", "parent_id": parent["id"]})
        assert theirs == f"NOT_FOUND: task {parent['id']} does not exist for this user — list_tasks shows the ids"

    # A subtask repeats with its parent, never on its own.
    recurring = {"due_date": "2027-02-01", "recurrence_rule": "FREQ=DAILY"}
    no_rule = await tools.error("add_task", {"title": "x", "parent_id": parent["id"], **recurring})
    assert no_rule.startswith("VALIDATION_ERROR: a subtask repeats with its parent")
    rule_on_subtask = await tools.error("update_task", {"task_id": first["id"], **recurring})
    assert rule_on_subtask.startswith("VALIDATION_ERROR: a subtask repeats with its parent")
    daily = await tools.add_task(title="Daily", **recurring)
    under = await tools.error("update_task", {"task_id": daily["id"], "parent_id": parent["id"]})
    assert under.startswith("VALIDATION_ERROR: a subtask repeats with its parent")
    await tools.delete_task(task_id=daily["id"])

    await tools.delete_task(task_id=lone["id"])
    trashed = await tools.error("add_task", {"title": "x", "parent_id": lone["id"]})
    assert trashed.startswith(f"NOT_FOUND: task {lone['id']} is in the trash")
    after = await row_counts(db)
    assert after["tasks"] == before["tasks"] + 1  # "Daily", in the trash

    # Moving a subtask to another parent, and to the top level.
    other = await tools.add_task(title="Other")
    moved = await tools.update_task(task_id=first["id"], parent_id=other["id"])
    assert moved["parent_id"] == other["id"]
    top = await tools.update_task(task_id=first["id"], parent_id=None)
    assert top.get("parent_id") is None


async def test_completing_a_parent_completes_its_open_subtasks_each_with_its_event(
    tools: Tools, db: AsyncEngine, clock: Clock
) -> None:
    parent, first, second = await family(tools)
    done_first = await tools.complete_task(task_id=first["id"])
    seen = len(await outbox(db))
    clock.fixed = datetime(2027, 1, 3, 12, 0, tzinfo=UTC)

    done = await tools.complete_task(task_id=parent["id"])
    assert done["status"] == "completed" and done.get("open_subtasks") in (None, 0)
    events = await events_after(db, seen)
    # One transaction: the open subtask first, then the parent; the subtask completed before is left alone.
    assert kinds(events) == [("task.completed", second["id"]), ("task.completed", parent["id"])]
    assert (await task_row(db, first["id"]))["completed_at"] == datetime.fromisoformat(done_first["completed_at"])
    assert (await task_row(db, second["id"]))["status"] == "completed"

    # Completing it again changes nothing and emits nothing.
    assert (await tools.complete_task(task_id=parent["id"]))["completed_at"] == done["completed_at"]
    assert len(await outbox(db)) == seen + 2


async def test_deleting_trashes_the_task_with_its_subtasks_and_restoring_brings_them_back(
    tools: Tools, db: AsyncEngine, clock: Clock
) -> None:
    work = await tools.add_category(name="Work")
    tag = await tools.add_tag(name="home")
    parent = await tools.add_task(
        title="Move house",
        due_date="2027-02-01T09:00",
        category_id=work["id"],
        tag_ids=[tag["id"]],
        recurrence_rule="FREQ=MONTHLY",
        remind_before_minutes=30,
    )
    first = await tools.add_task(title="Book the van", parent_id=parent["id"])
    second = await tools.add_task(title="Pack books", parent_id=parent["id"])
    clock.fixed = datetime(2027, 1, 3, 8, 0, tzinfo=UTC)
    await tools.delete_task(task_id=second["id"])  # trashed on its own, earlier
    clock.fixed = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
    seen = len(await outbox(db))

    deleted = await tools.delete_task(task_id=parent["id"])
    assert deleted["deleted_task_id"] == parent["id"] and deleted["trashed_subtasks"] == 1
    events = await events_after(db, seen)
    assert kinds(events) == [("task.deleted", parent["id"]), ("task.deleted", first["id"])]
    assert {event["payload"]["data"]["reason"] for event in events} == {"trashed"}

    assert (await tools.list_tasks())["total"] == 0
    assert (await tools.search_tasks(query="house"))["total"] == 0
    trash = await tools.list_tasks(status="deleted", sort_by="title", sort_order="asc")
    assert [task["title"] for task in trash["tasks"]] == ["Book the van", "Move house", "Pack books"]
    assert all(task["deleted_at"] for task in trash["tasks"])
    in_trash = (await tools.list_tasks(status="deleted", parent_id=parent["id"]))["tasks"]
    assert {task["id"] for task in in_trash} == {first["id"], second["id"]}

    # A subtask cannot come back without its parent.
    orphan = await tools.error("update_task", {"task_id": first["id"], "status": "pending"})
    assert orphan.startswith(f"VALIDATION_ERROR: task {first['id']} is a subtask of task {parent['id']}")

    seen = len(await outbox(db))
    restored = await tools.update_task(task_id=parent["id"], status="pending")
    assert restored.get("deleted_at") is None
    assert restored["category"]["id"] == work["id"] and [t["id"] for t in restored["tags"]] == [tag["id"]]
    assert restored["recurrence_rule"] == "FREQ=MONTHLY" and restored["remind_at"] == "2027-02-01T08:30:00-05:00"
    assert (restored["open_subtasks"], restored["total_subtasks"]) == (1, 1)
    events = await events_after(db, seen)
    # The subtask trashed with it comes back; the one trashed on its own stays in the trash.
    assert kinds(events) == [("task.restored", parent["id"]), ("task.restored", first["id"])]
    assert {task["id"] for task in (await tools.list_tasks())["tasks"]} == {parent["id"], first["id"]}
    assert [task["id"] for task in (await tools.list_tasks(status="deleted"))["tasks"]] == [second["id"]]


async def test_a_trashed_task_is_out_of_every_list_count_and_tool(tools: Tools, clock: Clock) -> None:
    work = await tools.add_category(name="Work")
    tag = await tools.add_tag(name="home")
    task = await tools.add_task(
        title="Overdue", due_date="2027-01-01T09:00", category_id=work["id"], tag_ids=[tag["id"]]
    )
    soon = await tools.add_task(title="Soon", due_date="2027-01-03T09:00", tag_ids=[tag["id"]])
    assert (await tools.get_overdue_tasks())["total"] == 1
    await tools.delete_task(task_id=task["id"])
    await tools.delete_task(task_id=soon["id"])

    assert (await tools.get_overdue_tasks())["total"] == 0
    assert (await tools.get_upcoming_tasks())["total"] == 0
    assert (await tools.list_categories())["categories"][0]["task_count"] == 0
    assert (await tools.list_tags())["tags"][0]["task_count"] == 0
    hint = f"NOT_FOUND: task {task['id']} is in the trash — restore it with update_task(task_id={task['id']}"
    for tool, arguments in (
        ("complete_task", {"task_id": task["id"]}),
        ("update_task", {"task_id": task["id"], "title": "new"}),
        ("update_task", {"task_id": task["id"], "status": "completed"}),
        ("set_reminder", {"task_id": task["id"], "remind_before_minutes": 5}),
        ("add_tag_to_task", {"task_id": task["id"], "tag_id": tag["id"]}),
        ("remove_tag_from_task", {"task_id": task["id"], "tag_id": tag["id"]}),
        ("delete_task", {"task_id": task["id"]}),
    ):
        assert (await tools.error(tool, arguments)).startswith(hint), tool

    # Deleting a tag stays final, also for tasks in the trash.
    await tools.delete_tag(tag_id=tag["id"])
    restored = await tools.update_task(task_id=task["id"], status="pending")
    assert restored["tags"] == [] and restored["category"]["id"] == work["id"]


async def test_a_trashed_tasks_reminder_does_not_fire(tools: Tools, db: AsyncEngine, database_dsn: str) -> None:
    task = await tools.add_task(title="Call Bob", due_date="2030-01-01T09:00")
    await execute(
        db,
        "UPDATE tasks SET remind_at = now() - interval '1 minute', due_date = now() + interval '1 hour' WHERE id = :id",
        id=task["id"],
    )
    scheduler = ReminderScheduler(db, database_dsn, settings_for(database_dsn))
    await tools.delete_task(task_id=task["id"])
    assert await scheduler.run_once() == 0
    await tools.update_task(task_id=task["id"], status="pending")
    assert await scheduler.run_once() == 1


async def test_the_recurrer_makes_no_successor_for_a_trashed_occurrence(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="Water plants", due_date="2027-01-05T09:00", recurrence_rule="FREQ=WEEKLY")
    await tools.complete_task(task_id=task["id"])
    completed = Envelope.from_dict((await outbox(db))[-1]["payload"])
    await tools.delete_task(task_id=task["id"])
    assert await handle_task_completed(db, completed) is None
    assert (await tools.list_tasks(status="all"))["total"] == 0


async def test_the_purge_deletes_old_trash_for_good_exactly_once(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    parent, first, _ = await family(tools)
    recent = await tools.add_task(title="Recent")
    await tools.delete_task(task_id=parent["id"])
    await tools.delete_task(task_id=recent["id"])
    pinned = datetime(2027, 3, 1, tzinfo=UTC)
    # The parent's family went to the trash 31 days before the pinned clock; the other task 29 days before.
    await execute(
        db,
        "UPDATE tasks SET deleted_at = :at WHERE parent_id = :p OR id = :p",
        at=pinned - timedelta(days=31),
        p=parent["id"],
    )
    await execute(
        db, "UPDATE tasks SET deleted_at = :at WHERE id = :id", at=pinned - timedelta(days=29), id=recent["id"]
    )
    seen = len(await outbox(db))
    settings = settings_for(database_dsn, MCP_TODO_TRASH_DAYS=30)

    # Two replicas purging at once delete (and report) each task once.
    counts = await asyncio.gather(*(purge_trash(db, settings, now=pinned, batch=2) for _ in range(2)))
    assert sum(counts) == 3
    assert await purge_trash(db, settings, now=pinned) == 0
    events = await events_after(db, seen)
    assert sorted(kinds(events)) == sorted(
        [("task.deleted", parent["id"]), ("task.deleted", first["id"]), ("task.deleted", first["id"] + 1)]
    )
    assert {event["payload"]["data"]["reason"] for event in events} == {"purged"}
    assert [task["id"] for task in (await tools.list_tasks(status="deleted"))["tasks"]] == [recent["id"]]
    gone = await tools.error("update_task", {"task_id": parent["id"], "status": "pending"})
    assert gone.startswith(f"NOT_FOUND: task {parent['id']} does not exist")


async def test_the_purge_loop_runs_at_start_and_stops_with_its_process(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    task = await tools.add_task(title="Old")
    await tools.delete_task(task_id=task["id"])
    await execute(db, "UPDATE tasks SET deleted_at = now() - interval '31 days' WHERE id = :id", id=task["id"])
    stop = asyncio.Event()
    loop = asyncio.create_task(run_purge_forever(db, settings_for(database_dsn), stop, interval_s=3600))

    async def purged() -> bool:
        return (await row_counts(db))["tasks"] == 0

    await eventually(purged, 5.0, "the purge ran at start")
    stop.set()
    await asyncio.wait_for(loop, 5.0)
