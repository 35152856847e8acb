"""The outbox relay against the real PostgreSQL and the real tansu broker: keys, topics, values, outages, crashes,
several relays, and local mode (LocalSink) with retries and parking."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.outbox import write_events
from mcp_todo.events import (
    REMINDER_DUE,
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_UPDATED,
    TOPIC_RECURRENCE,
    TOPIC_REMINDERS,
    TOPIC_TASK_EVENTS,
    Envelope,
    topics_for,
)
from mcp_todo.pipeline.kafka import create_topics, producer_kwargs
from mcp_todo.pipeline.relay import MEMBER_LOCK_CLASS, Relay
from mcp_todo.pipeline.sinks import KafkaSink, LocalSink, OutboxMessage, PublishOutcome, RowFailure, Sink
from mcp_todo.settings import Settings
from tests.support.background import Background
from tests.support.broker import BrokerProcess, TcpProxy, broker_settings, free_port, read_topic
from tests.support.polling import eventually

USER = "alice"
POLL_S = 0.05  # most conditions open a connection to read the outbox
ROOT = Path(__file__).resolve().parents[2]


def event(event_type: str, task_id: int, /, **data: Any) -> Envelope:
    return Envelope(event_type=event_type, user_id=USER, task_id=task_id, data=data)


async def commit_events(engine: AsyncEngine, events: list[Envelope]) -> None:
    """As a tool does: the events are written and committed in one transaction."""
    async with engine.begin() as conn:
        await write_events(conn, events)


async def outbox_state(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE published_at IS NULL AND parked_at IS NULL) AS pending,
                      count(*) FILTER (WHERE published_at IS NOT NULL) AS published,
                      count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked
               FROM outbox"""
        )
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


class RunningRelay(Background):
    """A relay running in the background of the test's event loop."""

    def __init__(self, relay: Relay) -> None:
        super().__init__(relay.run)
        self.relay = relay


@pytest.fixture
async def relays() -> AsyncIterator[Callable[..., RunningRelay]]:
    started: list[RunningRelay] = []
    sinks: list[Sink] = []

    def start(dsn: str, sink: Sink, **options: Any) -> RunningRelay:
        options.setdefault("poll_interval_s", 0.5)
        options.setdefault("rebalance_interval_s", 0.2)
        options.setdefault("backoff_base_s", 0.05)
        options.setdefault("backoff_cap_s", 0.5)
        running = RunningRelay(Relay(dsn, sink, **options))
        started.append(running)
        sinks.append(sink)
        return running

    yield start
    for running in started:
        await running.close()
    for sink in sinks:
        await sink.close()


# --- Kafka -----------------------------------------------------------------------------------------------------------


@pytest.mark.kafka
async def test_relay_publishes_rows_with_key_topic_and_envelope(
    db: AsyncEngine, database_dsn: str, kafka_settings: Settings
) -> None:
    created = event(TASK_CREATED, 7, title="Water the plants")
    updated = event(TASK_UPDATED, 7, priority="high")
    completed = event(
        TASK_COMPLETED,
        7,
        completed_at="2027-03-10T09:00:00Z",
        due_date="2027-03-10T08:00:00Z",
        recurrence_rule="FREQ=DAILY",
        series_id=7,
        time_zone="UTC",
    )
    reminder = event(REMINDER_DUE, 8, task_id=8, title="Call Bob", due_date=None, remind_at="2027-03-10T07:00:00Z")
    await commit_events(db, [created, updated])
    await commit_events(db, [completed, reminder])

    sink = KafkaSink(kafka_settings)
    try:
        assert await Relay(database_dsn, sink).drain_once() == 4
    finally:
        await sink.close()

    bootstrap = kafka_settings.kafka_bootstrap_servers
    assert bootstrap is not None
    events_topic = await read_topic(bootstrap, kafka_settings.topic(TOPIC_TASK_EVENTS), 3)
    assert [(r.key, json.loads(r.value)) for r in events_topic] == [
        (b"7", created.to_dict()),
        (b"7", updated.to_dict()),
        (b"7", completed.to_dict()),
    ]
    recurrence_topic = await read_topic(bootstrap, kafka_settings.topic(TOPIC_RECURRENCE), 1)
    assert [(r.key, json.loads(r.value)) for r in recurrence_topic] == [(b"7", completed.to_dict())]
    reminders_topic = await read_topic(bootstrap, kafka_settings.topic(TOPIC_REMINDERS), 1)
    assert [(r.key, json.loads(r.value)) for r in reminders_topic] == [(b"8", reminder.to_dict())]
    # Values are the envelope as UTF-8 JSON, decodable by the consumers.
    assert Envelope.from_json(recurrence_topic[0].value) == completed
    assert await outbox_state(database_dsn) == {"pending": 0, "published": 4, "parked": 0}


