"""Local mode: the relay feeds the same handlers in-process (no Kafka); recurrence and reminders work end to end."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.outbox import write_events
from mcp_todo.pipeline.local_mode import run_local_mode
from mcp_todo.settings import get_settings
from tests.integration.tool_client import Clock, execute, server_for, settings_for, tools_of
from tests.support.polling import eventually
from tests.support.tasks import insert_completed_recurring, replayed

USER = "alice"


async def test_local_mode_runs_recurrence_and_reminders(db: AsyncEngine, database_dsn: str) -> None:
    settings = get_settings().model_copy(update={"kafka_bootstrap_servers": None, "notify_urls": None})
    assert settings.local_mode
    due = datetime(2026, 6, 1, 9, tzinfo=UTC)
    async with db.begin() as conn:
        now: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        completion = await insert_completed_recurring(
            conn, user=USER, due=due, completed_at=due, rule="FREQ=WEEKLY", zone="UTC"
        )
        await write_events(conn, completion)
        recurring = completion[0].task_id
        reminded: int = (
            await conn.execute(
                text(
                    "INSERT INTO tasks (user_id, title, time_zone, due_date, remind_at) "
                    "VALUES (:u, 'Dentist', 'UTC', :due, :at) RETURNING id"
                ),
                {"u": USER, "due": now + timedelta(hours=1), "at": now + timedelta(seconds=0.5)},
            )
        ).scalar_one()

    stop = asyncio.Event()
    job = asyncio.create_task(run_local_mode(db, database_dsn, settings, stop))
    try:

        async def next_occurrence_exists() -> bool:
            async with db.connect() as conn:
                found = await conn.execute(
                    text("SELECT due_date FROM tasks WHERE previous_task_id = :id"), {"id": recurring}
                )
                return [row.due_date for row in found] == [due + timedelta(days=7)]

        async def reminder_in_inbox() -> bool:
            async with db.connect() as conn:
                count = await conn.execute(
                    text("SELECT count(*) FROM notifications WHERE task_id = :id AND delivered_at IS NOT NULL"),
                    {"id": reminded},
                )
                return count.scalar_one() == 1

        await eventually(next_occurrence_exists, 10.0, "the next occurrence exists")
        await eventually(reminder_in_inbox, 10.0, "the reminder is delivered to the inbox")
    finally:
        stop.set()
        await asyncio.wait_for(job, 15)


async def test_local_mode_hands_a_burst_of_completions_to_the_batch_handler(
    db: AsyncEngine, database_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = get_settings().model_copy(update={"kafka_bootstrap_servers": None, "notify_urls": None})
    due = datetime(2026, 6, 1, 9, tzinfo=UTC)
    async with db.begin() as conn:
        completions = await insert_completed_recurring(
            conn, user=USER, due=due, completed_at=due, rule="FREQ=DAILY", zone="UTC", count=20
        )
        task_ids = [event.task_id for event in completions]
        # Each completion twice (a replay): still one successor each.
        await write_events(conn, [copy for event in completions for copy in replayed(event, 2)])

    caplog.set_level(logging.INFO, logger="mcp_todo.handlers.next_occurrence")
    stop = asyncio.Event()
    job = asyncio.create_task(run_local_mode(db, database_dsn, settings, stop))
    try:

        async def successors() -> list[int]:
            async with db.connect() as conn:
                found = await conn.execute(
                    text("SELECT previous_task_id FROM tasks WHERE previous_task_id = ANY(:ids)"), {"ids": task_ids}
                )
                return sorted(int(row.previous_task_id) for row in found)

        async def all_created() -> bool:
            return await successors() == sorted(task_ids)

        await eventually(all_created, 10.0, "every completion has its successor")
    finally:
        stop.set()
        await asyncio.wait_for(job, 15)
    assert await successors() == sorted(task_ids)
    # The relay's batch went to the batch handler (one transaction), not forty one-event transactions.
    batch_sizes = [getattr(r, "events", 0) for r in caplog.records if r.getMessage() == "recurrence handled"]
    assert max(batch_sizes) > 1


async def test_local_mode_repeats_after_completion_copies_subtasks_and_purges_the_trash(
    db: AsyncEngine, database_dsn: str
) -> None:
    """In local mode, from the tools: the next occurrence of a task that repeats after completion, with
    fresh copies of its subtasks, made by the in-process recurrer; and old trash purged at start."""
    clock = Clock(datetime(2027, 1, 2, 15, 0, tzinfo=UTC))
    async with tools_of(server_for(db, database_dsn, USER, clock=clock)) as tools:
        parent = await tools.add_task(
            title="Water plants",
            due_date="2027-01-02T09:00",
            recurrence_rule="FREQ=DAILY;INTERVAL=3",
            recurrence_from="completion",
        )
        await tools.add_task(title="Fern", parent_id=parent["id"])
        old = await tools.add_task(title="Old")
        await tools.delete_task(task_id=old["id"])
        await execute(db, "UPDATE tasks SET deleted_at = now() - interval '31 days' WHERE id = :id", id=old["id"])
        done = await tools.complete_task(task_id=parent["id"])
        assert done["next_occurrence"] == "2027-01-05T09:00:00-05:00"

        settings = settings_for(database_dsn, USER)
        assert settings.local_mode
        stop = asyncio.Event()
        local = asyncio.create_task(run_local_mode(db, database_dsn, settings, stop))
        try:

            async def made() -> bool:
                pending = (await tools.list_tasks(status="pending"))["tasks"]
                return any(t["title"] == "Water plants" for t in pending) and len(pending) == 2

            await eventually(made, 10.0, "the next occurrence and its subtask")
            [successor] = [t for t in (await tools.list_tasks(status="pending"))["tasks"] if t["title"] != "Fern"]
            assert successor["due_date"] == "2027-01-05T09:00:00-05:00"
            [copy] = (await tools.list_tasks(parent_id=successor["id"]))["tasks"]
            assert copy["title"] == "Fern" and copy["status"] == "pending"

            async def purged() -> bool:
                return bool((await tools.list_tasks(status="deleted"))["total"] == 0)

            await eventually(purged, 10.0, "the old trash is purged")
        finally:
            stop.set()
            await asyncio.wait_for(local, 30.0)
