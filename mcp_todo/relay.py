"""The outbox relay: publishes committed outbox rows, at least once and in commit order per task.

One raw asyncpg connection per relay does everything: LISTEN (SQLAlchemy has no notification API), the shard
advisory locks, and the claim → publish → mark transactions. Putting the locks and the work on the same session means
a relay that dies loses its shards and its open transaction together, so no other relay can take a shard over while
a batch of it is still being marked.

Order with several relays: rows are split into `shard_count` shards by `task_id % shard_count`; a relay publishes
only the shards whose advisory lock it holds, so exactly one relay publishes a given task's events, in id order. Each
relay also holds a membership lock, and keeps about `ceil(shards / members)` shards so replicas share the work; free
shards are retried every `rebalance_interval_s`.

A row is marked published only after the sink acknowledged it; a sink that raises `SinkUnavailable` leaves the whole
batch pending and the relay backs off (exponential, capped, jittered), not woken by NOTIFY meanwhile so it never spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Protocol

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from mcp_todo.db.engine import connect, normalize_dsn
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.events import Envelope, EnvelopeError
from mcp_todo.kafka import START_ERRORS, backoff_delay, producer_kwargs
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

CHANNEL: Final = "mcp_todo_outbox"
# Advisory lock keys (the two-int4 form): ('mctd' as an int) + shard number, and the next class for membership.
SHARD_LOCK_CLASS: Final = 0x6D637464
MEMBER_LOCK_CLASS: Final = SHARD_LOCK_CLASS + 1
MAX_MEMBERS: Final = 64
QUERY_TIMEOUT_S: Final = 30.0
PRUNE_CHUNK: Final = 5000

Handler = Callable[[Envelope], Awaitable[None]]

_CLAIM_SQL: Final = """
SELECT id, task_id, event_type, topics, message_key, payload::text AS payload, attempts
FROM outbox
WHERE published_at IS NULL AND parked_at IS NULL
  AND (task_id % $1)::int = ANY($2::int[])
  AND NOT (id = ANY($3::bigint[]))
  AND NOT (task_id = ANY($4::bigint[]))
ORDER BY id
LIMIT $5
FOR UPDATE SKIP LOCKED
"""
_MARK_SQL: Final = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
_FAIL_SQL: Final = """
UPDATE outbox AS o
SET attempts = o.attempts + 1,
    last_error = f.error,
    parked_at = CASE WHEN f.permanent OR o.attempts + 1 >= $4 THEN now() END
