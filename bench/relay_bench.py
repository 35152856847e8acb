"""Outbox relay: commit → broker-ack latency and sustained throughput, beside raw aiokafka in the same run.

    .venv/bin/python -m bench.relay_bench      # from the repository root; TEST_DATABASE_URL's server, else embedded PG

Starts its own tansu broker on a free loopback port (memory storage, so the producer runs without idempotence, as in
the tests) and a fresh database.

- Latency: one event at a time is written and committed (as a tool call does); the relay, woken by NOTIFY, claims,
  publishes and gets the broker's ack. Measured from the return of COMMIT to the moment the relay's producer has the
  ack for that event (before the relay marks the row published). Not a consumer's receipt.
- Throughput: a backlog of events is committed first, then one relay drains it: claim 500 rows per transaction, send,
  await every ack, mark published, commit. Beside it, raw aiokafka sends the very same messages (same topic, key and
  value bytes, same producer settings) with all sends in flight and every ack awaited: the ceiling of this broker and
  client. Ratio = relay / raw.

Prints a Markdown table and writes bench/results/relay.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence

import aiokafka
import asyncpg
from aiokafka import AIOKafkaProducer

from bench.common import percentile, write_report
from mcp_todo.db.engine import create_engine
from mcp_todo.db.outbox import write_events
from mcp_todo.events import TASK_UPDATED, TOPIC_TASK_EVENTS, Envelope
from mcp_todo.pipeline.kafka import create_topics, producer_kwargs
from mcp_todo.pipeline.relay import Relay
from mcp_todo.pipeline.sinks import KafkaSink, OutboxMessage, PublishOutcome
from mcp_todo.settings import Settings
from tests.support.broker import BrokerProcess, broker_settings
from tests.support.database import DatabaseFactory, PostgresServer

LATENCY_SAMPLES = int(os.environ.get("BENCH_LATENCY_SAMPLES", "300"))
THROUGHPUT_EVENTS = int(os.environ.get("BENCH_THROUGHPUT_EVENTS", "20000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def make_event(i: int) -> Envelope:
    # A realistic task.updated: a few changed fields, ~300 bytes of JSON.
    return Envelope(
        event_type=TASK_UPDATED,
        user_id=f"bench-user-{i % 50}",
        task_id=i % 1000 + 1,
        data={"title": f"Prepare the quarterly report #{i}", "priority": "high", "due_date": "2027-03-10T17:00:00Z"},
    )


class AckClock(KafkaSink):
    """The relay's Kafka sink, noting when each event's batch was acknowledged (publish returns after every ack)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.acked: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def send(self, rows: Sequence[OutboxMessage]) -> asyncio.Future[PublishOutcome]:
        acks = await super().send(rows)
        event_ids = [row.payload["event_id"] for row in rows]

        def note(done: asyncio.Future[PublishOutcome]) -> None:
            if not done.cancelled() and done.exception() is None:
                now = time.perf_counter()
                self.acked.update(dict.fromkeys(event_ids, now))
                self.changed.set()

        acks.add_done_callback(note)
        return acks


async def measure_latency(dsn: str, settings: Settings) -> list[float]:
    sink = AckClock(settings)
    relay = Relay(dsn, sink)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    engine = create_engine(dsn, pool_size=2)
    samples: list[float] = []
    try:
        for i in range(LATENCY_SAMPLES + 20):  # the first 20 warm up connections, metadata and prepared statements
            event = make_event(i)
            async with engine.begin() as conn:
                await write_events(conn, [event])
            committed = time.perf_counter()
            key = str(event.event_id)
            while key not in sink.acked:
                sink.changed.clear()
                await asyncio.wait_for(sink.changed.wait(), 10)
            if i >= 20:
                samples.append((sink.acked[key] - committed) * 1000)
    finally:
        stop.set()
        await task
        await sink.close()
        await engine.dispose()
    return samples


async def fill_backlog(dsn: str, count: int) -> list[Envelope]:
    events = [make_event(i) for i in range(count)]
    engine = create_engine(dsn, pool_size=1)
    try:
        for start in range(0, count, 1000):
            async with engine.begin() as conn:
                await write_events(conn, events[start : start + 1000])
    finally:
        await engine.dispose()
    return events