def outbox_message(row_id: int, task_id: int, topics: tuple[str, ...], value: str) -> OutboxMessage:
    return OutboxMessage(
        id=row_id, task_id=task_id, event_type=TASK_CREATED, topics=topics, message_key=str(task_id), payload_json=value
    )


@pytest.mark.kafka
async def test_kafka_sink_batches_go_where_the_producer_would_send_each_record_in_row_order(
    kafka_settings: Settings,
) -> None:
    # Enough rows per partition to fill several of the producer's batches (16 KiB each).
    rows = [
        outbox_message(i, task_id, (TOPIC_TASK_EVENTS, TOPIC_RECURRENCE), json.dumps({"n": i, "pad": "x" * 900}))
        for i, task_id in enumerate([random.Random(3).randrange(1, 10**6) for _ in range(40)] * 10)
    ]
    oversized = outbox_message(len(rows), 5, (TOPIC_TASK_EVENTS,), json.dumps({"pad": "y" * 1_100_000}))
    sink = KafkaSink(kafka_settings)
    try:
        outcome = await (await sink.send([*rows, oversized]))
    finally:
        await sink.close()
    assert dict(outcome.failed) == {oversized.id: RowFailure("MessageSizeTooLargeError", permanent=True)}

    bootstrap = kafka_settings.kafka_bootstrap_servers
    assert bootstrap is not None
    reference = AIOKafkaProducer(**producer_kwargs(kafka_settings))
    await reference.start()
    try:
        for topic in (TOPIC_TASK_EVENTS, TOPIC_RECURRENCE):
            name = kafka_settings.topic(topic)
            records = await read_topic(bootstrap, name, len(rows))
            assert len(records) == len(rows)
            by_key: defaultdict[bytes, list[tuple[int, int]]] = defaultdict(list)
            for record in records:
                assert record.key is not None and record.value is not None
                by_key[record.key].append((record.partition, json.loads(record.value)["n"]))
            for key, seen in by_key.items():
                # What AIOKafkaProducer.send itself picks for this key (sent to a topic of the same partition count).
                expected = (
                    await reference.send_and_wait(kafka_settings.topic(TOPIC_REMINDERS), b"", key=key)
                ).partition
                assert {partition for partition, _ in seen} == {expected}
                numbers = [n for _, n in seen]
                assert numbers == sorted(numbers) == [row.id for row in rows if row.message_key.encode() == key]
    finally:
        await reference.stop()


@pytest.mark.kafka
async def test_relay_wakes_on_notify_without_waiting_for_the_poll(
    db: AsyncEngine, database_dsn: str, kafka_settings: Settings, relays: Callable[..., RunningRelay]
) -> None:
    running = relays(database_dsn, KafkaSink(kafka_settings), poll_interval_s=60, rebalance_interval_s=60)
    await eventually(lambda: _owns_all(running.relay), 10, "the relay holds its shards", interval_s=POLL_S)
    await commit_events(db, [event(TASK_CREATED, 1, title="a")])
    await eventually(
        lambda: _published(database_dsn, 1), 10, "the NOTIFY-woken relay published the row", interval_s=POLL_S
    )


@pytest.mark.kafka
async def test_broker_down_while_500_events_are_written_then_all_arrive(
    db: AsyncEngine, database_dsn: str, broker_process: BrokerProcess, relays: Callable[..., RunningRelay]
) -> None:
    settings = broker_settings(broker_process.bootstrap)
    running = relays(database_dsn, KafkaSink(settings))
    written = [event(TASK_CREATED, task_id, title=f"task {task_id}") for task_id in range(1, 501)]
    for envelope in written:  # 500 separate commits, as 500 tool calls
        await commit_events(db, [envelope])
    # The relay keeps trying (and failing) meanwhile; nothing is marked published without an ack.
    await eventually(lambda: _failed_attempts(running.relay), 10, "the relay tried the broker", interval_s=POLL_S)
    assert (await outbox_state(database_dsn))["pending"] == 500

    await broker_process.start()
    await create_topics(settings)
    await eventually(lambda: _published(database_dsn, 500), 30, "all 500 rows are published", interval_s=POLL_S)
    records = await read_topic(broker_process.bootstrap, settings.topic(TOPIC_TASK_EVENTS), 500)
    assert {json.loads(r.value)["event_id"] for r in records} == {str(e.event_id) for e in written}