FROM unnest($1::bigint[], $2::text[], $3::bool[]) AS f(id, error, permanent)
WHERE o.id = f.id
RETURNING o.id, o.task_id, o.event_type, o.attempts, o.parked_at IS NOT NULL AS parked
"""
_PRUNE_SQL: Final = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE published_at < now() - $1::interval ORDER BY published_at LIMIT $2
)
"""
_MEMBERS_SQL: Final = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid::bigint = $1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
# What a lost or refused database connection looks like; the relay reconnects after any of them.
_DB_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ConfigurationError)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One claimed outbox row; `payload` is the envelope dict, `topics` are logical (unprefixed) names."""

    id: int
    task_id: int
    event_type: str
    topics: tuple[str, ...]
    message_key: str
    payload: dict[str, Any]
    attempts: int = 0

    def value(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class RowFailure:
    """Why one row was not delivered: the exception class name only (never a message that could hold data)."""

    error: str
    permanent: bool = False  # retrying cannot help (malformed row, too large): park it now


@dataclass(frozen=True)
class PublishOutcome:
    """What a sink did with a batch. Rows in neither set were delivered.

    `failed` rows count an attempt and are retried with backoff, then parked; `held` rows were not tried because an
    earlier row of the same task failed (they wait, unchanged, so the task's order holds)."""

    failed: Mapping[int, RowFailure] = field(default_factory=dict)
    held: frozenset[int] = frozenset()


DELIVERED: Final = PublishOutcome()


class SinkUnavailable(Exception):
    """The sink could not deliver the batch (broker away, timeout); nothing in it counts as delivered."""


class Sink(Protocol):
    async def publish(self, rows: Sequence[OutboxMessage]) -> PublishOutcome:
        """Deliver the rows in order; raise `SinkUnavailable` to mean "none delivered, retry the batch later"."""
        ...

    async def close(self) -> None: ...


class KafkaSink:
    """Publishes each row to each of its topics (prefixed) with the task id as key, and waits for every ack."""

    def __init__(self, settings: Settings, *, ack_timeout_s: float = 60.0) -> None:
        self._settings = settings
        self._ack_timeout_s = ack_timeout_s
        self._producer: AIOKafkaProducer | None = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(**producer_kwargs(self._settings))
            try:
                await producer.start()
            except START_ERRORS as exc:
                await producer.stop()
                raise SinkUnavailable(f"cannot connect to Kafka: {exc.__class__.__name__}") from exc
            self._producer = producer
        return self._producer

    async def publish(self, rows: Sequence[OutboxMessage]) -> PublishOutcome:
        producer = await self._started()
        futures: list[asyncio.Future[Any]] = []
        failed: dict[int, RowFailure] = {}
        send_error: BaseException | None = None
        try:
            for row in rows:
                key, value = row.message_key.encode(), row.value()
                for topic in row.topics:
                    try:
                        # Sent in row order and awaited as a whole: one key → one partition → the task's order.
                        futures.append(await producer.send(self._settings.topic(topic), value=value, key=key))
                    except MessageSizeTooLargeError:
                        failed[row.id] = RowFailure("MessageSizeTooLargeError", permanent=True)
        except (KafkaError, OSError, TimeoutError) as exc:
            send_error = exc
        # Every future is awaited even after an error, so nothing of this batch is still in flight when it is retried.
        try:
            async with asyncio.timeout(self._ack_timeout_s):
                results = await asyncio.gather(*futures, return_exceptions=True)
        except TimeoutError as exc:
            await self._reset()
            raise SinkUnavailable("Kafka did not acknowledge the batch in time") from exc
        errors = [r for r in results if isinstance(r, BaseException)]
        if send_error is not None or errors:
            first = send_error or errors[0]
            await self._reset()
            raise SinkUnavailable(f"Kafka did not accept the batch: {first.__class__.__name__}") from first
        return PublishOutcome(failed=failed) if failed else DELIVERED

    async def _reset(self) -> None:
        # A fresh producer re-bootstraps: the cluster behind the address may have changed while it was away.
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), 10)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("kafka producer did not stop cleanly", extra={"error": exc.__class__.__name__})

    async def close(self) -> None:
        await self._reset()


class LocalSink:
    """Local mode: hands each row to the in-process handler of each of its topics (keyed by logical topic name).

    Topics without a handler (task-events has no local consumer) count as delivered. A handler that fails or hangs
    fails that row only; later rows of the same task are held so the task's order holds."""

    def __init__(self, handlers: Mapping[str, Handler], *, handler_timeout_s: float = 60.0) -> None:
        self._handlers = dict(handlers)
        self._handler_timeout_s = handler_timeout_s

    async def publish(self, rows: Sequence[OutboxMessage]) -> PublishOutcome:
        failed: dict[int, RowFailure] = {}
        held: set[int] = set()
        blocked_tasks: set[int] = set()
        for row in rows:
            if row.task_id in blocked_tasks:
                held.add(row.id)
                continue
            handlers = [(topic, self._handlers[topic]) for topic in row.topics if topic in self._handlers]
            if not handlers:
                continue
            try:
                envelope = Envelope.from_dict(row.payload)
            except EnvelopeError as exc:
                failed[row.id] = RowFailure(exc.__class__.__name__, permanent=True)
                continue
            for topic, handler in handlers:
                try:
                    async with asyncio.timeout(self._handler_timeout_s):
                        await handler(envelope)
                # A handler is plug-in code: whatever it raises must fail this row only, never the relay.
                except Exception as exc:
                    log.warning(
                        "local handler failed",
                        extra={
                            "topic": topic,
                            "outbox_id": row.id,
                            "task_id": row.task_id,
                            "attempt": row.attempts + 1,
                        },
                        exc_info=True,
                    )
                    failed[row.id] = RowFailure(exc.__class__.__name__)
                    blocked_tasks.add(row.task_id)
                    break
        return PublishOutcome(failed=failed, held=frozenset(held)) if failed or held else DELIVERED

    async def close(self) -> None:
        return None


