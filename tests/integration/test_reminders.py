"""The reminder scheduler and delivery against the real PostgreSQL, with Apprise posting to a real HTTP endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.engine import create_engine
from mcp_todo.db.task_batches import _LOCK_DUE_REMINDERS
from mcp_todo.events import REMINDER_DUE, Envelope
from mcp_todo.handlers.delivery_targets import NotifyTargets
from mcp_todo.handlers.reminder_delivery import (
    deliver_reminder,
    list_notifications,
    resume_undelivered,
    resume_undelivered_when_reachable,
)
from mcp_todo.jobs.reminder_scheduler import ReminderScheduler
from mcp_todo.settings import Settings, get_settings
from tests.support.broker import TcpProxy
from tests.support.database import insert_row
from tests.support.http_receiver import Receiver
from tests.support.polling import eventually

USER = "alice"


@pytest.fixture
def settings() -> Settings:
    return get_settings().model_copy(update={"notify_urls": None})


async def db_now(engine: AsyncEngine) -> datetime:
    async with engine.connect() as conn:
        now: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
    return now


async def insert_task(
    engine: AsyncEngine, *, remind_at: datetime | None, due_date: datetime | None, **values: Any
) -> int:
    row: dict[str, Any] = {
        "user_id": USER,
        "title": "Call the dentist",
        "status": "pending",
        "time_zone": "Europe/Paris",
        "due_date": due_date,
        "remind_at": remind_at,
        "reminder_sent": False,
    }
    row.update(values)
    return await insert_row(engine, "tasks", row)


async def reminder_events(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT payload FROM outbox WHERE event_type = :type ORDER BY id"), {"type": REMINDER_DUE}
        )
        return [row.payload for row in rows]


async def fired_task_ids(engine: AsyncEngine) -> list[int]:
    return [payload["task_id"] for payload in await reminder_events(engine)]


@asynccontextmanager
async def running(scheduler: ReminderScheduler) -> AsyncIterator[ReminderScheduler]:
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        await asyncio.wait_for(scheduler.ready.wait(), 10)
        yield scheduler
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_claims_due_reminders_once(db: AsyncEngine, database_dsn: str, settings: Settings) -> None:
    now = await db_now(db)
    due = await insert_task(db, remind_at=now - timedelta(seconds=5), due_date=now + timedelta(hours=1))
    later = await insert_task(db, remind_at=now + timedelta(hours=1), due_date=now + timedelta(hours=2))
    scheduler = ReminderScheduler(db, database_dsn, settings)

    assert await scheduler.run_once() == 1
    assert await scheduler.run_once() == 0

    events = await reminder_events(db)
    assert [e["task_id"] for e in events] == [due]
    data = events[0]["data"]
    assert set(data) == {"task_id", "title", "due_date", "remind_at"}
    assert data["title"] == "Call the dentist"
    # Formatted in the task's zone, with its offset.
    assert data["due_date"].endswith(("+01:00", "+02:00"))
    assert datetime.fromisoformat(data["remind_at"]) == now - timedelta(seconds=5)
    async with db.connect() as conn:
        sent = {row.id: row.reminder_sent for row in await conn.execute(text("SELECT id, reminder_sent FROM tasks"))}
    assert sent == {due: True, later: False}


async def test_claim_is_index_driven_with_stale_statistics_and_in_remind_at_order(
    db: AsyncEngine, database_dsn: str, settings: Settings
) -> None:
    """Statistics gathered while hardly any reminder was pending must not turn the claim into a nested loop over the
    pending reminders (the planner once did, with `UPDATE … FROM` a CTE: quadratic in the backlog)."""
    now = await db_now(db)
    await insert_task(db, remind_at=now + timedelta(hours=1), due_date=now + timedelta(hours=2))
    async with db.begin() as conn:
        await conn.execute(text("ANALYZE tasks"))
        # A backlog the statistics know nothing of, inserted latest reminder first.
        await conn.execute(
            text(
                "INSERT INTO tasks (user_id, title, time_zone, due_date, remind_at) "
                "SELECT :u, 'Backlog ' || n, 'UTC', CAST(:now AS timestamptz) + interval '1 hour', "
                "CAST(:now AS timestamptz) - n * interval '1 second' "
                "FROM generate_series(1, 300) AS n"
            ),
            {"u": USER, "now": now},
        )
    async with db.connect() as conn:
        plan = "\n".join(
            (await conn.execute(text("EXPLAIN " + _LOCK_DUE_REMINDERS.text), {"batch": 100})).scalars().all()
        )
        await conn.rollback()
    # No join at all: the due rows come from the partial index in remind_at order (then are marked by their key).
    assert "Nested Loop" not in plan and "Join" not in plan, plan
    assert "ix_tasks_reminder_due" in plan, plan

    scheduler = ReminderScheduler(db, database_dsn, settings, batch_size=100)
    assert await scheduler.run_once() == 300
    events = await reminder_events(db)
    remind_ats = [datetime.fromisoformat(e["data"]["remind_at"]) for e in events]
    assert len(remind_ats) == 300
    assert remind_ats == sorted(remind_ats)


async def test_two_schedulers_fire_each_reminder_once(db: AsyncEngine, database_dsn: str, settings: Settings) -> None:
    now = await db_now(db)
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tasks (user_id, title, time_zone, due_date, remind_at) "
                "SELECT :u, 'task ' || n, 'UTC', :due, :at FROM generate_series(1, 500) AS n"
            ),
            {"u": USER, "due": now + timedelta(hours=1), "at": now - timedelta(seconds=1)},
        )
    first = ReminderScheduler(db, database_dsn, settings, batch_size=50)
    second = ReminderScheduler(db, database_dsn, settings, batch_size=50)
    async with asyncio.TaskGroup() as group:
        counts = [group.create_task(first.run_once()), group.create_task(second.run_once())]
    assert sum(c.result() for c in counts) == 500
    fired = await fired_task_ids(db)
    assert len(fired) == 500
    assert len(set(fired)) == 500


async def test_catch_up_at_start_up(db: AsyncEngine, database_dsn: str, settings: Settings) -> None:
    now = await db_now(db)
    # Came due two hours ago while nothing ran; the task is due in an hour: fires at start-up.
    recent = await insert_task(db, remind_at=now - timedelta(hours=2), due_date=now + timedelta(hours=1))
    # Past due by less than a day: still fires.
    overdue = await insert_task(db, remind_at=now - timedelta(hours=20), due_date=now - timedelta(hours=19))
    # Past due by three days: marked sent without an event.
    stale = await insert_task(db, remind_at=now - timedelta(days=3, hours=1), due_date=now - timedelta(days=3))
    # Completed while nothing ran: never.
    done = await insert_task(
        db, remind_at=now - timedelta(hours=1), due_date=now + timedelta(hours=1), status="completed", completed_at=now
    )

    async with running(ReminderScheduler(db, database_dsn, settings)):
        assert sorted(await fired_task_ids(db)) == sorted([recent, overdue])

    async with db.connect() as conn:
        sent = {row.id: row.reminder_sent for row in await conn.execute(text("SELECT id, reminder_sent FROM tasks"))}
    assert sent == {recent: True, overdue: True, stale: True, done: False}
    # A second start fires nothing again.
    async with running(ReminderScheduler(db, database_dsn, settings)):
        assert len(await fired_task_ids(db)) == 2


async def test_wakes_up_for_a_new_reminder_on_time(db: AsyncEngine, database_dsn: str, settings: Settings) -> None:
    async with running(ReminderScheduler(db, database_dsn, settings, poll_interval_s=30)):
        now = await db_now(db)
        remind_at = now + timedelta(seconds=1.5)
        task_id = await insert_task(db, remind_at=remind_at, due_date=now + timedelta(hours=1))

        async def fired() -> bool:
            return await fired_task_ids(db) == [task_id]

        await eventually(fired, 5.0, "the reminder fired")
        async with db.connect() as conn:
            written: datetime = (await conn.execute(text("SELECT max(created_at) FROM outbox"))).scalar_one()
        # Sleeping until remind_at (woken by NOTIFY, not by the 30 s poll): on time, not early.
        lateness = (written - remind_at).total_seconds()
        assert 0 <= lateness < 1.0


async def test_listen_connection_dropped_is_restored(db: AsyncEngine, database_dsn: str, settings: Settings) -> None:
    async with running(ReminderScheduler(db, database_dsn, settings, poll_interval_s=30)):
        async with db.begin() as conn:
            killed: int = (
                await conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query LIKE 'LISTEN%mcp_todo_reminders%'"
                    )
                )
            ).scalar_one()
        assert killed == 1

        async def listening_again() -> bool:
            async with db.connect() as conn:
                found = await conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query LIKE 'LISTEN%mcp_todo_reminders%'"
                    )
                )
                return bool(found.scalar_one() == 1)

        await eventually(listening_again, 5.0, "the scheduler listens again")
        now = await db_now(db)
        task_id = await insert_task(db, remind_at=now + timedelta(seconds=0.5), due_date=now + timedelta(hours=1))

        async def fired() -> bool:
            return await fired_task_ids(db) == [task_id]

        # Well before the 30 s safety-net poll: the restored LISTEN woke the scheduler.
        await eventually(fired, 3.0, "the reminder fired")


async def test_completed_task_never_fires(db: AsyncEngine, database_dsn: str, settings: Settings) -> None:
    async with running(ReminderScheduler(db, database_dsn, settings, poll_interval_s=30)) as scheduler:
        now = await db_now(db)
        task_id = await insert_task(db, remind_at=now + timedelta(seconds=1), due_date=now + timedelta(hours=1))
        async with db.begin() as conn:
            await conn.execute(
                text("UPDATE tasks SET status = 'completed', completed_at = now() WHERE id = :id"), {"id": task_id}
            )
        # Past its remind_at, a pass finds nothing to claim.
        await asyncio.sleep(max((now + timedelta(seconds=1.2) - await db_now(db)).total_seconds(), 0))
        assert await scheduler.run_once() == 0
    assert await fired_task_ids(db) == []


async def test_moved_due_date_re_arms(db: AsyncEngine, database_dsn: str, settings: Settings) -> None:
    async with running(ReminderScheduler(db, database_dsn, settings, poll_interval_s=30)):
        now = await db_now(db)
        task_id = await insert_task(db, remind_at=now - timedelta(seconds=1), due_date=now + timedelta(minutes=59))

        async def fired_times() -> list[str]:
            return [e["data"]["remind_at"] for e in await reminder_events(db)]

        async def fired_once() -> bool:
            return len(await fired_times()) == 1

        await eventually(fired_once, 5.0, "the reminder fired once")
        # What update_task does when the due date moves: recompute the lead-based reminder and re-arm it.
        new_remind_at = (await db_now(db)) + timedelta(seconds=1)
        async with db.begin() as conn:
            await conn.execute(
                text("UPDATE tasks SET due_date = :due, remind_at = :at, reminder_sent = false WHERE id = :id"),
                {"due": new_remind_at + timedelta(hours=1), "at": new_remind_at, "id": task_id},
            )

        async def fired_twice() -> bool:
            return len(await fired_times()) == 2

        await eventually(fired_twice, 5.0, "the re-armed reminder fired")
        assert datetime.fromisoformat((await fired_times())[1]) == new_remind_at


async def reminder_envelope(engine: AsyncEngine, task_id: int) -> Envelope:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM tasks WHERE id = :id"), {"id": task_id})).mappings().one()
    return Envelope(
        event_type=REMINDER_DUE,
        user_id=row["user_id"],
        task_id=task_id,
        data={
            "task_id": task_id,
            "title": row["title"],
            "due_date": row["due_date"].isoformat() if row["due_date"] else None,
            "remind_at": row["remind_at"].isoformat(),
        },
    )


async def inbox(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT * FROM notifications ORDER BY id"))).mappings())


async def test_delivery_inbox_and_apprise_once(db: AsyncEngine, settings: Settings, http_receiver: Receiver) -> None:
    due = datetime(2027, 3, 10, 22, 59, 59, tzinfo=UTC)
    task_id = await insert_task(db, remind_at=due - timedelta(hours=1), due_date=due, reminder_sent=True)
    envelope = await reminder_envelope(db, task_id)
    targets = NotifyTargets([http_receiver.url])

    for _ in range(3):  # the event redelivered: one inbox row, one message
        await deliver_reminder(db, envelope, settings, targets)

    rows = await inbox(db)
    assert len(rows) == 1
    assert rows[0]["delivered_at"] is not None
    assert (rows[0]["task_id"], rows[0]["user_id"], rows[0]["remind_at"]) == (task_id, USER, due - timedelta(hours=1))
    # Names the task and its due time in the task's zone (Paris, UTC+1 in March).
    assert (
        rows[0]["message"] == "Reminder: “Call the dentist” is due Wed 10 Mar 2027 at 23:59 (Europe/Paris, UTC+01:00)"
    )
    messages = http_receiver.snapshot()
    assert len(messages) == 1
    assert messages[0]["message"] == rows[0]["message"]
    assert "Call the dentist" in messages[0]["title"]

    listed = await _list(db, USER)
    assert [(n.task_id, n.message) for n in listed] == [(task_id, rows[0]["message"])]
    assert listed[0].due_date == "2027-03-10T23:59:59+01:00"
    assert await _list(db, "bob") == []


async def _list(engine: AsyncEngine, user_id: str) -> list[Any]:
    async with engine.connect() as conn:
        return list(await list_notifications(conn, user_id))


async def test_failing_target_is_retried_and_does_not_block_others(
    db: AsyncEngine, settings: Settings, http_receiver: Receiver
) -> None:
    task_id = await insert_task(
        db, remind_at=datetime(2027, 1, 1, tzinfo=UTC), due_date=datetime(2027, 1, 2, tzinfo=UTC)
    )
    dead = Receiver()  # bound then closed: connection refused
    dead.stop()
    targets = NotifyTargets([dead.url, http_receiver.url], attempts=3, first_backoff_s=0.05, background=True)
    started = time.monotonic()
    await deliver_reminder(db, await reminder_envelope(db, task_id), settings, targets)
    # Background delivery: the consumer is not held up by the retries.
    assert time.monotonic() - started < 0.5

    async def delivered() -> bool:
        rows = await inbox(db)
        return bool(rows) and rows[0]["delivered_at"] is not None

    await eventually(delivered, 5.0, "the inbox row is delivered")
    assert len(http_receiver.snapshot()) == 1
    await targets.drain()


async def test_undelivered_row_is_resumed(db: AsyncEngine, settings: Settings, http_receiver: Receiver) -> None:
    task_id = await insert_task(
        db, remind_at=datetime(2027, 1, 1, tzinfo=UTC), due_date=datetime(2027, 1, 2, tzinfo=UTC)
    )
    async with db.begin() as conn:  # a previous process crashed after the inbox row, before the targets
        await conn.execute(
            text(
                "INSERT INTO notifications (user_id, task_id, remind_at, title, message) "
                "VALUES (:u, :t, :at, 'Call the dentist', 'Reminder: x')"
            ),
            {"u": USER, "t": task_id, "at": datetime(2027, 1, 1, tzinfo=UTC)},
        )
    assert await resume_undelivered(db, NotifyTargets([http_receiver.url])) == 1
    assert len(http_receiver.snapshot()) == 1
    assert (await inbox(db))[0]["delivered_at"] is not None
    assert await resume_undelivered(db, NotifyTargets([http_receiver.url])) == 0


async def test_resume_at_start_waits_for_an_unreachable_database(
    db: AsyncEngine, database_dsn: str, http_receiver: Receiver
) -> None:
    """A notifier starting while PostgreSQL restarts: its first reads fail (refused, or cut mid-handshake). The resume
    waits for the database instead of failing the worker, and resumes once it is back."""
    task_id = await insert_task(
        db, remind_at=datetime(2027, 1, 1, tzinfo=UTC), due_date=datetime(2027, 1, 2, tzinfo=UTC)
    )
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO notifications (user_id, task_id, remind_at, title, message) "
                "VALUES (:u, :t, :at, 'Call the dentist', 'Reminder: x')"
            ),
            {"u": USER, "t": task_id, "at": datetime(2027, 1, 1, tzinfo=UTC)},
        )
    url = make_url(database_dsn)
    proxy = TcpProxy(url.port or 5432)  # not started: connections are refused, as while the server restarts
    engine = create_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    stop = asyncio.Event()
    try:
        resuming = asyncio.create_task(
            resume_undelivered_when_reachable(engine, NotifyTargets([http_receiver.url]), stop)
        )
        await asyncio.sleep(1.0)
        assert not resuming.done(), "the resume gave up (or failed) while the database was unreachable"
        await proxy.start()
        assert await asyncio.wait_for(resuming, 30) == 1
        assert len(http_receiver.snapshot()) == 1

        await proxy.cut()  # unreachable again: a stop ends the wait without an error
        waiting = asyncio.create_task(
            resume_undelivered_when_reachable(engine, NotifyTargets([http_receiver.url]), stop)
        )
        await asyncio.sleep(0.5)
        stop.set()
        assert await asyncio.wait_for(waiting, 15) == 0
    finally:
        await proxy.close()
        await engine.dispose()


async def test_delivery_dropped_for_a_completed_task(
    db: AsyncEngine, settings: Settings, http_receiver: Receiver
) -> None:
    task_id = await insert_task(
        db, remind_at=datetime(2027, 1, 1, tzinfo=UTC), due_date=datetime(2027, 1, 2, tzinfo=UTC)
    )
    envelope = await reminder_envelope(db, task_id)
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE tasks SET status = 'completed', completed_at = now() WHERE id = :id"), {"id": task_id}
        )
    await deliver_reminder(db, envelope, settings, NotifyTargets([http_receiver.url]))
    assert await inbox(db) == []
    assert http_receiver.snapshot() == []


async def test_without_targets_the_row_is_delivered_at_once(db: AsyncEngine, settings: Settings) -> None:
    task_id = await insert_task(db, remind_at=datetime(2027, 1, 1, tzinfo=UTC), due_date=None)
    await deliver_reminder(db, await reminder_envelope(db, task_id), settings)
    rows = await inbox(db)
    assert len(rows) == 1
    assert rows[0]["delivered_at"] is not None
    assert rows[0]["message"] == "Reminder: “Call the dentist”"