@pytest.mark.kafka
@pytest.mark.slow
async def test_relay_killed_while_broker_down_then_restarted_delivers_everything(
    db: AsyncEngine, database_dsn: str, broker_process: BrokerProcess, tmp_path: Path
) -> None:
    settings = broker_settings(broker_process.bootstrap)
    # `mcp-todo relay` refuses a broker that is wrong at start, so it starts with the broker up, which then goes away.
    await broker_process.start()
    first = _spawn_relay(database_dsn, settings)
    try:
        await _wait_for_log(first, "relay started", timeout_s=20)
        broker_process.stop()
        written = [event(TASK_UPDATED, task_id % 13 + 1, seq=task_id) for task_id in range(120)]
        for envelope in written:
            await commit_events(db, [envelope])
        await _wait_for_log(first, "Kafka broker unreachable", timeout_s=20)  # the outage, logged once
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        if first.stderr is not None:
            first.stderr.close()
    assert (await outbox_state(database_dsn))["pending"] == 120

    await broker_process.start()
    await create_topics(settings)
    second = _spawn_relay(database_dsn, settings, log_path=tmp_path / "relay.log")
    try:
        await eventually(lambda: _published(database_dsn, 120), 30, "the restarted relay published", interval_s=POLL_S)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    records = await read_topic(broker_process.bootstrap, settings.topic(TOPIC_TASK_EVENTS), 120)
    assert {json.loads(r.value)["event_id"] for r in records} == {str(e.event_id) for e in written}
    assert_per_task_order(records)


class JitteredSink:
    """A sink that takes a random few milliseconds per batch, as a remote broker does: it widens the window in which
    two relays without shard ownership would publish one task's events out of order."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner

    async def send(self, rows: Sequence[OutboxMessage]) -> asyncio.Future[PublishOutcome]:
        await asyncio.sleep(random.uniform(0, 0.02))
        return await self.inner.send(rows)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.kafka
async def test_two_relays_publish_everything_in_per_task_order_and_share_the_shards(
    db: AsyncEngine, database_dsn: str, kafka_settings: Settings, relays: Callable[..., RunningRelay]
) -> None:
    written = [event(TASK_UPDATED, task_id, seq=seq) for seq in range(10) for task_id in range(1, 21)]
    for envelope in written[:100]:  # a backlog both relays find when they start together
        await commit_events(db, [envelope])
    first = relays(database_dsn, JitteredSink(KafkaSink(kafka_settings)), batch_size=20)
    second = relays(database_dsn, JitteredSink(KafkaSink(kafka_settings)), batch_size=20)
    await eventually(
        lambda: _split_evenly(first.relay, second.relay), 10, "the relays split the shards", interval_s=POLL_S
    )
    for envelope in written[100:]:  # then a steady stream while both run
        await commit_events(db, [envelope])
    await eventually(lambda: _published(database_dsn, 200), 30, "both relays published all rows", interval_s=POLL_S)
    bootstrap = kafka_settings.kafka_bootstrap_servers
    assert bootstrap is not None
    records = await read_topic(bootstrap, kafka_settings.topic(TOPIC_TASK_EVENTS), 200)
    assert {json.loads(r.value)["event_id"] for r in records} >= {str(e.event_id) for e in written}
    assert_per_task_order(records)
    # Neither relay blocked the other: each kept its half of the shards and published its part.
    assert await _split_evenly(first.relay, second.relay)
    assert first.relay.stats.published > 0
    assert second.relay.stats.published > 0
    assert not first.task.done() and not second.task.done()


def assert_per_task_order(records: list[Any]) -> None:
    """Per key, the `seq` of the events never goes backwards (a duplicate may repeat the last one)."""
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for record in records:  # read_topic returns each partition's records in offset order
        by_key[record.key].append(json.loads(record.value)["data"]["seq"])
    for key, seqs in by_key.items():
        deduplicated = [s for i, s in enumerate(seqs) if i == 0 or s != seqs[i - 1]]
        assert sorted(set(deduplicated)) == deduplicated, f"task {key!r} out of order: {seqs}"


async def _owns_all(relay: Relay) -> bool:
    return len(relay.owned_shards) == relay.shard_count


async def _split_evenly(first: Relay, second: Relay) -> bool:
    a, b = first.owned_shards, second.owned_shards
    return len(a) == len(b) == first.shard_count // 2 and not a & b


async def _failed_attempts(relay: Relay) -> bool:
    return relay.stats.batches == 0 and relay.owned_shards != frozenset() and relay.stats.sink_failures > 0


async def _published(dsn: str, count: int) -> bool:
    return (await outbox_state(dsn))["published"] >= count


def _spawn_relay(dsn: str, settings: Settings, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """`mcp-todo relay` on the test database; stderr piped (to read its log) or written to `log_path`."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
    }
    with open(log_path, "wb") if log_path else contextlib.nullcontext(subprocess.PIPE) as stderr:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "mcp-todo"), "relay"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def _wait_for_log(proc: subprocess.Popen[bytes], needle: str, *, timeout_s: float) -> None:
    """Read the process's stderr (in a thread: it blocks) until a line contains `needle`."""
    assert proc.stderr is not None
    stream = proc.stderr

    def scan() -> bool:
        return any(needle.encode() in line for line in iter(stream.readline, b""))

    assert await asyncio.wait_for(asyncio.to_thread(scan), timeout_s), f"relay exited without logging {needle!r}"


