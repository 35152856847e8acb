"""Dependencies through the MCP client: blocked_by on add_task, update_task and batch items, what a task shows
(blocked_by, blocks), the ready and blocked views, completion, the trash, recurrence, cycles and the limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.events import Envelope
from mcp_todo.handlers.next_occurrence import handle_task_completed
from tests.integration.tool_client import Clock, Tools, outbox, row_counts, server_for, tools_of


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2027, 1, 2, 15, 0, tzinfo=UTC))


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str, clock: Clock) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "alice", clock=clock)) as client:
        yield client


async def ids(tools: Tools, **filters: object) -> list[int]:
    return [task["id"] for task in (await tools.list_tasks(sort_by="title", sort_order="asc", **filters))["tasks"]]


async def test_a_task_shows_its_open_blockers_and_how_many_it_blocks(tools: Tools, db: AsyncEngine) -> None:
    a = await tools.add_task(title="A pour the foundation")
    b = await tools.add_task(title="B build the walls", blocked_by=[a["id"]])
    c = await tools.add_task(title="C roof", blocked_by=[b["id"], a["id"], a["id"]])
    assert b["blocked_by"] == [a["id"]]
    assert c["blocked_by"] == [a["id"], b["id"]]  # in id order, once each
    shown = {task["id"]: task for task in (await tools.list_tasks())["tasks"]}
    assert shown[a["id"]]["blocks"] == 2 and shown[a["id"]].get("blocked_by") is None
    assert shown[b["id"]]["blocks"] == 1 and shown[c["id"]].get("blocks") is None
    # The text line says it too.
    text = (await tools.raw("list_tasks", {})).content[0]
    assert f"blocked by #{a['id']}, #{b['id']}" in getattr(text, "text", "")
    created = [e for e in await outbox(db) if e["event_type"] == "task.created"]
    assert created[-1]["payload"]["data"]["blocked_by"] == [a["id"], b["id"]]


async def test_ready_and_blocked_views_and_completion_unblocks(tools: Tools) -> None:
    a = await tools.add_task(title="A")
    b = await tools.add_task(title="B", blocked_by=[a["id"]])
    c = await tools.add_task(title="C")
    assert await ids(tools, ready=True) == [a["id"], c["id"]]
    assert await ids(tools, ready=False) == [b["id"]]
    await tools.complete_task(task_id=a["id"])
    assert await ids(tools, ready=True) == [b["id"], c["id"]]  # the completed blocker is not listed: not open
    assert await ids(tools, ready=False) == []
    assert (await tools.list_tasks(status="pending"))["tasks"][0].get("blocked_by") is None
    # Reopening the blocker holds its dependent again.
    await tools.update_task(task_id=a["id"], status="pending")
    assert await ids(tools, ready=False) == [b["id"]]


async def test_trashing_a_blocker_unblocks_and_restoring_it_blocks_again(tools: Tools) -> None:
    a = await tools.add_task(title="A")
    b = await tools.add_task(title="B", blocked_by=[a["id"]])
    await tools.delete_task(task_id=a["id"])
    assert await ids(tools, ready=True) == [b["id"]]
    # A task in the trash cannot be made a blocker.
    error = await tools.error("update_task", {"task_id": b["id"], "blocked_by": [a["id"]]})
    assert error.startswith("NOT_FOUND") and "trash" in error
    await tools.update_task(task_id=a["id"], status="pending")
    assert await ids(tools, ready=False) == [b["id"]]
    assert (await tools.list_tasks(ready=False))["tasks"][0]["blocked_by"] == [a["id"]]


async def test_update_task_replaces_and_clears_blockers_with_one_task_updated(tools: Tools, db: AsyncEngine) -> None:
    a = await tools.add_task(title="A")
    b = await tools.add_task(title="B")
    c = await tools.add_task(title="C", blocked_by=[a["id"]])
    before = len(await outbox(db))
    updated = await tools.update_task(task_id=c["id"], blocked_by=[b["id"]])
    assert updated["blocked_by"] == [b["id"]]
    events = (await outbox(db))[before:]
    assert [(e["event_type"], e["payload"]["data"]) for e in events] == [("task.updated", {"blocked_by": [b["id"]]})]
    # The same list again changes nothing and writes nothing.
    await tools.update_task(task_id=c["id"], blocked_by=[b["id"]])
    assert len(await outbox(db)) == before + 1
    cleared = await tools.update_task(task_id=c["id"], blocked_by=[])
    assert cleared.get("blocked_by") is None
    assert (await outbox(db))[-1]["payload"]["data"] == {"blocked_by": []}


async def test_a_direct_cycle_is_refused_naming_it(tools: Tools, db: AsyncEngine) -> None:
    a = await tools.add_task(title="A")
    b = await tools.add_task(title="B", blocked_by=[a["id"]])
    before = await row_counts(db)
    error = await tools.error("update_task", {"task_id": a["id"], "blocked_by": [b["id"]]})
    assert error.startswith("CONFLICT") and f"#{a['id']} → #{b['id']} → #{a['id']}" in error
    assert await row_counts(db) == before
    self_block = await tools.error("update_task", {"task_id": a["id"], "blocked_by": [a["id"]]})
    assert self_block.startswith("VALIDATION_ERROR") and "itself" in self_block


async def test_a_cycle_through_a_chain_is_refused_even_through_closed_tasks(tools: Tools) -> None:
    a = await tools.add_task(title="A")
    b = await tools.add_task(title="B", blocked_by=[a["id"]])
    c = await tools.add_task(title="C", blocked_by=[b["id"]])
    d = await tools.add_task(title="D", blocked_by=[c["id"]])
    await tools.complete_task(task_id=b["id"])  # reopening it would close the cycle again: still refused
    error = await tools.error("update_task", {"task_id": a["id"], "blocked_by": [d["id"]]})
    assert error.startswith("CONFLICT")
    assert f"#{a['id']} → #{d['id']} → #{c['id']} → #{b['id']} → #{a['id']}" in error
    # A parent is not a blocker: a subtask may wait on a task its parent blocks, and vice versa, without a cycle.
    child = await tools.add_task(title="A's part", parent_id=a["id"], blocked_by=[d["id"]])
    assert child["blocked_by"] == [d["id"]]


async def test_another_users_task_is_not_found_and_21_ids_are_refused(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    async with tools_of(server_for(db, database_dsn, "bob")) as bob:
        theirs = await bob.add_task(title="Bob's")
    mine = await tools.add_task(title="Mine")
    error = await tools.error("update_task", {"task_id": mine["id"], "blocked_by": [theirs["id"]]})
    assert error.startswith("NOT_FOUND") and f"task {theirs['id']}" in error
    error = await tools.error("add_task", {"title": "x", "blocked_by": [999999]})
    assert error.startswith("NOT_FOUND")
    before = await row_counts(db)
    many = list(range(1, 22))
    error = await tools.error("add_task", {"title": "x", "blocked_by": many})
    assert error.startswith("VALIDATION_ERROR") and "blocked_by" in error and "20" in error
    error = await tools.error("update_task", {"task_id": mine["id"], "blocked_by": many})
    assert error.startswith("VALIDATION_ERROR") and "20" in error
    error = await tools.error("add_task", {"tasks": [{"title": "x", "blocked_by": many}]})
    assert error.startswith("VALIDATION_ERROR")
    assert await row_counts(db) == before


async def test_batch_items_take_blocked_by_all_or_nothing(tools: Tools, db: AsyncEngine) -> None:
    a = await tools.add_task(title="A")
    result = await tools.add_task(tasks=[{"title": "B", "blocked_by": [a["id"]]}, {"title": "C"}])
    b_id = result["results"][0]["task_id"]
    assert await ids(tools, ready=False) == [b_id]
    before = await row_counts(db)
    error = await tools.error(
        "add_task", {"tasks": [{"title": "D", "blocked_by": [a["id"]]}, {"title": "E", "blocked_by": [424242]}]}
    )
    assert error.startswith("NOT_FOUND") and "tasks[1]: NOT_FOUND: blocked_by: task 424242" in error
    error = await tools.error("update_task", {"task_id": a["id"], "blocked_by": [0]})
    assert error.startswith("VALIDATION_ERROR: blocked_by: 0 is not a task id")
    assert await row_counts(db) == before


async def test_a_recurring_tasks_next_occurrence_keeps_its_blockers_and_follows_the_series(
    tools: Tools, db: AsyncEngine
) -> None:
    gate = await tools.add_task(title="Weekly data pull", due_date="2027-01-04T09:00", recurrence_rule="FREQ=WEEKLY")
    report = await tools.add_task(
        title="Weekly report", due_date="2027-01-05T09:00", recurrence_rule="FREQ=WEEKLY", blocked_by=[gate["id"]]
    )
    assert report["blocked_by"] == [gate["id"]]
    # The pull is done: the report is ready; the pull's next occurrence is made.
    await tools.complete_task(task_id=gate["id"])
    gate_done = Envelope.from_dict((await outbox(db))[-1]["payload"])
    next_gate = await handle_task_completed(db, gate_done)
    assert next_gate is not None
    assert report["id"] in await ids(tools, ready=True)
    # The report is done: its next occurrence waits on the pull's current occurrence, not the completed one.
    await tools.complete_task(task_id=report["id"])
    report_done = Envelope.from_dict((await outbox(db))[-1]["payload"])
    next_report = await handle_task_completed(db, report_done)
    assert next_report is not None
    blocked = (await tools.list_tasks(ready=False))["tasks"]
    assert [(t["id"], t["blocked_by"]) for t in blocked] == [(next_report, [next_gate])]
    created = [e for e in await outbox(db) if e["event_type"] == "task.created" and e["task_id"] == next_report]
    assert created[0]["payload"]["data"]["blocked_by"] == [next_gate]
    # A blocker id given as a completed occurrence is stored as its series' current occurrence.
    other = await tools.add_task(title="Read the report summary", blocked_by=[gate["id"]])
    assert other["blocked_by"] == [next_gate]
