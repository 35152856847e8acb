"""The outbox relay: publishes committed outbox rows, at least once and in commit order per task.

One raw asyncpg connection per relay does everything: LISTEN (SQLAlchemy has no notification API), the shard
advisory locks, and the claim → publish → mark transactions. Putting the locks and the work on the same session means
a relay that dies loses its shards and its open transaction together, so no other relay can take a shard over while
a batch of it is still being marked.

Order with several relays: rows are split into `shard_count` shards by `task_id % shard_count`; a relay publishes
only the shards whose advisory lock it holds, so exactly one relay publishes a given task's events, in id order. Each
relay also holds a membership lock, and keeps about `ceil(shards / members)` shards so replicas share the work; free
shards are retried every `rebalance_interval_s`.

Sinks (Kafka, or the in-process handlers of local mode) are in `mcp_todo.pipeline.sinks`. A row is marked published
only after the sink acknowledged it; a sink that raises `SinkUnavailable` leaves the whole batch pending and the
relay backs off (exponential, capped, jittered), not woken by NOTIFY meanwhile so it never spins.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import asyncpg

from mcp_todo.db import outbox as outbox_db
from mcp_todo.db.engine import connect
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.metrics import OUTBOX
from mcp_todo.pipeline.sinks import (
    BatchHandler,
    Handler,
    OutboxMessage,
    PublishOutcome,
    RowFailure,
    Sink,
    SinkUnavailable,
    build_sink,
)
from mcp_todo.runtime.backoff import backoff_delay
from mcp_todo.runtime.outage import BROKER_OUTAGE
from mcp_todo.runtime.waits import sleep_unless_stopped, wait_any
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

# Advisory lock keys (the two-int4 form): ('mctd' as an int) + shard number, and the next class for membership.
SHARD_LOCK_CLASS: Final = 0x6D637464
MEMBER_LOCK_CLASS: Final = SHARD_LOCK_CLASS + 1
MAX_MEMBERS: Final = 64
QUERY_TIMEOUT_S: Final = 30.0
PRUNE_CHUNK: Final = 5000

# What a lost or refused database connection looks like; the relay reconnects after any of them.
_DB_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # The protocol left mid-operation when the server went away during a statement (seen at COMMIT in the chaos soak).
    asyncpg.InternalClientError,
    ConfigurationError,
)


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
        max_rows_per_transaction: int = 2000,
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
        coalesce_s: float = 0.005,
    ) -> None:
        self._dsn = dsn
        self._sink = sink
        self.batch_size = batch_size
        self.max_rows_per_transaction = max_rows_per_transaction
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
        self.coalesce_s = coalesce_s
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
                    await sleep_unless_stopped(stop, delay)
                # The edge of a background service: a bug in one batch must not end publishing for the process's
                # lifetime. Logged with its traceback; the batch is retried after the back-off (nothing was marked).
                except Exception:
                    delay = backoff_delay(failures, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)
                    failures += 1
                    log.exception("relay failed; restarting it", extra={"retry_in_s": round(delay, 2)})
                    await self._close()
                    await sleep_unless_stopped(stop, delay)
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
                deleted = await outbox_db.prune(conn, self.retention, PRUNE_CHUNK, timeout_s=QUERY_TIMEOUT_S)
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
        # asyncpg prepares each statement once per session, and after five executions PostgreSQL may switch to a
        # generic plan that it keeps until the table is analyzed again. Planned while the outbox was small, the mark
        # (`id = ANY($1)`) stayed a sequential scan that tests each row against the whole id array: quadratic in the
        # backlog (workers bench: 55-90 ms per mark of 500 rows at 8 000 rows, 1.8 s of a 3.6 s run). A custom plan
        # sees the array and today's table; planning a few statements per batch costs well under a millisecond.
        await outbox_db.use_custom_plans(conn)
        await conn.add_listener(outbox_db.WAKE_CHANNEL, self._on_notify)
        await self._rebalance()
        await self._refresh_gauges()

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
                await self._refresh_gauges()
                next_rebalance = now + self.rebalance_interval_s
            if now >= next_prune:
                await self.prune()
                next_prune = now + self.prune_interval_s
            self._wake.clear()
            try:
                published = await self._drain()
            except SinkUnavailable as exc:
                delay = backoff_delay(sink_failures, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)
                sink_failures += 1
                self.stats.sink_failures += 1
                log.warning(
                    "relay could not publish; backing off",
                    extra={"error": str(exc), "attempt": sink_failures, "retry_in_s": round(delay, 2), **BROKER_OUTAGE},
                )
                await sleep_unless_stopped(stop, delay)
                continue
            sink_failures = 0
            now = time.monotonic()
            timeout = min(self.poll_interval_s, next_rebalance - now, next_prune - now)
            if self._retry_at:
                timeout = min(timeout, min(due for due, _ in self._retry_at.values()) - now)
            await wait_any([stop, self._wake], timeout)
            if published > 1 and self._wake.is_set():
                # Under load (the last pass carried several rows and more are committed already): let a few more
                # commits land so the next transaction carries them together, rather than one claim, send and mark
                # per committing transaction. An isolated event (the last pass had one row, or none) goes at once.
                await sleep_unless_stopped(stop, self.coalesce_s)

    async def _refresh_gauges(self) -> None:
        """The outbox gauges of /metrics, refreshed here rather than queried per scrape (mcp_todo.metrics)."""
        async with self._conn_lock:
            pending, oldest_age_s = await outbox_db.pending_stats(self._require_conn(), timeout_s=QUERY_TIMEOUT_S)
        OUTBOX.update(pending, oldest_age_s)

    async def _rebalance(self) -> None:
        """Join as a member, then hold about a fair share of the shards: release extras, try free ones."""
        conn = self._require_conn()
        async with self._conn_lock:
            if self._member_slot is None:
                for slot in range(MAX_MEMBERS):
                    if await outbox_db.try_advisory_lock(conn, MEMBER_LOCK_CLASS, slot):
                        self._member_slot = slot
                        break
            members = max(1, await outbox_db.count_lock_holders(conn, MEMBER_LOCK_CLASS, timeout_s=QUERY_TIMEOUT_S))
            fair = math.ceil(self.shard_count / members)
            before = set(self._owned)
            for shard in sorted(self._owned, reverse=True)[: max(0, len(self._owned) - fair)]:
                await outbox_db.advisory_unlock(conn, SHARD_LOCK_CLASS, shard)
                self._owned.discard(shard)
            # Start at a slot-dependent shard so members starting together do not all race for the same locks.
            start = (self._member_slot or 0) * fair
            for i in range(self.shard_count):
                if len(self._owned) >= fair:
                    break
                shard = (start + i) % self.shard_count
                if shard not in self._owned and await outbox_db.try_advisory_lock(conn, SHARD_LOCK_CLASS, shard):
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
        """One transaction: claim, publish, mark what was delivered. Returns (published, drain again).

        Pipelined: while the sink waits for the broker's acks of one claimed batch, the next one is claimed and sent
        (in id order, so each task's order holds), up to `max_rows_per_transaction`; all are marked at the end."""
        if not self._owned:
            return 0, False
        now = time.monotonic()
        for row_id in [rid for rid, (due, _) in self._retry_at.items() if due <= now]:
            del self._retry_at[row_id]
        waiting_ids = list(self._retry_at)
        waiting_tasks = list({task_id for _, task_id in self._retry_at.values()})
        conn = self._require_conn()
        started = time.perf_counter()
        in_flight: deque[tuple[list[OutboxMessage], asyncio.Future[PublishOutcome]]] = deque()
        failed: dict[int, RowFailure] = {}
        held: set[int] = set()
        claimed = delivered = 0
        last_id = 0

        async def settle_oldest() -> None:
            # Marked as soon as acked: the UPDATE overlaps the acks of the batch sent after it.
            nonlocal delivered
            rows, acks = in_flight.popleft()
            outcome = await acks
            failed.update(outcome.failed)
            held.update(outcome.held)
            done = [row.id for row in rows if row.id not in outcome.failed and row.id not in outcome.held]
            if done:
                await outbox_db.mark_published(conn, done, timeout_s=QUERY_TIMEOUT_S)
                delivered += len(done)

        async with self._conn_lock, conn.transaction():
            try:
                while True:
                    records = await outbox_db.claim(
                        conn,
                        shard_count=self.shard_count,
                        shards=sorted(self._owned),
                        skip_ids=waiting_ids,
                        skip_tasks=waiting_tasks,
                        limit=self.batch_size,
                        after_id=last_id,
                        timeout_s=QUERY_TIMEOUT_S,
                    )
                    rows = [_message(r) for r in records]
                    if rows:
                        claimed += len(rows)
                        last_id = rows[-1].id
                        in_flight.append((rows, await self._sink.send(rows)))
                    # Keep at most two batches in flight: the one being acked and the one just sent.
                    while len(in_flight) > 1 or (in_flight and in_flight[0][1].done()):
                        await settle_oldest()
                    full = len(rows) == self.batch_size
                    # A per-row failure stops the claiming: a later batch could hold that task's next event.
                    if not full or claimed >= self.max_rows_per_transaction or failed or held:
                        break
                while in_flight:
                    await settle_oldest()
            finally:
                if in_flight:  # an error: let the rest settle so nothing of this transaction is still in flight
                    await asyncio.gather(*(acks for _, acks in in_flight), return_exceptions=True)
            if not claimed:
                return 0, False
            parked = await self._record_failures(conn, failed) if failed else 0
        self.stats.published += delivered
        self.stats.failed += len(failed)
        self.stats.parked += parked
        self.stats.batches += 1
        log.info(
            "relay batch",
            extra={
                "rows": claimed,
                "published": delivered,
                "failed": len(failed),
                "held": len(held),
                "parked": parked,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return delivered, full or bool(held)

    async def _record_failures(self, conn: asyncpg.Connection, failed: Mapping[int, RowFailure]) -> int:
        ids = list(failed)
        results = await outbox_db.record_failures(
            conn,
            ids,
            [failed[i].error for i in ids],
            [failed[i].permanent for i in ids],
            max_attempts=self.max_attempts,
            timeout_s=QUERY_TIMEOUT_S,
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


def _message(record: asyncpg.Record) -> OutboxMessage:
    return OutboxMessage(
        id=record["id"],
        task_id=record["task_id"],
        event_type=record["event_type"],
        topics=tuple(record["topics"]),
        message_key=record["message_key"],
        payload_json=record["payload"],
        attempts=record["attempts"],
    )


async def run_relay_forever(
    settings: Settings,
    dsn: str,
    stop: asyncio.Event,
    handlers: Mapping[str, Handler] | None = None,
    batch_handlers: Mapping[str, BatchHandler] | None = None,
    **relay_options: Any,
) -> None:
    """Run a relay until `stop` is set: what the server lifespan, `mcp-todo relay` and the workers call.

    `handlers` (logical topic → handler) and `batch_handlers` (topic → handler of a list, tried first) are used in
    local mode only."""
    sink = build_sink(settings, handlers, batch_handlers)
    relay = Relay(dsn, sink, **relay_options)
    log.info("relay started", extra={"mode": "local" if settings.local_mode else "kafka"})
    try:
        await relay.run(stop)
    finally:
        await sink.close()
        log.info("relay stopped", extra={"published": relay.stats.published, "parked": relay.stats.parked})