# --- local mode ------------------------------------------------------------------------------------------------------


async def test_local_sink_feeds_the_handlers_of_the_row_topics(
    db: AsyncEngine, database_dsn: str, relays: Callable[..., RunningRelay]
) -> None:
    received: list[tuple[str, Envelope]] = []

    async def on_recurrence(envelope: Envelope) -> None:
        received.append((TOPIC_RECURRENCE, envelope))

    async def on_reminder(envelope: Envelope) -> None:
        received.append((TOPIC_REMINDERS, envelope))

    relays(database_dsn, LocalSink({TOPIC_RECURRENCE: on_recurrence, TOPIC_REMINDERS: on_reminder}))
    completed = event(TASK_COMPLETED, 3, recurrence_rule="FREQ=WEEKLY", due_date="2027-03-10T08:00:00Z")
    plain = event(TASK_CREATED, 4, title="no local consumer for task-events")
    reminder = event(REMINDER_DUE, 5, title="Call Bob")
    await commit_events(db, [completed, plain, reminder])
    await eventually(lambda: _published(database_dsn, 3), 10, "local mode delivered the rows", interval_s=POLL_S)
    assert received == [(TOPIC_RECURRENCE, completed), (TOPIC_REMINDERS, reminder)]


async def test_local_sink_retries_a_failing_handler_then_parks_it_without_blocking_others(
    db: AsyncEngine, database_dsn: str, relays: Callable[..., RunningRelay]
) -> None:
    calls: dict[int, int] = defaultdict(int)
    handled: list[tuple[int, int]] = []

    async def handler(envelope: Envelope) -> None:
        calls[envelope.task_id] += 1
        if envelope.task_id == 1 and envelope.data["seq"] == 0:
            raise RuntimeError("poison")  # this one never succeeds
        if envelope.task_id == 2 and calls[2] < 3:
            raise ConnectionError("flaky")  # this one succeeds on the third attempt
        handled.append((envelope.task_id, envelope.data["seq"]))

    running = relays(
        database_dsn,
        LocalSink({TOPIC_REMINDERS: handler}),
        max_attempts=4,
        row_backoff_base_s=0.05,
        row_backoff_cap_s=0.2,
    )
    await commit_events(db, [event(REMINDER_DUE, 1, seq=0), event(REMINDER_DUE, 1, seq=1)])
    await commit_events(db, [event(REMINDER_DUE, 2, seq=0), event(REMINDER_DUE, 3, seq=0)])

    # Another task's row is not held up by the poison row.
    await eventually(lambda: _async((3, 0) in handled), 10, "task 3's event is handled", interval_s=POLL_S)
    await eventually(lambda: _published(database_dsn, 3), 20, "all but the poison row delivered", interval_s=POLL_S)
    assert (await outbox_state(database_dsn)) == {"pending": 0, "published": 3, "parked": 1}
    # The flaky handler was retried, not skipped; the poison row was tried max_attempts times, then parked.
    assert calls[2] == 3
    assert calls[1] == 4 + 1  # four attempts at seq 0, then seq 1 once
    # Task 1's next event waited for its predecessor (order), then went through once it was parked.
    assert handled.index((1, 1)) > handled.index((3, 0))
    conn = await asyncpg.connect(database_dsn)
    try:
        parked = await conn.fetchrow("SELECT task_id, attempts, last_error FROM outbox WHERE parked_at IS NOT NULL")
    finally:
        await conn.close()
    assert parked is not None
    assert dict(parked) == {"task_id": 1, "attempts": 4, "last_error": "RuntimeError"}
    assert running.relay.stats.parked == 1


