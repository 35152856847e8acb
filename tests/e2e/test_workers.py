"""The worker binaries as real processes, with the real tansu broker and PostgreSQL: exactly-once recurrence through
replays, races and SIGKILL; reminders delivered on time to a real HTTP endpoint through Apprise; exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.outbox import write_events
from mcp_todo.events import TOPIC_RECURRENCE, Envelope
from mcp_todo.pipeline.kafka import producer_kwargs
from mcp_todo.settings import Settings
from tests.support.database import insert_row
from tests.support.http_receiver import Receiver
from tests.support.polling import eventually
from tests.support.processes import BIN, FAST_REJOIN_SESSION_TIMEOUT_MS, WorkerProcess, worker_env
from tests.support.tasks import insert_completed_recurring, replayed

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

USER = "alice"


async def complete_recurring_task(engine: AsyncEngine, *, replays: int = 1) -> tuple[int, Envelope]:
    """A completed daily task and its `task.completed` in the outbox (several times over: replays)."""
    due = datetime(2026, 6, 1, 9, 0).astimezone()
    async with engine.begin() as conn:
        [event] = await insert_completed_recurring(
            conn, user=USER, due=due, completed_at=due + timedelta(minutes=10), rule="FREQ=DAILY", zone="Europe/Berlin"
        )
        await write_events(conn, replayed(event, replays))
    return event.task_id, event


async def successors(engine: AsyncEngine, task_id: int) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (await conn.execute(text("SELECT * FROM tasks WHERE previous_task_id = :id"), {"id": task_id})).mappings()
        )


async def outbox_drained(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return bool(
            (await conn.execute(text("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"))).scalar_one()
        )


async def test_recurrer_creates_the_next_occurrence_then_stops_on_sigterm(
    workers: Callable[..., Awaitable[WorkerProcess]], e2e_db: tuple[str, AsyncEngine]
) -> None:
    _, engine = e2e_db
    recurrer = await workers("mcp-todo-recurrer")
    await recurrer.wait_ready()
    started = time.monotonic()
    task_id, _ = await complete_recurring_task(engine)

    async def created() -> bool:
        return len(await successors(engine, task_id)) == 1

    await eventually(created, 2.0, "the next occurrence exists")
    latency = time.monotonic() - started
    new = (await successors(engine, task_id))[0]
    assert new["due_date"] == datetime(2026, 6, 2, 9, 0).astimezone()
    assert new["status"] == "pending"
    # Its task.created went out through the recurrer's own relay.
    await eventually(lambda: outbox_drained(engine), 5.0, "the outbox is published")

    code, took = await recurrer.stop(signal.SIGTERM)
    assert code == 0, recurrer.tail()
    assert took < 30
    assert recurrer.stdout == b""
    assert latency < 2.0


async def test_the_recurrer_purges_old_trash_at_start(
    workers: Callable[..., Awaitable[WorkerProcess]], e2e_db: tuple[str, AsyncEngine]
) -> None:
    """Tasks trashed longer ago than MCP_TODO_TRASH_DAYS go for good, each with a task.deleted (reason purged);
    younger trash stays."""
    _, engine = e2e_db
    now = datetime.now().astimezone()
    old, young = [
        await insert_row(
            engine,
            "tasks",
            {"user_id": USER, "title": title, "time_zone": "UTC", "deleted_at": now - timedelta(days=d)},
        )
        for title, d in (("old", 8), ("young", 6))
    ]
    recurrer = await workers("mcp-todo-recurrer", MCP_TODO_TRASH_DAYS="7")

    async def purged() -> bool:
        async with engine.connect() as conn:
            ids: set[int] = set((await conn.execute(text("SELECT id FROM tasks"))).scalars())
        return ids == {young}

    await eventually(purged, 10.0, "the old trash is purged")
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT task_id, payload FROM outbox"))).mappings().all()
    assert [(row["task_id"], row["payload"]["data"]["reason"]) for row in rows] == [(old, "purged")]
    await eventually(lambda: outbox_drained(engine), 10.0, "the purge's event is published")
    code, _ = await recurrer.stop(signal.SIGTERM)
    assert code == 0, recurrer.tail()


async def test_replays_and_two_racing_recurrers_make_one(
    workers: Callable[..., Awaitable[WorkerProcess]], e2e_db: tuple[str, AsyncEngine], kafka_settings: Settings
) -> None:
    _, engine = e2e_db
    first = await workers("mcp-todo-recurrer")
    await first.wait_ready()
    task_id, event = await complete_recurring_task(engine, replays=3)
    # The same bytes again straight onto the topic, as a broker redelivery would bring them.
    producer = AIOKafkaProducer(**producer_kwargs(kafka_settings))
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(
                kafka_settings.topic(TOPIC_RECURRENCE), event.to_json(), key=event.key.encode()
            )
    finally:
        await producer.stop()
    # A second recurrer joins while the first is at work: the group rebalances mid-stream.
    second = await workers("mcp-todo-recurrer")

    async def all_handled() -> bool:
        return handled(first) + handled(second) >= 6

    await eventually(all_handled, 45.0, "all six deliveries are handled")
    assert len(await successors(engine, task_id)) == 1
    # The first may have handled all six before the second finished starting; a graceful stop needs it running.
    await second.wait_ready()
    for worker in (first, second):
        code, _ = await worker.stop()
        assert code == 0, worker.tail()


def handled(worker: WorkerProcess) -> int:
    """How many events the worker's consumer reports handled (its per-batch summary lines)."""
    return sum(int(line.split(" handled=")[1].split()[0]) for line in worker.lines if 'msg="consumer batch"' in line)