@dataclass
class RelayStats:
    published: int = 0
    failed: int = 0
    parked: int = 0
    batches: int = 0
    sink_failures: int = 0  # batches the sink refused (broker away)


class Relay:
    def __init__(
        self,
        dsn: str,
        sink: Sink,
        *,
        batch_size: int = 500,
        shard_count: int = 8,
        poll_interval_s: float = 2.0,
        rebalance_interval_s: float = 5.0,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        row_backoff_base_s: float = 0.5,
        row_backoff_cap_s: float = 30.0,
        max_attempts: int = 5,
        retention: timedelta = timedelta(days=7),
        prune_interval_s: float = 3600.0,
    ) -> None:
        self._dsn = dsn
        self._sink = sink
        self.batch_size = batch_size
        self.shard_count = shard_count
        self.poll_interval_s = poll_interval_s
        self.rebalance_interval_s = rebalance_interval_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.row_backoff_base_s = row_backoff_base_s
        self.row_backoff_cap_s = row_backoff_cap_s
        self.max_attempts = max_attempts
        self.retention = retention
        self.prune_interval_s = prune_interval_s
        self.stats = RelayStats()
        self._conn: asyncpg.Connection | None = None
        self._conn_lock = asyncio.Lock()
        self._owned: set[int] = set()
        self._member_slot: int | None = None
        self._wake = asyncio.Event()
        # Local mode: failed row id → (monotonic time it may be retried, its task id); its task waits behind it.
        self._retry_at: dict[int, tuple[float, int]] = {}

    @property
    def owned_shards(self) -> frozenset[int]:
        return frozenset(self._owned)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set; survives database and broker outages (reconnecting, backing off)."""
        failures = 0
        try:
            while not stop.is_set():
                try:
                    await self._open()
                    failures = 0
                    await self._serve(stop)
                except _DB_ERRORS as exc:
                    delay = backoff_delay(failures, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)
                    failures += 1
                    log.warning(
                        "relay lost its database connection; reconnecting",
                        extra={"error": exc.__class__.__name__, "retry_in_s": round(delay, 2)},
                    )
                    await self._close()
                    await _wait_for(stop, delay)
        finally:
            await self._close()

    async def drain_once(self) -> int:
        """Publish what is pending now (in this relay's shards) and return how many rows were published."""
        if self._conn is not None:
            return await self._drain()
        await self._open()
        try:
            return await self._drain()
        finally:
            await self._close()

    async def prune(self) -> int:
        """Delete published rows older than the retention; returns how many."""
        if self._conn is not None:
            return await self._prune(self._conn)
        conn = await connect(self._dsn)
        try:
            return await self._prune(conn)
        finally:
            await conn.close()

    async def _prune(self, conn: asyncpg.Connection) -> int:
        total = 0
        while True:
            async with self._conn_lock:
                status = await conn.execute(_PRUNE_SQL, self.retention, PRUNE_CHUNK, timeout=QUERY_TIMEOUT_S)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < PRUNE_CHUNK:
                break
        if total:
            log.info("outbox pruned", extra={"deleted": total, "retention_s": self.retention.total_seconds()})
        return total

    async def _open(self) -> None:
        conn = await connect(self._dsn)
        self._conn = conn
        self._owned.clear()
        self._member_slot = None
        conn.add_termination_listener(self._on_terminated)
        await conn.add_listener(CHANNEL, self._on_notify)
        await self._rebalance()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._owned.clear()
        self._member_slot = None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 5)
            except _DB_ERRORS:
                conn.terminate()

    def _require_conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise asyncpg.InterfaceError("the relay has no database connection")
        return self._conn

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    def _on_terminated(self, *_: object) -> None:
        self._wake.set()  # wake up to notice the loss and reconnect

    async def _serve(self, stop: asyncio.Event) -> None:
        sink_failures = 0
        next_rebalance = time.monotonic() + self.rebalance_interval_s
        # First prune soon after start (a restarted relay may have a backlog of old rows), then every interval.
        next_prune = time.monotonic() + min(60.0, self.prune_interval_s)
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_rebalance:
                await self._rebalance()
                next_rebalance = now + self.rebalance_interval_s
            if now >= next_prune:
                await self.prune()
                next_prune = now + self.prune_interval_s
            self._wake.clear()
            try:
                await self._drain()
            except SinkUnavailable as exc:
                delay = backoff_delay(sink_failures, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)
                sink_failures += 1
                self.stats.sink_failures += 1
                log.warning(
                    "relay could not publish; backing off",
                    extra={"error": str(exc), "attempt": sink_failures, "retry_in_s": round(delay, 2)},
                )
                await _wait_for(stop, delay)
                continue
            sink_failures = 0
            now = time.monotonic()
            timeout = min(self.poll_interval_s, next_rebalance - now, next_prune - now)
            if self._retry_at:
                timeout = min(timeout, min(due for due, _ in self._retry_at.values()) - now)
            await _wait_any(stop, self._wake, max(timeout, 0.0))

    async def _rebalance(self) -> None:
        """Join as a member, then hold about a fair share of the shards: release extras, try free ones."""
        conn = self._require_conn()
        async with self._conn_lock:
            if self._member_slot is None:
                for slot in range(MAX_MEMBERS):
                    if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", MEMBER_LOCK_CLASS, slot):
                        self._member_slot = slot
                        break
            members = max(1, int(await conn.fetchval(_MEMBERS_SQL, MEMBER_LOCK_CLASS, timeout=QUERY_TIMEOUT_S)))
            fair = math.ceil(self.shard_count / members)
            before = set(self._owned)
            for shard in sorted(self._owned, reverse=True)[: max(0, len(self._owned) - fair)]:
                await conn.fetchval("SELECT pg_advisory_unlock($1, $2)", SHARD_LOCK_CLASS, shard)
                self._owned.discard(shard)
            # Start at a slot-dependent shard so members starting together do not all race for the same locks.
            start = (self._member_slot or 0) * fair
            for i in range(self.shard_count):
                if len(self._owned) >= fair:
                    break
                shard = (start + i) % self.shard_count
                if shard not in self._owned and await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, $2)", SHARD_LOCK_CLASS, shard
                ):
                    self._owned.add(shard)
        if self._owned != before:
            log.info(
                "relay shards changed",
                extra={"shards": sorted(self._owned), "members": members, "member_slot": self._member_slot},
            )
            self._wake.set()

    async def _drain(self) -> int:
        total = 0
        while True:
            published, again = await self._drain_batch()
            total += published
            if not again:
                return total

    async def _drain_batch(self) -> tuple[int, bool]:
        """One transaction: claim a batch, publish it, mark what was delivered. Returns (published, drain again)."""
        if not self._owned:
            return 0, False
        now = time.monotonic()
        for row_id in [rid for rid, (due, _) in self._retry_at.items() if due <= now]:
            del self._retry_at[row_id]
        waiting_ids = list(self._retry_at)
        waiting_tasks = list({task_id for _, task_id in self._retry_at.values()})
        conn = self._require_conn()
        started = time.perf_counter()
        async with self._conn_lock, conn.transaction():
            records = await conn.fetch(
                _CLAIM_SQL,
                self.shard_count,
                sorted(self._owned),
                waiting_ids,
                waiting_tasks,
                self.batch_size,
                timeout=QUERY_TIMEOUT_S,
            )
            if not records:
                return 0, False
            rows = [
                OutboxMessage(
                    id=r["id"],
                    task_id=r["task_id"],
                    event_type=r["event_type"],
                    topics=tuple(r["topics"]),
                    message_key=r["message_key"],
                    payload=json.loads(r["payload"]),
                    attempts=r["attempts"],
                )
                for r in records
            ]
            outcome = await self._sink.publish(rows)
            delivered = [row.id for row in rows if row.id not in outcome.failed and row.id not in outcome.held]
            if delivered:
                await conn.execute(_MARK_SQL, delivered, timeout=QUERY_TIMEOUT_S)
            parked = await self._record_failures(conn, outcome.failed) if outcome.failed else 0
        self.stats.published += len(delivered)
        self.stats.failed += len(outcome.failed)
        self.stats.parked += parked
        self.stats.batches += 1
        log.info(
            "relay batch",
            extra={
                "rows": len(rows),
                "published": len(delivered),
                "failed": len(outcome.failed),
                "held": len(outcome.held),
                "parked": parked,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return len(delivered), len(records) == self.batch_size or bool(outcome.held)

    async def _record_failures(self, conn: asyncpg.Connection, failed: Mapping[int, RowFailure]) -> int:
        ids = list(failed)
        results = await conn.fetch(
            _FAIL_SQL,
            ids,
            [failed[i].error for i in ids],
            [failed[i].permanent for i in ids],
            self.max_attempts,
            timeout=QUERY_TIMEOUT_S,
        )
        parked = 0
        for r in results:
            extra = {
                "outbox_id": r["id"],
                "task_id": r["task_id"],
                "event_type": r["event_type"],
                "attempts": r["attempts"],
                "error": failed[r["id"]].error,
            }
            if r["parked"]:
                parked += 1
                log.error("outbox row parked after failed deliveries", extra=extra)
            else:
                delay = backoff_delay(r["attempts"] - 1, base_s=self.row_backoff_base_s, cap_s=self.row_backoff_cap_s)
                self._retry_at[r["id"]] = (time.monotonic() + delay, r["task_id"])
                log.warning("outbox row will be retried", extra={**extra, "retry_in_s": round(delay, 2)})
        return parked


async def _wait_for(stop: asyncio.Event, delay_s: float) -> None:
    """Sleep `delay_s`, or less if `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay_s)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout_s: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def build_sink(settings: Settings, handlers: Mapping[str, Handler] | None = None) -> Sink:
    """Kafka when KAFKA_BOOTSTRAP_SERVERS is set, else the in-process handlers (local mode)."""
    if settings.local_mode:
        return LocalSink(handlers or {})
    return KafkaSink(settings)


async def run_relay_forever(
    settings: Settings,
    dsn: str,
    stop: asyncio.Event,
    handlers: Mapping[str, Handler] | None = None,
    **relay_options: Any,
) -> None:
    """Run a relay until `stop` is set: what the server lifespan, `mcp-todo relay` and the workers call.

    `handlers` (logical topic → handler) are used in local mode only."""
    sink = build_sink(settings, handlers)
    relay = Relay(dsn, sink, **relay_options)
    log.info("relay started", extra={"mode": "local" if settings.local_mode else "kafka"})
    try:
        await relay.run(stop)
    finally:
        await sink.close()
        log.info("relay stopped", extra={"published": relay.stats.published, "parked": relay.stats.parked})


def main() -> None:
    """`python -m mcp_todo.relay`: a standalone relay on DATABASE_URL (the test harness's relay process)."""
    from mcp_todo.settings import get_settings

    logging.basicConfig(stream=sys.stderr, level=os.environ.get("MCP_TODO_LOG_LEVEL", "INFO"))
    settings = get_settings()
    try:
        if settings.database_url is None:
            raise ConfigurationError("DATABASE_URL is not set")
        dsn = normalize_dsn(settings.database_url.get_secret_value())
    except ConfigurationError as exc:
        log.error("relay cannot start: %s", exc)
        raise SystemExit(2) from None

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_relay_forever(settings, dsn, stop)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
