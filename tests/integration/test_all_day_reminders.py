"""A task due on a date without a time (due at 23:59:59) is reminded of in the morning of that day, at
MCP_TODO_ALL_DAY_REMINDER_TIME (09:00 by default), through the tools and the recurrer; a task with a time keeps
due - lead. Times in America/New_York (the tool client's zone); 12 March 2027 is a Friday in winter time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.tasks import load_tasks
from mcp_todo.handlers.next_occurrence import handle_task_completed
from mcp_todo.service.shapes import task_out
from tests.integration.test_recurrence_handler import completed_event
from tests.integration.tool_client import Clock, Tools, server_for, settings_for, tools_of


@pytest.fixture
def clock() -> Clock:
    return Clock(fixed=datetime(2027, 3, 8, 15, 0, tzinfo=UTC))  # Monday morning in New York


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str, clock: Clock) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "alice", clock=clock)) as client:
        yield client


async def test_a_date_without_a_time_is_reminded_of_that_morning(tools: Tools) -> None:
    task = await tools.add_task(title="file taxes", due_date="2027-03-12")
    assert task["due_date"] == "2027-03-12T23:59:59-05:00"
    assert task["remind_at"] == "2027-03-12T09:00:00-05:00"  # not 22:59:59, an hour before that night's midnight
    phrase = await tools.add_task(title="water plants", due_date="friday")
    assert phrase["remind_at"] == "2027-03-12T09:00:00-05:00"
    timed = await tools.add_task(title="call", due_date="2027-03-12T15:00")
    assert timed["remind_at"] == "2027-03-12T14:00:00-05:00"


async def test_moving_and_leads_keep_the_morning(tools: Tools) -> None:
    task = await tools.add_task(title="file taxes", due_date="2027-03-12T15:00")
    moved = await tools.update_task(task_id=task["id"], due_date="2027-03-19")
    assert moved["remind_at"] == "2027-03-19T09:00:00-04:00"  # New York is on summer time from 14 March
    day_before = await tools.set_reminder(task_id=task["id"], remind_before_minutes=24 * 60)
    assert day_before["remind_at"] == "2027-03-18T09:00:00-04:00"
    back = await tools.update_task(task_id=task["id"], due_date="2027-03-12T15:00")
    assert back["remind_at"] == "2027-03-11T15:00:00-05:00"  # a time again: due - lead


async def test_the_all_day_time_is_a_setting(db: AsyncEngine, database_dsn: str, clock: Clock) -> None:
    server = server_for(db, database_dsn, "alice", clock=clock, MCP_TODO_ALL_DAY_REMINDER_TIME="07:30")
    async with tools_of(server) as tools:
        task = await tools.add_task(title="file taxes", due_date="2027-03-12")
    assert task["remind_at"] == "2027-03-12T07:30:00-05:00"


async def test_the_next_occurrence_of_an_all_day_series_is_reminded_of_in_its_morning(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    task = await tools.add_task(title="stand-up notes", due_date="2027-03-12", recurrence_rule="FREQ=WEEKLY")
    await tools.complete_task(task_id=task["id"])
    settings = settings_for(database_dsn, MCP_TODO_ALL_DAY_REMINDER_TIME="08:15")
    new_id = await handle_task_completed(db, await completed_event(db, task["id"]), settings=settings)
    assert new_id is not None
    async with db.connect() as conn:
        (following,) = await load_tasks(conn, "alice", [new_id])
    shown: dict[str, Any] = task_out(following).model_dump(mode="json")
    assert shown["due_date"] == "2027-03-19T23:59:59-04:00"
    assert shown["remind_at"] == "2027-03-19T08:15:00-04:00"
