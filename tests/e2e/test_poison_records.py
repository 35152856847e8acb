"""Hostile and random records on the topics the workers consume, through the real tansu broker to the real worker
processes: each record is parked on the dead-letter topic with its reason, the worker lives on, commits past it, and
handles the good record sent after them; a restart does not meet the poison again."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.events import (
    REMINDER_DUE,
    TASK_COMPLETED,
    TASK_CREATED,
    TOPIC_RECURRENCE,
    TOPIC_REMINDERS,
    Envelope,
)
from mcp_todo.pipeline.kafka import dlq_topic, producer_kwargs
from mcp_todo.settings import Settings
from tests.support.broker import read_topic
from tests.support.database import insert_row
from tests.support.polling import eventually
from tests.support.processes import WorkerProcess
from tests.support.tasks import insert_completed_recurring

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

USER = "alice"
SEED = 20261207
RANDOM_RECORDS = 12
# Generous against a loaded CI machine: each wait is for a condition, and normally takes well under a second or two
# once the workers are ready (a tansu group join takes ~5 s).
TIMEOUT_S = 30.0
# A log line quotes nothing of a record, so none comes near the size of the hostile ones.
MAX_LOG_LINE = 4096


def hostile_records(good: Envelope, wrong_type: Envelope, rng: random.Random) -> list[tuple[str, bytes | None]]:
    """(what, value): records no worker can act on, each for a reason of its own, then seeded random ones."""
    raw = good.to_dict()

    def envelope(**changes: Any) -> bytes:
        return json.dumps({**raw, **changes}).encode()

    def spliced(old: str, new: str) -> bytes:
        value = good.to_json().decode()
        assert old in value
        return value.replace(old, new, 1).encode()

    records: list[tuple[str, bytes | None]] = [
        ("100 000 nested [", b"[" * 100_000),
        ("50 000 nested objects", b'{"a":' * 50_000),
        ("a 5 000-digit integer", b"1" * 5000),
        ("a 5 000-digit task_id", spliced(f'"task_id":{good.task_id}', '"task_id":' + "9" * 5000)),
        (
            "a 5 000-digit integer in data",
            envelope(data={**good.data, "n": 0}).replace(b'"n": 0', b'"n": ' + b"7" * 5000),
        ),
        ("task_id past 64 bits", spliced(f'"task_id":{good.task_id}', f'"task_id":{2**64}')),
        ("task_id negative", envelope(task_id=-good.task_id)),
        ("task_id a string", envelope(task_id=str(good.task_id))),
        ("task_id true", envelope(task_id=True)),
        ("invalid UTF-8", b"\xff\xfe" + good.to_json()),
        ("UTF-16", good.to_json().decode().encode("utf-16")),
        ("empty", b""),
        ("no value (a tombstone)", None),
        ("1 MB", b'{"pad":"' + b"x" * (1 << 20) + b'"}'),
        ("null", b"null"),
        ("an array", b"[]"),
        ("a string", b'"task.completed"'),
        ("an empty object", b"{}"),
        ("no event_type", json.dumps({k: v for k, v in raw.items() if k != "event_type"}).encode()),
        ("an unknown event_type", envelope(event_type="task.exploded")),
        ("a huge event_type", envelope(event_type="x" * 100_000)),
        ("schema_version 1e999", spliced('"schema_version":1', '"schema_version":1e999')),
        ("schema_version a string", envelope(schema_version="1")),
        ("NaN", spliced('"schema_version":1', '"schema_version":NaN')),
        ("data a list", envelope(data=[])),
        ("user_id a number", envelope(user_id=7)),
        ("NUL in user_id", envelope(user_id="al\u0000ice")),
        ("a lone surrogate", spliced(f'"user_id":"{USER}"', '"user_id":"\\ud800"')),
        ("event_id not a UUID", envelope(event_id="not-a-uuid")),
        ("occurred_at not a time", envelope(occurred_at="yesterday")),
        ("occurred_at without offset", envelope(occurred_at="2027-01-01T09:00:00")),
        ("occurred_at past the calendar", envelope(occurred_at="9999-12-31T23:59:59-12:00")),
        ("data of the wrong shape", envelope(data={"time_zone": ["UTC"], "title": {"a": 1}, "remind_at": 5})),
        ("a time in data past the calendar", envelope(data={**good.data, "due_date": "9999-12-31T23:59:59-14:00"})),
        ("an event type this topic does not carry", wrong_type.to_json()),
    ]
    for i in range(RANDOM_RECORDS):
        kind = i % 3
        if kind == 0:
            records.append((f"random bytes {i}", rng.randbytes(rng.randint(1, 2048))))
        elif kind == 1:  # a truncated envelope is never valid JSON
            cut = good.to_json()[: rng.randint(1, len(good.to_json()) - 1)]
            records.append((f"a truncated envelope {i}", cut))
        else:
            records.append((f"random JSON {i}", json.dumps(random_json(rng, depth=0)).encode()))
    return records


def random_json(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(6 if depth < 4 else 4)
    if kind == 0:
        return rng.randint(-(2**70), 2**70)
    if kind == 1:
        return "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 20)))
    if kind == 2:
        return rng.random() * 10 ** rng.randint(-300, 300)
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{n}": random_json(rng, depth + 1) for n in range(rng.randint(0, 4))}


@pytest.fixture
async def producer(kafka_settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    # Room for the 1 MB record, which our own producers would refuse to send.
    producer = AIOKafkaProducer(**{**producer_kwargs(kafka_settings), "max_request_size": 4 << 20})
    await producer.start()
    yield producer
    await producer.stop()


async def completed_recurring(engine: AsyncEngine) -> Envelope:
    """A completed daily task in the database and its task.completed, which the recurrer turns into a successor."""
    due = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    async with engine.begin() as conn:
        [event] = await insert_completed_recurring(
            conn, user=USER, due=due, completed_at=due + timedelta(minutes=5), rule="FREQ=DAILY", zone="UTC"
        )
    return event


async def reminder_due(engine: AsyncEngine) -> Envelope:
    """A pending task and its reminder.due, which the notifier turns into an inbox row (its reminder is a day away,
    so the notifier's own scheduler leaves it alone)."""
    remind_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    task_id = await insert_row(
        engine,
        "tasks",
        {
            "user_id": USER,
            "title": "Call the plumber",
            "status": "pending",
            "time_zone": "UTC",
            "due_date": remind_at + timedelta(hours=1),
            "remind_at": remind_at,
        },
    )
    data = {"task_id": task_id, "title": "Call the plumber", "remind_at": remind_at.isoformat()}
    return Envelope(REMINDER_DUE, USER, task_id, data)


async def successor_exists(engine: AsyncEngine, task_id: int) -> bool:
    async with engine.connect() as conn:
        sql = text("SELECT count(*) FROM tasks WHERE previous_task_id = :id")
        return bool((await conn.execute(sql, {"id": task_id})).scalar_one())


async def inbox_row_exists(engine: AsyncEngine, task_id: int) -> bool:
    async with engine.connect() as conn:
        sql = text("SELECT count(*) FROM notifications WHERE task_id = :id")
        return bool((await conn.execute(sql, {"id": task_id})).scalar_one())


def assert_alive_and_quiet(worker: WorkerProcess) -> None:
    assert worker.running, worker.tail()
    assert worker.stdout == b""
    lines = worker.lines
    assert not [line for line in lines if "Traceback" in line or "undecodable record" in line], worker.tail()
    assert max(len(line) for line in lines) < MAX_LOG_LINE


async def test_every_hostile_record_is_parked_with_its_reason_and_the_workers_go_on(
    workers: Callable[[str], Awaitable[WorkerProcess]],
    e2e_db: tuple[str, AsyncEngine],
    kafka_settings: Settings,
    producer: AIOKafkaProducer,
) -> None:
    _, engine = e2e_db
    rng = random.Random(SEED)
    recurrer, notifier = await workers("mcp-todo-recurrer"), await workers("mcp-todo-notifier")
    await recurrer.wait_ready()
    await notifier.wait_ready()
    cases = {
        TOPIC_RECURRENCE: (recurrer, await completed_recurring(engine), TASK_CREATED, successor_exists),
        TOPIC_REMINDERS: (notifier, await reminder_due(engine), TASK_COMPLETED, inbox_row_exists),
    }
    sent: dict[str, dict[tuple[int, int], str]] = {}  # topic → (partition, offset) → what
    for topic, (_, good, wrong_type, _) in cases.items():
        other = Envelope(wrong_type, USER, good.task_id, {"time_zone": "UTC"} if wrong_type == TASK_COMPLETED else {})
        sent[topic] = {}
        # On the good record's key, so on its partition, before it: it is handled only once the loop got past them.
        for what, value in hostile_records(good, other, rng):
            meta = await producer.send_and_wait(kafka_settings.topic(topic), value=value, key=good.key.encode())
            sent[topic][(meta.partition, meta.offset)] = what
        await producer.send_and_wait(kafka_settings.topic(topic), value=good.to_json(), key=good.key.encode())

    bootstrap = kafka_settings.kafka_bootstrap_servers
    assert bootstrap is not None
    for topic, (worker, good, _, handled) in cases.items():
        await eventually(partial(handled, engine, good.task_id), TIMEOUT_S, f"the good record on {topic} is handled")
        parked = await read_topic(bootstrap, dlq_topic(kafka_settings.topic(topic)), len(sent[topic]))
        missing = [what for where, what in sent[topic].items() if where not in dead_letters(parked)]
        assert not missing and len(parked) == len(sent[topic]), f"{topic}: not on the DLQ once: {missing}"
        for record in parked:
            headers = dict(record.headers)
            reason = headers["mcp_todo.error"].decode()
            what = sent[topic][(int(headers["mcp_todo.source_partition"]), int(headers["mcp_todo.source_offset"]))]
            assert reason and "\n" not in reason and len(reason) < 500, (what, reason)
            assert headers["mcp_todo.attempts"] == b"0", what  # refused at once: no retry can repair it
            assert headers["mcp_todo.source_topic"] == kafka_settings.topic(topic).encode()
            assert len(record.value or b"") <= 256 * 1024, what  # the 1 MB one keeps its first 256 KiB
        assert_alive_and_quiet(worker)


def dead_letters(records: list[ConsumerRecord]) -> set[tuple[int, int]]:
    """(source partition, source offset) of each DLQ record."""
    found = set()
    for record in records:
        headers = dict(record.headers)
        found.add((int(headers["mcp_todo.source_partition"]), int(headers["mcp_todo.source_offset"])))
    assert len(found) == len(records), "a record was parked twice"
    return found


async def test_a_restart_does_not_meet_the_poison_record_again(
    workers: Callable[[str], Awaitable[WorkerProcess]],
    e2e_db: tuple[str, AsyncEngine],
    kafka_settings: Settings,
    producer: AIOKafkaProducer,
) -> None:
    """The poison was committed past: the next incarnation of the worker neither crashes on it nor parks it again."""
    _, engine = e2e_db
    topic = kafka_settings.topic(TOPIC_RECURRENCE)
    first = await workers("mcp-todo-recurrer")
    await first.wait_ready()
    before = await completed_recurring(engine)
    await producer.send_and_wait(topic, value=b"[" * 100_000, key=before.key.encode())
    await producer.send_and_wait(topic, value=before.to_json(), key=before.key.encode())
    await eventually(
        partial(successor_exists, engine, before.task_id), TIMEOUT_S, "the event after the poison is handled"
    )
    code, _ = await first.stop(signal.SIGTERM)
    assert code == 0, first.tail()

    second = await workers("mcp-todo-recurrer")
    await second.wait_ready()
    after = await completed_recurring(engine)
    await producer.send_and_wait(topic, value=after.to_json(), key=after.key.encode())
    await eventually(partial(successor_exists, engine, after.task_id), TIMEOUT_S, "the restarted worker handles events")
    bootstrap = kafka_settings.kafka_bootstrap_servers
    assert bootstrap is not None
    parked = await read_topic(bootstrap, dlq_topic(topic), 2, timeout_s=3)
    assert len(parked) == 1, "the poison record was delivered again after the restart"
    assert not [line for line in second.lines if "event parked on the dead-letter topic" in line], second.tail()
    assert_alive_and_quiet(second)


# Run in a subprocess: aiokafka's pure-Python record builder (AIOKAFKA_NO_EXTENSIONS, chosen at import) takes a header
# key whose UTF-8 form is not UTF-8, which no well-behaved client would send and aiokafka's reader cannot decode.
BAD_HEADER_PRODUCER = """
import asyncio, sys
from aiokafka import AIOKafkaProducer

class NotUtf8(str):
    def encode(self, *args, **kwargs):
        return b"\\xff\\xfe"

async def main(bootstrap, topic, key, before, after):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    await producer.send_and_wait(topic, before.encode(), key=key.encode())
    await producer.send_and_wait(topic, b"{}", key=key.encode(), headers=[(NotUtf8("h"), b"v")])
    await producer.send_and_wait(topic, after.encode(), key=key.encode())
    await producer.stop()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_record_aiokafka_cannot_read_is_noted_on_the_dlq_and_stepped_past(
    workers: Callable[[str], Awaitable[WorkerProcess]],
    e2e_db: tuple[str, AsyncEngine],
    kafka_settings: Settings,
    tmp_path: Path,
) -> None:
    """A header key that is not UTF-8 makes every poll raise (and drop the records read before it in that poll):
    the worker finds the record, parks a note of it, and handles the events on both sides of it."""
    _, engine = e2e_db
    recurrer = await workers("mcp-todo-recurrer")
    await recurrer.wait_ready()
    before, after = await completed_recurring(engine), await completed_recurring(engine)
    topic = kafka_settings.topic(TOPIC_RECURRENCE)
    bootstrap = kafka_settings.kafka_bootstrap_servers
    assert bootstrap is not None
    script = tmp_path / "bad_header.py"
    script.write_text(BAD_HEADER_PRODUCER)
    env = {**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"}
    args = [bootstrap, topic, before.key, before.to_json().decode(), after.to_json().decode()]
    produced = await asyncio.create_subprocess_exec(sys.executable, str(script), *args, env=env)
    assert await produced.wait() == 0

    for event in (before, after):
        await eventually(partial(successor_exists, engine, event.task_id), TIMEOUT_S, f"task {event.task_id} handled")
    [note] = await read_topic(bootstrap, dlq_topic(topic), 1)
    headers = dict(note.headers)
    assert headers["mcp_todo.error"].startswith(b"unreadable record (UnicodeDecodeError)")
    assert headers["mcp_todo.source_topic"] == topic.encode()
    assert recurrer.running, recurrer.tail()