async def measure_relay_throughput(dsn: str, settings: Settings, count: int) -> float:
    await fill_backlog(dsn, count)
    sink = KafkaSink(settings)
    relay = Relay(dsn, sink)
    try:
        started = time.perf_counter()
        published = await relay.drain_once()
        elapsed = time.perf_counter() - started
    finally:
        await sink.close()
    assert published == count, f"relay published {published} of {count}"
    return count / elapsed


async def outbox_messages(dsn: str) -> list[tuple[bytes, bytes]]:
    """The (key, value) bytes the relay sent, read back from the outbox."""
    conn = await asyncpg.connect(dsn)
    try:
        records = await conn.fetch("SELECT message_key, payload::text AS payload FROM outbox ORDER BY id")
    finally:
        await conn.close()
    return [(r["message_key"].encode(), r["payload"].encode()) for r in records]


async def measure_raw_throughput(settings: Settings, messages: list[tuple[bytes, bytes]]) -> float:
    topic = settings.topic(TOPIC_TASK_EVENTS)
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value=value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return len(messages) / elapsed


async def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    postgres = await asyncio.to_thread(PostgresServer, "mcp-todo-bench-")
    databases = DatabaseFactory(postgres.dsn, prefix="mcp_todo_bench")
    broker = BrokerProcess()
    await broker.start()
    try:
        settings = broker_settings(broker.bootstrap)
        await create_topics(settings)

        dsn = await databases.create()
        latency = await measure_latency(dsn, settings)

        dsn = await databases.create()
        await measure_relay_throughput(dsn, settings, 2000)  # warm-up round for both, not reported
        await measure_raw_throughput(settings, await outbox_messages(dsn))

        # Alternate the two, round after round, and keep medians: other work on this machine moves both a lot.
        relay_rates, raw_rates = [], []
        for _ in range(ROUNDS):
            dsn = await databases.create()
            relay_rates.append(await measure_relay_throughput(dsn, settings, THROUGHPUT_EVENTS))
            raw_rates.append(await measure_raw_throughput(settings, await outbox_messages(dsn)))
        relay_rate, raw_rate = statistics.median(relay_rates), statistics.median(raw_rates)
    finally:
        await databases.drop_all()
        broker.close()
        await asyncio.to_thread(postgres.close)

    p50, p95 = statistics.median(latency), percentile(latency, 0.95)
    ratios = sorted(relay / raw for relay, raw in zip(relay_rates, raw_rates, strict=True))
    ratio = statistics.median(ratios)
    pg = "embedded PostgreSQL" if postgres.embedded else "TEST_DATABASE_URL PostgreSQL"
    report = "\n".join(
        [
            "# Outbox relay benchmark",
            "",
            f"`.venv/bin/python -m bench.relay_bench` — {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, aiokafka {aiokafka.__version__}, tansu (memory storage) on loopback, {pg}; "
            "lz4, acks=all, idempotence off (tansu lacks it), linger 2 ms.",
            "",
            "| measure | result | target |",
            "|---|---|---|",
            f"| commit → broker ack, p50 ({len(latency)} events, one at a time) | {p50:.1f} ms | |",
            f"| commit → broker ack, p95 | {p95:.1f} ms | ≤ 20 ms |",
            f"| relay throughput ({THROUGHPUT_EVENTS} events backlog; median of {ROUNDS}) | {relay_rate:,.0f} events/s"
            " | ≥ 5 000 events/s |",
            f"| raw aiokafka, same messages, same broker, same run (median of {ROUNDS}) | {raw_rate:,.0f} events/s | |",
            f"| ratio relay / raw (median of the rounds' ratios; all: {', '.join(f'{r:.2f}' for r in ratios)}) "
            f"| {ratio:.2f} | ≥ 0.5 |",
            "",
            "Latency ends when the relay's producer holds the broker's ack for the event, before the row is marked "
            "published; it includes the NOTIFY wake-up, the claim query and the send. Relay throughput includes "
            "claiming (500 rows per query, up to 2 000 per transaction, the next claim overlapping the previous "
            "batch's acks), sending, awaiting every ack and marking the rows published; raw aiokafka only sends "
            "(everything in flight at once) and awaits the acks.",
            "",
        ]
    )
    write_report("relay", report)


if __name__ == "__main__":
    asyncio.run(main())
