"""Local mode: the relay feeds the same handlers in-process (no Kafka); recurrence and reminders work end to end."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import ScalarResult, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.events import TASK_COMPLETED, Envelope
from mcp_todo.handlers.local import run_local_mode
from mcp_todo.outbox import write_events
from mcp_todo.settings import get_settings
from tests.support.polling import eventually

USER = "alice"


async def test_local_mode_runs_recurrence_and_reminders(db: AsyncEngine, database_dsn: str) -> None:
    settings = get_settings().model_copy(update={"kafka_bootstrap_servers": None, "notify_urls": None})
    assert settings.local_mode
    due = datetime(2026, 6, 1, 9, tzinfo=UTC)
    async with db.begin() as conn:
        now: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        recurring: int = (
            await conn.execute(
                text(
                    "INSERT INTO tasks (user_id, title, status, time_zone, due_date, recurrence_rule, completed_at) "
                    "VALUES (:u, 'Stand-up', 'completed', 'UTC', :due, 'FREQ=WEEKLY', :due) RETURNING id"
                ),
                {"u": USER, "due": due},
            )
        ).scalar_one()
        data = {
            "completed_at": due.isoformat(),
            "due_date": due.isoformat(),
            "recurrence_rule": "FREQ=WEEKLY",
            "series_id": None,
            "time_zone": "UTC",
        }
        await write_events(conn, [Envelope(TASK_COMPLETED, USER, int(recurring), data)])
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
    data = {
        "completed_at": due.isoformat(),
        "due_date": due.isoformat(),
        "recurrence_rule": "FREQ=DAILY",
        "series_id": None,
        "time_zone": "UTC",
    }
    async with db.begin() as conn:
        ids: ScalarResult[int] = (
            await conn.execute(
                text(
                    "INSERT INTO tasks (user_id, title, status, time_zone, due_date, recurrence_rule, completed_at) "
                    "SELECT :u, 'Stand-up ' || n, 'completed', 'UTC', :due, 'FREQ=DAILY', :due "
                    "FROM generate_series(1, 20) AS n RETURNING id"
                ),
                {"u": USER, "due": due},
            )
        ).scalars()
        task_ids = [int(i) for i in ids]
        # Each completion twice (a replay): still one successor each.
        events = [Envelope(TASK_COMPLETED, USER, task_id, data) for task_id in task_ids for _ in range(2)]
        await write_events(conn, events)

    caplog.set_level(logging.INFO, logger="mcp_todo.handlers.recurrence")
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