def local_row(row_id: int, envelope: Envelope) -> OutboxMessage:
    """An outbox row as the relay claims it."""
    return OutboxMessage(
        id=row_id,
        task_id=envelope.task_id,
        event_type=envelope.event_type,
        topics=tuple(topics_for(envelope.event_type, envelope.data)),
        message_key=envelope.key,
        payload_json=json.dumps(envelope.to_dict()),
    )


async def test_local_sink_hands_a_topics_rows_to_its_batch_handler_in_one_call() -> None:
    one_by_one: list[Envelope] = []
    batches: list[tuple[str, list[Envelope]]] = []

    async def on_event(envelope: Envelope) -> None:
        one_by_one.append(envelope)

    async def on_recurrence_batch(envelopes: list[Envelope]) -> None:
        batches.append((TOPIC_RECURRENCE, envelopes))

    async def on_reminders_batch(envelopes: list[Envelope]) -> None:
        batches.append((TOPIC_REMINDERS, envelopes))

    sink = LocalSink(
        {TOPIC_RECURRENCE: on_event, TOPIC_REMINDERS: on_event},
        batch_handlers={TOPIC_RECURRENCE: on_recurrence_batch, TOPIC_REMINDERS: on_reminders_batch},
    )
    first = event(TASK_COMPLETED, 1, recurrence_rule="FREQ=DAILY", due_date="2027-03-10T08:00:00Z")
    plain = event(TASK_CREATED, 2, title="no local consumer for task-events")
    second = event(TASK_COMPLETED, 3, recurrence_rule="FREQ=DAILY", due_date="2027-03-10T08:00:00Z")
    reminder = event(REMINDER_DUE, 4, title="Call Bob")
    rows = [local_row(i, e) for i, e in enumerate([first, plain, second, reminder], start=1)]

    outcome = await (await sink.send(rows))

    assert outcome == PublishOutcome()
    # The topic's rows in row order, in one call; a lone row goes one by one (its attempt count stays exact).
    assert batches == [(TOPIC_RECURRENCE, [first, second])]
    assert one_by_one == [reminder]


async def test_local_sink_falls_back_one_by_one_when_the_batch_handler_fails() -> None:
    handled: list[tuple[int, int]] = []
    batch_calls = 0

    async def handler(envelope: Envelope) -> None:
        if envelope.task_id == 1 and envelope.data["seq"] == 0:
            raise RuntimeError("poison")
        handled.append((envelope.task_id, envelope.data["seq"]))

    async def batch_handler(envelopes: list[Envelope]) -> None:
        nonlocal batch_calls
        batch_calls += 1
        raise RuntimeError("poison in the batch")  # its transaction rolled back: nothing of it counts

    sink = LocalSink({TOPIC_REMINDERS: handler}, batch_handlers={TOPIC_REMINDERS: batch_handler})
    events = [event(REMINDER_DUE, 1, seq=0), event(REMINDER_DUE, 1, seq=1), event(REMINDER_DUE, 2, seq=0)]
    outcome = await (await sink.send([local_row(i, e) for i, e in enumerate(events, start=1)]))

    assert batch_calls == 1
    # One by one: the poison row fails alone, its task's next row waits (order), the other task goes through.
    assert handled == [(2, 0)]
    assert set(outcome.failed) == {1}
    assert outcome.failed[1].error == "RuntimeError"
    assert not outcome.failed[1].permanent
    assert outcome.held == frozenset({2})


async def test_prune_deletes_published_rows_past_retention_only(db: AsyncEngine, database_dsn: str) -> None:
    await commit_events(db, [event(TASK_CREATED, 1, title="a"), event(TASK_CREATED, 2, title="b")])
    relay = Relay(database_dsn, LocalSink({}), retention=timedelta(days=7))
    assert await relay.drain_once() == 2
    await commit_events(db, [event(TASK_CREATED, 3, title="still pending")])
    assert await relay.prune() == 0  # younger than a week
    relay.retention = timedelta(0)
    assert await relay.prune() == 2
    assert await outbox_state(database_dsn) == {"pending": 1, "published": 0, "parked": 0}


