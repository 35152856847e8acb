"""Subtask trees under concurrent calls: each race is replayed deterministically.

A test holds a SHARE lock on the outbox table from a connection of its own. Every writing call inserts its events
last, just before it commits, so the calls of a test run up to that insert (taking whatever row locks they take) and
wait there; a second call is started while the first waits, and the lock is released once both wait (on the outbox
or on a row the first holds). The order the calls commit in is then fixed, whatever the scheduler does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mcp_types import CallToolResult
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.jobs.trash_purge import purge_trash
from tests.integration.tool_client import Tools, execute, first_text, outbox, settings_for
from tests.support.polling import eventually

# Generous: two in-process calls reach a lock wait in milliseconds, but the machine is shared and slow.
WAIT_S = 20.0


async def waiting_on_locks(db: AsyncEngine) -> int:
    async with db.connect() as conn:
        found = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        )
        return int(found or 0)


@asynccontextmanager
async def commits_held(db: AsyncEngine) -> AsyncIterator[Any]:
    """While held, no call can write its events (so none commits); `start(call)` runs a call until it waits."""
    async with db.connect() as holder:
        await holder.execute(text("LOCK TABLE outbox IN SHARE MODE"))
        started: list[asyncio.Task[CallToolResult]] = []

        async def start(call: Awaitable[CallToolResult]) -> asyncio.Task[CallToolResult]:
            task: asyncio.Task[CallToolResult] = asyncio.ensure_future(call)
            started.append(task)
            want = len(started)
            await eventually(
                lambda: _waiting(db, want, started), WAIT_S, f"{want} calls wait on a lock", interval_s=0.05
            )
            return task

        try:
            yield start
        finally:
            await holder.rollback()
            await asyncio.gather(*started, return_exceptions=True)


async def _waiting(db: AsyncEngine, want: int, started: list[asyncio.Task[CallToolResult]]) -> bool:
    for task in started:
        if task.done():  # it failed before reaching a lock (a test error): show it
            task.result()
    return await waiting_on_locks(db) >= want


async def tree(db: AsyncEngine) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT id, parent_id, status, deleted_at FROM tasks ORDER BY id"))
        return [dict(row) for row in rows.mappings()]


async def violations(db: AsyncEngine) -> list[str]:
    """The tree invariants: a subtask's parent is top-level; a task out of the trash has its parent out of it."""
    rows = {row["id"]: row for row in await tree(db)}
    found = []
    for row in rows.values():
        parent = rows.get(row["parent_id"]) if row["parent_id"] is not None else None
        if parent is None:
            continue
        if parent["parent_id"] is not None:
            found.append(f"task {row['id']} is two levels deep (under {parent['id']}, under {parent['parent_id']})")
        if row["deleted_at"] is None and parent["deleted_at"] is not None:
            found.append(f"task {row['id']} is live under task {parent['id']}, which is in the trash")
    return found


def outcome(result: CallToolResult) -> str:
    return first_text(result).split(":")[0] if result.is_error else "ok"


async def test_a_subtask_added_while_its_parent_becomes_a_subtask_is_refused(
    tools: Tools, other: Tools, db: AsyncEngine
) -> None:
    top = await tools.add_task(title="Top")
    parent = await tools.add_task(title="Parent")
    async with commits_held(db) as start:
        move = await start(tools.raw("update_task", {"task_id": parent["id"], "parent_id": top["id"]}))
        add = await start(other.raw("add_task", {"title": "Child", "parent_id": parent["id"]}))
    assert outcome(await move) == "ok"
    assert outcome(await add) == "VALIDATION_ERROR", first_text(await add)
    assert "is itself a subtask" in first_text(await add)
    assert await violations(db) == []


async def test_a_task_getting_a_subtask_cannot_become_a_subtask_meanwhile(
    tools: Tools, other: Tools, db: AsyncEngine
) -> None:
    top = await tools.add_task(title="Top")
    parent = await tools.add_task(title="Parent")
    async with commits_held(db) as start:
        add = await start(other.raw("add_task", {"title": "Child", "parent_id": parent["id"]}))
        move = await start(tools.raw("update_task", {"task_id": parent["id"], "parent_id": top["id"]}))
    assert outcome(await add) == "ok"
    assert outcome(await move) == "VALIDATION_ERROR", first_text(await move)
    assert "has subtasks of its own" in first_text(await move)
    assert await violations(db) == []


