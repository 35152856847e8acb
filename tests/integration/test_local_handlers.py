"""Local mode: the relay feeds the same handlers in-process (no Kafka); recurrence and reminders work end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.events import TASK_COMPLETED, Envelope
from mcp_todo.handlers.local import run_local_mode
from mcp_todo.outbox import write_events
from mcp_todo.settings import get_settings

USER = "alice"


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


async def test_local_mode_runs_recurrence_and_reminders(db: AsyncEngine, database_dsn: str) -> None:
    settings = get_settings().model_copy(update={"kafka_bootstrap_servers": None, "notify_urls": None})
    assert settings.local_mode
    due = datetime(2026, 6, 1, 9, tzinfo=UTC)
    async with db.begin() as conn:
        now = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        recurring = (
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
        reminded = (
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

        await eventually(next_occurrence_exists)
        await eventually(reminder_in_inbox)
    finally:
        stop.set()
        await asyncio.wait_for(job, 15)