async def _async(value: bool) -> bool:
    return value


@pytest.mark.kafka
async def test_connection_to_the_broker_lost_while_publishing_loses_nothing(
    db: AsyncEngine, database_dsn: str, relays: Callable[..., RunningRelay]
) -> None:
    proxy_port = free_port()
    broker = BrokerProcess(advertised_port=proxy_port)
    proxy = TcpProxy(broker.port, port=proxy_port)  # clients reach the broker only through the proxy
    await broker.start()
    await proxy.start()
    try:
        settings = broker_settings(proxy.bootstrap)
        await create_topics(settings)
        running = relays(database_dsn, KafkaSink(settings))
        before = [event(TASK_CREATED, task_id, seq=0) for task_id in range(1, 51)]
        await commit_events(db, before)
        await eventually(lambda: _published(database_dsn, 50), 10, "the first events are published", interval_s=POLL_S)

        await proxy.cut()  # the producer's connections drop mid-session; new ones are refused
        during = [event(TASK_UPDATED, task_id, seq=1) for task_id in range(1, 51)]
        for envelope in during:
            await commit_events(db, [envelope])
        await asyncio.sleep(1.0)  # a pause while the relay is cut off (not an assertion)
        assert (await outbox_state(database_dsn))["published"] == 50  # nothing acked, nothing marked

        await proxy.start()
        await eventually(lambda: _published(database_dsn, 100), 40, "the relay caught up", interval_s=POLL_S)
        records = await read_topic(proxy.bootstrap, settings.topic(TOPIC_TASK_EVENTS), 100)
        assert {json.loads(r.value)["event_id"] for r in records} >= {str(e.event_id) for e in before + during}
        assert_per_task_order(records)
        assert running.relay.stats.published >= 100
    finally:
        await proxy.cut()
        broker.close()


async def test_a_malformed_row_is_parked_at_once_in_local_mode(
    db: AsyncEngine, database_dsn: str, relays: Callable[..., RunningRelay]
) -> None:
    handled: list[Envelope] = []

    async def handler(envelope: Envelope) -> None:
        handled.append(envelope)

    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute(
            """INSERT INTO outbox (event_id, event_type, topics, message_key, task_id, user_id, payload)
               VALUES (gen_random_uuid(), 'reminder.due', '{task-reminders}', '9', 9, 'alice', '{"not": "envelope"}')"""
        )
    finally:
        await conn.close()
    good = event(REMINDER_DUE, 9, title="after the malformed one")
    await commit_events(db, [good])
    relays(database_dsn, LocalSink({TOPIC_REMINDERS: handler}))
    await eventually(lambda: _async(handled == [good]), 10, "the next row of the task is handled", interval_s=POLL_S)

    async def settled() -> bool:
        # The relay marks a row published after its handler returned, in a transaction of its own.
        return await outbox_state(database_dsn) == {"pending": 0, "published": 1, "parked": 1}

    await eventually(settled, 10, "the malformed row parked and the next one published", interval_s=POLL_S)


async def test_relay_reconnects_when_its_database_connection_is_killed(
    db: AsyncEngine, database_dsn: str, relays: Callable[..., RunningRelay]
) -> None:
    running = relays(database_dsn, LocalSink({}))
    await eventually(lambda: _owns_all(running.relay), 10, "the relay holds its shards", interval_s=POLL_S)
    await commit_events(db, [event(TASK_CREATED, 1, title="a")])
    await eventually(lambda: _published(database_dsn, 1), 10, "the first row is published", interval_s=POLL_S)
    conn = await asyncpg.connect(database_dsn)
    try:  # the relay's session: the one holding the relay membership lock
        killed = await conn.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_locks
               WHERE locktype = 'advisory' AND classid::bigint = $1 AND objsubid = 2
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
            MEMBER_LOCK_CLASS,
        )
    finally:
        await conn.close()
    assert killed == 1
    await commit_events(db, [event(TASK_CREATED, 2, title="b")])
    await eventually(lambda: _published(database_dsn, 2), 15, "the reconnected relay published", interval_s=POLL_S)
    await eventually(lambda: _owns_all(running.relay), 10, "the relay holds its shards again", interval_s=POLL_S)
