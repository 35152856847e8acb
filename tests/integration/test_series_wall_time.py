"""A series asked to start at a wall time its first day skips keeps that wall time on the later days, through the
tools and the recurrer, although the database stores the first due date as an instant (docs/architecture.md, Time).

On 12 March 2028 New York's clocks jump from 02:00 to 03:00: `2028-03-12T02:00` is the instant 03:00 EDT, and the
series' later occurrences are at 02:00 (RFC 5545 DTSTART; python-dateutil agrees)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.tasks import load_tasks
from mcp_todo.handlers.next_occurrence import handle_task_completed
from mcp_todo.service.shapes import task_out
from mcp_todo.settings import get_settings
from tests.integration.test_recurrence_handler import completed_event
from tests.integration.tool_client import Clock, Tools, execute, outbox, server_for, task_row, tools_of

NEW_YORK = ZoneInfo("America/New_York")
RULE = "FREQ=MONTHLY;BYDAY=1TH"
SKIPPED = "2028-03-12T02:00"  # the first due date, a wall time that day does not have
AT_TWO = ["2028-04-06T02:00:00-04:00", "2028-05-04T02:00:00-04:00", "2028-06-01T02:00:00-04:00"]
AT_THREE = ["2028-04-06T03:00:00-04:00", "2028-05-04T03:00:00-04:00", "2028-06-01T03:00:00-04:00"]


@pytest.fixture
def clock() -> Clock:
    return Clock(fixed=datetime(2028, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str, clock: Clock) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "alice", clock=clock)) as client:
        yield client


async def recur(db: AsyncEngine, task_id: int) -> dict[str, Any]:
    """Run the recurrer on the task's completion; the new occurrence as the tools show it."""
    new_id = await handle_task_completed(db, await completed_event(db, task_id), settings=get_settings())
    assert new_id is not None
    async with db.connect() as conn:
        (task,) = await load_tasks(conn, "alice", [new_id])
    return task_out(task).model_dump(mode="json")


async def test_a_series_asked_for_a_skipped_time_keeps_it_through_tools_and_recurrer(
    tools: Tools, db: AsyncEngine
) -> None:
    task = await tools.add_task(title="rent", due_date=SKIPPED, recurrence_rule=RULE)
    assert task["due_date"] == "2028-03-12T03:00:00-04:00"  # occurrence 1 moves forward by the gap
    assert task["recurrence"]["next_occurrences"][:3] == AT_TWO
    row = await task_row(db, task["id"])
    assert row["series_start"] == row["due_date"]
    assert row["series_start_wall"] == datetime(2028, 3, 12, 2, 0)

    done = await tools.complete_task(task_id=task["id"])
    assert done["next_occurrence"] == AT_TWO[0]

    successor = await recur(db, task["id"])
    assert successor["due_date"] == AT_TWO[0]
    assert successor["recurrence"]["next_occurrences"][:2] == AT_TWO[1:]
    new_row = await task_row(db, successor["id"])
    assert (new_row["series_id"], new_row["series_start"]) == (task["id"], row["series_start"])
    assert new_row["series_start_wall"] == datetime(2028, 3, 12, 2, 0)
    # The `task.created` the recurrer wrote previews the same dates.
    created = [e for e in await outbox(db) if e["event_type"] == "task.created" and e["task_id"] == successor["id"]]
    assert created[0]["payload"]["data"]["recurrence"]["next_occurrences"][:2] == AT_TWO[1:]

    # And its successor, expanded from the series once more.
    await tools.complete_task(task_id=successor["id"])
    assert (await recur(db, successor["id"]))["due_date"] == AT_TWO[1]


async def test_re_anchoring_at_a_skipped_time_keeps_it(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="rent", due_date="2028-03-02T09:00")
    changed = await tools.update_task(task_id=task["id"], due_date=SKIPPED, recurrence_rule=RULE)
    assert changed["recurrence"]["next_occurrences"][:3] == AT_TWO
    assert (await task_row(db, task["id"]))["series_start_wall"] == datetime(2028, 3, 12, 2, 0)
    # A new rule without a new due date re-anchors at the same start, and keeps its wall time.
    changed = await tools.update_task(task_id=task["id"], recurrence_rule=RULE + ";COUNT=3")
    assert changed["recurrence"]["next_occurrences"] == AT_TWO[:2]
    # Removing the rule ends the series, wall time and all.
    await tools.update_task(task_id=task["id"], recurrence_rule=None)
    row = await task_row(db, task["id"])
    assert (row["series_start"], row["series_start_wall"]) == (None, None)


async def test_a_series_at_an_existing_time_is_unchanged(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="rent", due_date="2028-03-02T09:00", recurrence_rule=RULE)
    assert task["recurrence"]["next_occurrences"][:2] == ["2028-04-06T09:00:00-04:00", "2028-05-04T09:00:00-04:00"]
    assert (await task_row(db, task["id"]))["series_start_wall"] == datetime(2028, 3, 2, 9, 0)
    done = await tools.complete_task(task_id=task["id"])
    assert done["next_occurrence"] == "2028-04-06T09:00:00-04:00"
    assert (await recur(db, task["id"]))["due_date"] == "2028-04-06T09:00:00-04:00"


async def test_a_series_stored_without_its_wall_time_expands_from_its_instant(tools: Tools, db: AsyncEngine) -> None:
    task = await tools.add_task(title="rent", due_date=SKIPPED, recurrence_rule=RULE)
    await execute(db, "UPDATE tasks SET series_start_wall = NULL WHERE id = :id", id=task["id"])
    # As before the column existed: the stored instant, 03:00 EDT.
    shown = await tools.update_task(task_id=task["id"], title="rent!")
    assert shown["recurrence"]["next_occurrences"][:3] == AT_THREE
    done = await tools.complete_task(task_id=task["id"])
    assert done["next_occurrence"] == AT_THREE[0]
    successor = await recur(db, task["id"])
    assert successor["due_date"] == AT_THREE[0]
    assert (await task_row(db, successor["id"]))["series_start_wall"] is None