async def test_a_subtask_added_while_its_parent_is_trashed_is_refused(
    tools: Tools, other: Tools, db: AsyncEngine
) -> None:
    parent = await tools.add_task(title="Parent")
    async with commits_held(db) as start:
        trash = await start(tools.raw("delete_task", {"task_id": parent["id"]}))
        add = await start(other.raw("add_task", {"title": "Child", "parent_id": parent["id"]}))
    assert outcome(await trash) == "ok"
    assert outcome(await add) == "NOT_FOUND", first_text(await add)
    assert "is in the trash" in first_text(await add)
    assert await violations(db) == []


async def test_trashing_a_parent_takes_the_subtask_added_just_before(
    tools: Tools, other: Tools, db: AsyncEngine
) -> None:
    parent = await tools.add_task(title="Parent")
    async with commits_held(db) as start:
        add = await start(other.raw("add_task", {"title": "Child", "parent_id": parent["id"]}))
        trash = await start(tools.raw("delete_task", {"task_id": parent["id"]}))
    assert outcome(await add) == "ok"
    assert outcome(await trash) == "ok"
    assert (await trash).structured_content == {
        "deleted_task_id": parent["id"],
        "title": "Parent",
        "trashed_subtasks": 1,
    }
    assert await violations(db) == []
    child_id = (await add).structured_content["id"]
    events = [(e["event_type"], e["task_id"]) for e in await outbox(db)]
    assert ("task.deleted", child_id) in events


async def test_a_task_moved_under_a_parent_being_trashed_goes_with_it_or_is_refused(
    tools: Tools, other: Tools, db: AsyncEngine
) -> None:
    parent = await tools.add_task(title="Parent")
    loose = await tools.add_task(title="Loose")
    async with commits_held(db) as start:
        move = await start(other.raw("update_task", {"task_id": loose["id"], "parent_id": parent["id"]}))
        trash = await start(tools.raw("delete_task", {"task_id": parent["id"]}))
    assert (outcome(await move), outcome(await trash)) == ("ok", "ok")
    assert await violations(db) == []
    assert (await trash).structured_content["trashed_subtasks"] == 1


async def test_restoring_a_subtask_while_its_parent_is_trashed_leaves_no_orphan(
    tools: Tools, other: Tools, db: AsyncEngine
) -> None:
    parent = await tools.add_task(title="Parent")
    child = await tools.add_task(title="Child", parent_id=parent["id"])
    await tools.delete_task(task_id=child["id"])
    async with commits_held(db) as start:
        restore = await start(other.raw("update_task", {"task_id": child["id"], "status": "pending"}))
        trash = await start(tools.raw("delete_task", {"task_id": parent["id"]}))
    assert (outcome(await restore), outcome(await trash)) == ("ok", "ok")
    assert await violations(db) == []
    # The restored subtask went to the trash with its parent, and comes back with it.
    await tools.update_task(task_id=parent["id"], status="pending")
    assert {row["id"]: row["deleted_at"] for row in await tree(db)} == {parent["id"]: None, child["id"]: None}


async def test_completing_a_parent_completes_the_subtask_added_just_before(
    tools: Tools, other: Tools, db: AsyncEngine
) -> None:
    parent = await tools.add_task(title="Parent")
    async with commits_held(db) as start:
        add = await start(other.raw("add_task", {"title": "Child", "parent_id": parent["id"]}))
        done = await start(tools.raw("complete_task", {"task_id": parent["id"]}))
    assert (outcome(await add), outcome(await done)) == ("ok", "ok")
    assert {row["status"] for row in await tree(db)} == {"completed"}