async def test_sigkill_then_restart_makes_one(
    workers: Callable[..., Awaitable[WorkerProcess]], e2e_db: tuple[str, AsyncEngine]
) -> None:
    _, engine = e2e_db
    recurrer = await workers("mcp-todo-recurrer")
    await recurrer.wait_ready()
    task_id, _ = await complete_recurring_task(engine)

    async def created() -> bool:
        return len(await successors(engine, task_id)) >= 1

    await eventually(created, 5.0, "the next occurrence exists")
    # Killed the moment the occurrence is committed: quite likely before its offset is.
    recurrer.kill()
    await recurrer.stop(signal.SIGKILL)
    restarted = await workers("mcp-todo-recurrer")
    await restarted.wait_ready()
    # Whether or not the event comes again, the restarted worker settles with one occurrence.
    await eventually(lambda: outbox_drained(engine), 10.0, "the outbox is published")
    assert len(await successors(engine, task_id)) == 1
    code, _ = await restarted.stop()
    assert code == 0


async def test_worker_without_kafka_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    for name in ("mcp-todo-recurrer", "mcp-todo-notifier"):
        proc = await asyncio.create_subprocess_exec(
            str(BIN / name), env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 2
        assert out == b""
        message = err.decode().strip()
        assert len(message.splitlines()) == 1
        assert "KAFKA_BOOTSTRAP_SERVERS" in message and "local mode" in message and "mcp-todo" in message
        assert "Traceback" not in message


async def test_check_flag(e2e_db: tuple[str, AsyncEngine], kafka_settings: Settings, tmp_path: Path) -> None:
    env = worker_env(e2e_db[0], kafka_settings, session_timeout_ms=FAST_REJOIN_SESSION_TIMEOUT_MS)
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "mcp-todo-notifier"), "--check", env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert (proc.returncode, out) == (0, b"")
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"  # nothing listens there
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "mcp-todo-recurrer"), "--check", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "check failed" in err.decode() and "Traceback" not in err.decode()


async def db_now(engine: AsyncEngine) -> datetime:
    async with engine.connect() as conn:
        now: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
    return now


async def add_reminder(engine: AsyncEngine, remind_at: datetime) -> int:
    row = {
        "user_id": USER,
        "title": "Send the invoice",
        "time_zone": "Asia/Tokyo",
        "due_date": remind_at + timedelta(hours=1),
        "remind_at": remind_at,
    }
    return await insert_row(engine, "tasks", row)


async def inbox_rows(engine: AsyncEngine, task_id: int) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (await conn.execute(text("SELECT * FROM notifications WHERE task_id = :t"), {"t": task_id})).mappings()
        )


async def test_reminder_delivered_on_time_through_apprise(
    workers: Callable[..., Awaitable[WorkerProcess]], e2e_db: tuple[str, AsyncEngine], http_receiver: Receiver
) -> None:
    _, engine = e2e_db
    notifier = await workers("mcp-todo-notifier", MCP_TODO_NOTIFY_URLS=http_receiver.url)
    await notifier.wait_ready()
    remind_at = await db_now(engine) + timedelta(seconds=3)
    task_id = await add_reminder(engine, remind_at)

    async def received() -> bool:
        return len(http_receiver.snapshot()) >= 1

    await eventually(received, 10.0, "the HTTP receiver got the reminder")
    lateness = http_receiver.arrivals[0] - remind_at.timestamp()
    message = http_receiver.snapshot()[0]
    assert "Send the invoice" in message["message"] and "Asia/Tokyo" in message["message"]

    async def delivered() -> bool:
        rows = await inbox_rows(engine, task_id)
        return len(rows) == 1 and rows[0]["delivered_at"] is not None

    await eventually(delivered, 5.0, "the inbox row is marked delivered")
    code, _ = await notifier.stop()
    assert code == 0, notifier.tail()
    assert len(http_receiver.snapshot()) == 1
    assert len(await inbox_rows(engine, task_id)) == 1
    assert not any(http_receiver.url in line or str(http_receiver.port) in line for line in notifier.lines)
    assert 0 <= lateness < 2.0, lateness


async def test_reminder_missed_while_stopped_fires_once_at_start(
    workers: Callable[..., Awaitable[WorkerProcess]], e2e_db: tuple[str, AsyncEngine], http_receiver: Receiver
) -> None:
    _, engine = e2e_db
    # Due a second from now, and no notifier running.
    remind_at = await db_now(engine) + timedelta(seconds=1)
    task_id = await add_reminder(engine, remind_at)

    async def past_due() -> bool:
        return await db_now(engine) > remind_at

    await eventually(past_due, 5.0, "the reminder time has passed")
    notifier = await workers("mcp-todo-notifier", MCP_TODO_NOTIFY_URLS=http_receiver.url)
    await notifier.wait_ready()

    async def received() -> bool:
        return len(http_receiver.snapshot()) >= 1

    await eventually(received, 10.0, "the HTTP receiver got the reminder")
    code, _ = await notifier.stop()
    assert code == 0
    assert len(http_receiver.snapshot()) == 1
    assert len(await inbox_rows(engine, task_id)) == 1
