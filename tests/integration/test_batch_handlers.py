"""The batch paths: a partition's events in one transaction (recurrence, reminder delivery), and the consumer loop's
batch handler with its fall-back to one-by-one handling, so one poison event is parked and the others handled."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.events import REMINDER_DUE, TASK_COMPLETED, TASK_CREATED, TOPIC_RECURRENCE, Envelope
from mcp_todo.handlers.delivery_targets import NotifyTargets
from mcp_todo.handlers.next_occurrence import handle_task_completed_batch
from mcp_todo.handlers.reminder_delivery import deliver_reminders
from mcp_todo.pipeline.kafka import dlq_topic
from mcp_todo.settings import Settings
from tests.integration.test_consumer_loop import TIMEOUT_S, Running, envelope
from tests.integration.test_consumer_loop import producer as producer  # the fixture, re-used
from tests.integration.test_consumer_loop import start_loop as start_loop  # the fixture, re-used
from tests.integration.test_recurrence_handler import (
    USER,
    completed_event,
    created_events,
    insert_task,
    series_rows,
)
from tests.integration.test_recurrence_handler import settings as settings  # the fixture, re-used
from tests.support.broker import read_topic
from tests.support.database import insert_row
from tests.support.polling import eventually
from tests.support.tasks import tag_task

DUE = datetime(2026, 6, 1, 9, tzinfo=UTC)


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture) -> None:
    # The handlers' summary lines are built only at INFO: an `extra=` key that clashes with a LogRecord attribute
    # fails there and nowhere else.
    caplog.set_level(logging.INFO, logger="mcp_todo")


async def add_tag(engine: AsyncEngine, task_id: int, name: str) -> None:
    async with engine.begin() as conn:
        await tag_task(conn, USER, task_id, name)


async def tag_names(engine: AsyncEngine, task_id: int) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT g.name FROM task_tags tt JOIN tags g ON g.id = tt.tag_id WHERE tt.task_id = :t ORDER BY 1"),
            {"t": task_id},
        )
        return [row.name for row in rows]


async def test_recurrence_batch_creates_each_successor_once_with_its_tags_and_event(
    db: AsyncEngine, settings: Settings
) -> None:
    tasks = [await insert_task(db, due_date=DUE + timedelta(hours=i)) for i in range(4)]
    await add_tag(db, tasks[0], "garden")
    no_rule = await insert_task(db, due_date=DUE)
    events = [await completed_event(db, task_id) for task_id in (*tasks, no_rule)]
    async with db.begin() as conn:
        await conn.execute(text("UPDATE tasks SET recurrence_rule = NULL WHERE id = :id"), {"id": no_rule})
    other_type = Envelope(TASK_CREATED, USER, tasks[1], {})
    twin = Envelope(TASK_COMPLETED, USER, tasks[2], events[2].data)  # the same fact again, another event id
    batch = [*events, other_type, twin]

    results = await handle_task_completed_batch(db, batch, settings=settings)

    assert [r is not None for r in results] == [True, True, True, True, False, False, False]
    for task_id, new_id in zip(tasks, results, strict=False):
        rows = await series_rows(db, task_id)
        assert [row["id"] for row in rows] == [task_id, new_id]
        assert rows[1]["due_date"] == rows[0]["due_date"] + timedelta(days=1)
        assert rows[1]["previous_task_id"] == task_id
        assert rows[1]["remind_at"] == rows[1]["due_date"] - timedelta(minutes=45)
    assert await tag_names(db, results[0] or 0) == ["garden"]
    created = await created_events(db)
    assert sorted(row["task_id"] for row in created) == sorted(r for r in results if r is not None)
    tagged = next(row for row in created if row["task_id"] == results[0])
    assert [tag["name"] for tag in tagged["payload"]["data"]["tags"]] == ["garden"]

    # Replayed as a whole: nothing more.
    assert await handle_task_completed_batch(db, batch, settings=settings) == [None] * len(batch)
    assert len(await created_events(db)) == 4


async def test_two_racing_recurrence_batches_create_one_each(db: AsyncEngine, settings: Settings) -> None:
    tasks = [await insert_task(db, due_date=DUE + timedelta(minutes=i)) for i in range(20)]
    events = [await completed_event(db, task_id) for task_id in tasks]
    # Overlapping batches in opposite orders: they must neither deadlock into failure nor create twins.
    async with asyncio.TaskGroup() as group:
        first = group.create_task(handle_task_completed_batch(db, events[:15], settings=settings))
        second = group.create_task(handle_task_completed_batch(db, events[5:][::-1], settings=settings))
    created = [r for r in (*first.result(), *second.result()) if r is not None]
    assert len(created) == 20
    for task_id in tasks:
        assert len(await series_rows(db, task_id)) == 2
    assert len(await created_events(db)) == 20


async def insert_reminder_task(engine: AsyncEngine, remind_at: datetime, status: str = "pending") -> int:
    row = {
        "user_id": USER,
        "title": "Call the bank",
        "status": status,
        "time_zone": "Asia/Tokyo",
        "due_date": remind_at + timedelta(hours=1),
        "remind_at": remind_at,
        "reminder_sent": True,
        "completed_at": remind_at if status == "completed" else None,
    }
    return await insert_row(engine, "tasks", row)


def reminder_event(task_id: int, remind_at: datetime) -> Envelope:
    return Envelope(
        REMINDER_DUE,
        USER,
        task_id,
        {
            "task_id": task_id,
            "title": "Call the bank",
            "due_date": (remind_at + timedelta(hours=1)).isoformat(),
            "remind_at": remind_at.isoformat(),
        },
    )


async def inbox(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT * FROM notifications ORDER BY task_id"))).mappings())


async def test_reminder_batch_fills_the_inbox_once(db: AsyncEngine, settings: Settings) -> None:
    at = datetime(2026, 6, 1, 8, tzinfo=UTC)
    pending = [await insert_reminder_task(db, at + timedelta(minutes=i)) for i in range(5)]
    done = await insert_reminder_task(db, at, status="completed")
    events = [reminder_event(task_id, at + timedelta(minutes=i)) for i, task_id in enumerate(pending)]
    batch = [*events, reminder_event(done, at), events[0], Envelope(TASK_CREATED, USER, pending[1], {})]

    await deliver_reminders(db, batch, settings, NotifyTargets([]))

    rows = await inbox(db)
    assert [row["task_id"] for row in rows] == pending  # once each; none for the completed task
    assert all(row["delivered_at"] is not None for row in rows)  # no targets: delivered with the row
    assert all("Asia/Tokyo" in row["message"] and "Call the bank" in row["message"] for row in rows)
    assert [row["remind_at"] for row in rows] == [at + timedelta(minutes=i) for i in range(5)]

    # Redelivered (a replay after a crash, a second notifier): nothing more.
    await deliver_reminders(db, batch, settings, NotifyTargets([]))
    assert len(await inbox(db)) == 5


@pytest.mark.kafka
async def test_consumer_batch_failure_parks_only_the_poison_event(
    kafka_settings: Settings,
    producer: AIOKafkaProducer,
    start_loop: Callable[..., Running],
) -> None:
    attempts: dict[int, int] = defaultdict(int)
    handled: list[int] = []
    batches: list[list[int]] = []

    async def handler(event: Envelope) -> None:
        attempts[event.task_id] += 1
        if event.task_id == 2:
            raise RuntimeError("poison")
        handled.append(event.task_id)

    async def batch_handler(events: list[Envelope]) -> None:
        batches.append([event.task_id for event in events])
        if any(event.task_id == 2 for event in events):
            raise RuntimeError("poison in the batch")  # as a transaction would: nothing of the batch is kept
        handled.extend(event.task_id for event in events)

    poison = envelope(2, seq=2)
    # Sent before the loop starts, on one key (one partition): the first poll brings them as one batch.
    for event in (envelope(1, seq=1), poison, envelope(3, seq=3), envelope(4, seq=4)):
        await producer.send(kafka_settings.topic(TOPIC_RECURRENCE), value=event.to_json(), key=b"one-partition")
    await producer.send_and_wait(kafka_settings.topic(TOPIC_RECURRENCE), value=b"\xff junk", key=b"one-partition")
    running = start_loop(handler, batch_handler=batch_handler, max_attempts=3)
    await running.ready()
    await eventually(lambda: handled == [1, 3, 4], TIMEOUT_S, "the events around the poison one are handled")

    assert batches and len(batches[0]) > 1  # the batch path was taken first
    assert attempts == {1: 1, 2: 3, 3: 1, 4: 1}  # after the batch failed: one by one, the poison retried, then parked
    bootstrap = kafka_settings.kafka_bootstrap_servers
    assert bootstrap is not None
    # The poison event after its attempts, then the junk record at once (not an envelope: no retry can repair it).
    parked = await read_topic(bootstrap, dlq_topic(kafka_settings.topic(TOPIC_RECURRENCE)), 2)
    assert Envelope.from_json(parked[0].value) == poison
    assert parked[1].value == b"\xff junk"
    assert dict(parked[1].headers)["mcp_todo.error"] == b"message is not UTF-8"
    await running.close()

    # Everything was committed: a new loop in the same group finds nothing to handle.
    again: list[Envelope] = []

    async def record(event: Envelope) -> None:
        again.append(event)

    marker = envelope(9, seq=9)
    await producer.send_and_wait(kafka_settings.topic(TOPIC_RECURRENCE), value=marker.to_json(), key=b"one-partition")
    second = start_loop(record, batch_handler=None)
    await second.ready()
    await eventually(lambda: len(again) >= 1, TIMEOUT_S, "the marker event is handled")
    assert again == [marker]