async def test_two_tasks_made_each_others_parent_at_once_do_not_deadlock(
    tools: Tools, other: Tools, db: AsyncEngine
) -> None:
    first = await tools.add_task(title="First")
    second = await tools.add_task(title="Second")
    async with commits_held(db) as start:
        one = await start(tools.raw("update_task", {"task_id": first["id"], "parent_id": second["id"]}))
        two = await start(other.raw("update_task", {"task_id": second["id"], "parent_id": first["id"]}))
    # The second waits for the first (no deadlock, which PostgreSQL would break with an error after a second), and
    # is then refused: its new parent has become a subtask.
    assert outcome(await one) == "ok"
    assert outcome(await two) == "VALIDATION_ERROR", first_text(await two)
    assert await violations(db) == []


async def test_the_purge_never_deletes_a_task_out_of_the_trash(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    """A live subtask under a trashed parent (as an earlier version could leave behind) keeps its parent from the
    purge: the purge deletes only rows in the trash and never cascades onto a live one."""
    parent = await tools.add_task(title="Parent")
    child = await tools.add_task(title="Child", parent_id=parent["id"])
    lone = await tools.add_task(title="Lone")
    pinned = datetime(2027, 3, 1, tzinfo=UTC)
    long_ago = pinned - timedelta(days=40)
    await execute(
        db, "UPDATE tasks SET deleted_at = :at WHERE id = ANY(:ids)", at=long_ago, ids=[parent["id"], lone["id"]]
    )
    seen = len(await outbox(db))
    purged = await purge_trash(db, settings_for(database_dsn, MCP_TODO_TRASH_DAYS=30), now=pinned)
    assert purged == 1
    assert [row["id"] for row in await tree(db)] == [parent["id"], child["id"]]
    events = [(e["event_type"], e["task_id"], e["payload"]["data"]["reason"]) for e in (await outbox(db))[seen:]]
    assert events == [("task.deleted", lone["id"], "purged")]
    # Once the subtask is in the trash too, both go, each with its event.
    await execute(db, "UPDATE tasks SET deleted_at = :at WHERE id = :id", at=long_ago, id=child["id"])
    assert await purge_trash(db, settings_for(database_dsn, MCP_TODO_TRASH_DAYS=30), now=pinned) == 2
    assert await tree(db) == []


# --- batches: the outcome does not depend on the order of the ids -------------------------------------------------


@pytest.mark.parametrize("parent_first", [True, False])
async def test_deleting_a_parent_and_its_subtask_in_one_batch_works_in_either_order(
    tools: Tools, db: AsyncEngine, parent_first: bool
) -> None:
    parent = await tools.add_task(title="Parent")
    child = await tools.add_task(title="Child", parent_id=parent["id"])
    ids = [parent["id"], child["id"]] if parent_first else [child["id"], parent["id"]]
    seen = len(await outbox(db))
    result = await tools.delete_task(task_ids=ids)
    assert [(item["task_id"], item["outcome"]) for item in result["results"]] == [(i, "trashed") for i in ids]
    events = (await outbox(db))[seen:]
    assert sorted((e["event_type"], e["task_id"]) for e in events) == [
        ("task.deleted", parent["id"]),
        ("task.deleted", child["id"]),
    ]
    # Trashed together: restoring the parent brings the subtask back.
    await tools.update_task(task_id=parent["id"], status="pending")
    assert [row["deleted_at"] for row in await tree(db)] == [None, None]


@pytest.mark.parametrize("parent_first", [True, False])
async def test_completing_a_parent_and_its_subtask_in_one_batch_works_in_either_order(
    tools: Tools, db: AsyncEngine, parent_first: bool
) -> None:
    parent = await tools.add_task(title="Parent")
    child = await tools.add_task(title="Child", parent_id=parent["id"])
    ids = [parent["id"], child["id"]] if parent_first else [child["id"], parent["id"]]
    seen = len(await outbox(db))
    result = await tools.complete_task(task_ids=ids)
    assert [(item["task_id"], item["outcome"]) for item in result["results"]] == [(i, "completed") for i in ids]
    events = (await outbox(db))[seen:]
    assert sorted((e["event_type"], e["task_id"]) for e in events) == [
        ("task.completed", parent["id"]),
        ("task.completed", child["id"]),
    ]
