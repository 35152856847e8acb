"""The live feed: which resources of which user a change touched, for the server's subscribers (docs/live.md).

Every server replica runs one feed, so a change made anywhere (a tool call on another replica, a worker, an import,
a CalDAV client) reaches the subscribers connected to this one:

- Kafka mode: a consumer of `task-events` with no consumer group — it is assigned every partition and starts at
  their end, so each replica reads every event (a shared group would split them between the replicas) and commits
  nothing (nothing is replayed on a restart: a subscriber that reconnects re-reads);
- local mode: the outbox's own wake-up (`LISTEN mcp_todo_outbox`), then the rows committed since, read by id;
- both: `LISTEN mcp_todo_inbox`, which the reminder handler sends as it commits the inbox rows it delivered (the
  `reminder.due` event comes before the row, so a host told then could re-read an inbox without it).

Each change becomes `publish(user, uris)`; the server's hub drops it at once when that user has no subscriber. The
LISTEN connection uses the session DSN (MCP_TODO_DIRECT_DATABASE_URL when DATABASE_URL is a pooler).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import asyncpg

from mcp_todo.db import outbox as outbox_db
from mcp_todo.db.engine import connect
from mcp_todo.db.notifications import INBOX_CHANNEL
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.events import (
    REMINDER_DUE,
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_DELETED,
    TASK_RESTORED,
    TASK_UPDATED,
    TOPIC_TASK_EVENTS,
    Envelope,
    EnvelopeError,
)
from mcp_todo.runtime.backoff import backoff_delay
from mcp_todo.runtime.waits import sleep_unless_stopped
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

TODAY_URI: Final = "todo://today"
NOTIFICATIONS_URI: Final = "todo://notifications"
TASK_URI_PREFIX: Final = "todo://tasks/"

Publish = Callable[[str, frozenset[str]], None]
"""`publish(user, uris)`: these resources of this user changed. Synchronous and cheap; it must not raise."""

# A task.updated that changes one of these can move the task into, out of or within today's agenda.
_AGENDA_FIELDS: Final = frozenset(
    {"due_date", "remind_at", "reminder_sent", "status", "title", "priority", "tags", "deleted_at"}
)
QUERY_TIMEOUT_S: Final = 10.0
# Local mode: rows read per look, and how long an id skipped by a look (its transaction not committed yet) is asked
# for again; a transaction that commits later than that is a change its subscribers hear of only with the next one.
BATCH: Final = 500
SKIPPED_KEPT_S: Final = 30.0
MAX_SKIPPED: Final = 1000
FETCH_TIMEOUT_MS: Final = 1000


def task_uri(task_id: int) -> str:
    return f"{TASK_URI_PREFIX}{task_id}"


def uris_of(envelope: Envelope) -> frozenset[str]:
    """The live resources an event touches: its task's, and today's agenda when the change can show there."""
    kind = envelope.event_type
    data: Mapping[str, Any] = envelope.data if isinstance(envelope.data, Mapping) else {}
    uris = {task_uri(envelope.task_id)}
    if kind in (REMINDER_DUE, TASK_COMPLETED):
        uris.add(TODAY_URI)
    elif kind in (TASK_CREATED, TASK_DELETED, TASK_RESTORED):
        if data.get("due_date") is not None or data.get("remind_at") is not None:
            uris.add(TODAY_URI)
    elif kind == TASK_UPDATED and _AGENDA_FIELDS.intersection(data):
        uris.add(TODAY_URI)
    return frozenset(uris)


def inbox_uris(payload: str) -> tuple[str, frozenset[str]] | None:
    """The user and resources of an inbox announcement (`{"user": …, "tasks": […]}`), None if unreadable."""
    try:
        message = json.loads(payload)
        user = message["user"]
        tasks = [int(task_id) for task_id in message.get("tasks", [])]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(user, str):
        return None
    return user, frozenset({NOTIFICATIONS_URI, TODAY_URI, *(task_uri(task_id) for task_id in tasks)})


async def run_live_feed(settings: Settings, dsn: str, publish: Publish, stop: asyncio.Event) -> None:
    """Feed `publish` until `stop`: from Kafka's `task-events` (local mode: the outbox), and the inbox's
    announcements. A part that loses its connection reconnects with backoff."""
    parts = [_DatabaseFeed(dsn, publish, outbox=settings.local_mode).run(stop)]
    if not settings.local_mode:
        parts.append(_kafka_feed(settings, publish, stop))
    await asyncio.gather(*parts)


class _DatabaseFeed:
    """One LISTEN connection: the inbox's announcements, and in local mode the outbox's wake-ups."""

    def __init__(self, dsn: str, publish: Publish, *, outbox: bool) -> None:
        self._dsn = dsn
        self._publish = publish
        self._outbox = outbox
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        self._after_id = 0
        self._skipped: dict[int, float] = {}  # id → when it was first skipped
        self._attempt = 0  # connections lost since the feed last listened

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self._dsn)
                await self._follow(conn, stop)
                return
            except (ConfigurationError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                delay_s = backoff_delay(self._attempt, base_s=0.5, cap_s=10.0)
                log.warning("live feed: database connection lost", extra={"error": exc.__class__.__name__})
                self._attempt += 1
                if not await sleep_unless_stopped(stop, delay_s):
                    return
            finally:
                if conn is not None:
                    conn.terminate()

    async def _follow(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        self._lost.clear()
        conn.add_termination_listener(lambda *_: self._lost.set())
        await conn.add_listener(INBOX_CHANNEL, self._on_inbox)
        if self._outbox:
            if self._after_id == 0:
                self._after_id = await outbox_db.last_id(conn, timeout_s=QUERY_TIMEOUT_S)
            await conn.add_listener(outbox_db.WAKE_CHANNEL, lambda *_: self._wake.set())
            self._wake.set()  # what committed while the connection was away
        log.info("live feed listening", extra={"outbox": self._outbox})
        self._attempt = 0
        stopped = asyncio.ensure_future(stop.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            while True:
                woken = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait(
                    {stopped, lost, woken},
                    timeout=SKIPPED_KEPT_S if self._skipped else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
                if stopped in done:
                    return
                if lost in done:
                    raise OSError("the LISTEN connection closed")
                self._wake.clear()
                if self._outbox:
                    while await self._read_outbox(conn):
                        pass
        finally:
            stopped.cancel()
            lost.cancel()

    def _on_inbox(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        read = inbox_uris(payload)
        if read is not None:
            self._publish(*read)

    async def _read_outbox(self, conn: asyncpg.Connection) -> bool:
        """Publish the rows committed since the last look; True when a full batch says there may be more."""
        now = time.monotonic()
        self._skipped = {i: at for i, at in self._skipped.items() if now - at < SKIPPED_KEPT_S}
        rows = await outbox_db.newer_rows(conn, self._after_id, list(self._skipped), BATCH, timeout_s=QUERY_TIMEOUT_S)
        expected = self._after_id + 1
        for row in rows:
            row_id = int(row["id"])
            self._skipped.pop(row_id, None)
            if row_id > self._after_id:
                room = max(0, MAX_SKIPPED - len(self._skipped))
                for missing in range(expected, min(row_id, expected + room)):
                    self._skipped.setdefault(missing, now)
                expected = row_id + 1
                self._after_id = row_id
            payload = row["payload"]
            self._publish_envelope(json.loads(payload) if isinstance(payload, str) else payload)
        return len(rows) == BATCH

    def _publish_envelope(self, raw: Any) -> None:
        try:
            envelope = Envelope.from_dict(raw)
        except EnvelopeError:
            return
        self._publish(envelope.user_id, uris_of(envelope))


async def _kafka_feed(settings: Settings, publish: Publish, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    from mcp_todo.pipeline.kafka import START_ERRORS, live_consumer_kwargs

    topic = settings.topic(TOPIC_TASK_EVENTS)
    attempt = 0
    while not stop.is_set():
        consumer = AIOKafkaConsumer(**live_consumer_kwargs(settings))
        try:
            await consumer.start()
            await consumer.topics()  # fetches the metadata, so the partitions are known
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                raise KafkaError(f"topic {topic} has no partitions yet")
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_end(*assigned)
            log.info("live feed consuming", extra={"topic": topic, "partitions": len(assigned)})
            attempt = 0
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS)
                for records in batch.values():
                    for record in records:
                        try:
                            envelope = Envelope.from_json(record.value)
                        except EnvelopeError:
                            continue
                        publish(envelope.user_id, uris_of(envelope))
        except (*START_ERRORS, KafkaError) as exc:
            delay_s = backoff_delay(attempt, base_s=0.5, cap_s=10.0)
            log.warning("live feed: broker unavailable", extra={"error": exc.__class__.__name__})
            attempt += 1
            if not await sleep_unless_stopped(stop, delay_s):
                return
        finally:
            await consumer.stop()
