"""Where the relay delivers outbox rows: Kafka, or (local mode) the in-process handlers.

`Sink.send` hands a batch over in row order and returns a future that settles once every row is settled; the relay
claims the next batch while the broker still acknowledges this one. Per-row outcomes (`PublishOutcome`) exist for
local mode, where one handler can fail one row; Kafka refuses (or accepts) a batch as a whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from mcp_todo.events import Envelope, EnvelopeError
from mcp_todo.pipeline.kafka import MAX_REQUEST_SIZE, START_ERRORS, producer_kwargs
from mcp_todo.runtime.outage import BROKER_OUTAGE
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

# The producer's default: what `AIOKafkaProducer.send` would pick for a key.
_PARTITIONER: Final = DefaultPartitioner()

Handler = Callable[[Envelope], Awaitable[None]]
# All of one delivery's envelopes for a topic, in row order; durable when it returns, idempotent per event.
BatchHandler = Callable[[list[Envelope]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One claimed outbox row; `topics` are logical (unprefixed) names."""

    id: int
    task_id: int
    event_type: str
    topics: tuple[str, ...]
    message_key: str
    # The envelope as PostgreSQL prints the jsonb column: valid UTF-8 JSON, sent as is. Re-encoding it compactly
    # would cost a parse and a dump per row (~20 % of the relay's CPU) to save a few spaces that gzip removes anyway.
    payload_json: str
    attempts: int = 0

    @property
    def payload(self) -> dict[str, Any]:
        """The envelope dict."""
        value: dict[str, Any] = json.loads(self.payload_json)
        return value

    def value(self) -> bytes:
        return self.payload_json.encode()


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
    """Where the relay delivers rows. `send` hands a batch over in row order and returns a future that settles once
    every row is settled (delivered, or failed per row); either may raise `SinkUnavailable`, meaning "nothing of this
    batch counts as delivered, retry it later". Two steps so the relay can claim the next batch while the broker is
    still acknowledging this one."""

    async def send(self, rows: Sequence[OutboxMessage]) -> asyncio.Future[PublishOutcome]: ...

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

    async def send(self, rows: Sequence[OutboxMessage]) -> asyncio.Future[PublishOutcome]:
        producer = await self._started()
        futures: list[asyncio.Future[Any]] = []
        failed: dict[int, RowFailure] = {}
        # The records go into one batch per topic and partition, handed to the producer whole (`send_batch`): per record
        # `send` costs a coroutine, a future and the accumulator's bookkeeping, a tenth of a worker's CPU. The partition
        # is the one the producer's own partitioner picks for the key (murmur2, as the Java client), so a task's events
        # stay on their partition; a full batch is handed over and a new one started, so each partition gets them in
        # row order.
        partitions: dict[str, list[int]] = {}
        batches: dict[tuple[str, int], Any] = {}
        try:
            for row in rows:
                key, value = row.message_key.encode(), row.value()
                if DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []) > MAX_REQUEST_SIZE:
                    failed[row.id] = RowFailure("MessageSizeTooLargeError", permanent=True)
                    continue
                for topic in row.topics:
                    name = self._settings.topic(topic)
                    all_partitions = partitions.get(name)
                    if all_partitions is None:
                        all_partitions = partitions[name] = sorted(await producer.partitions_for(name))
                    partition = _PARTITIONER(key, all_partitions, all_partitions)
                    batch = batches.get((name, partition))
                    if batch is None:
                        batch = batches[(name, partition)] = producer.create_batch()
                    if batch.append(timestamp=None, key=key, value=value) is None:
                        futures.append(await producer.send_batch(batch, name, partition=partition))
                        batch = batches[(name, partition)] = producer.create_batch()
                        batch.append(timestamp=None, key=key, value=value)  # an empty batch takes any record
            for (name, partition), batch in batches.items():
                futures.append(await producer.send_batch(batch, name, partition=partition))
        except (KafkaError, OSError, TimeoutError) as exc:
            # Settle what is already in flight first, so nothing of this batch is sent again while it is retried.
            await asyncio.gather(*futures, return_exceptions=True)
            await self._reset()
            raise SinkUnavailable(f"Kafka did not accept the batch: {exc.__class__.__name__}") from exc
        return asyncio.ensure_future(self._acks(futures, failed))

    async def _acks(self, futures: list[asyncio.Future[Any]], failed: dict[int, RowFailure]) -> PublishOutcome:
        try:
            async with asyncio.timeout(self._ack_timeout_s):
                results = await asyncio.gather(*futures, return_exceptions=True)
        except TimeoutError as exc:
            await self._reset()
            raise SinkUnavailable("Kafka did not acknowledge the batch in time") from exc
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self._reset()
            raise SinkUnavailable(f"Kafka did not accept the batch: {errors[0].__class__.__name__}") from errors[0]
        return PublishOutcome(failed=failed) if failed else DELIVERED

    async def _reset(self) -> None:
        # A fresh producer re-bootstraps: the cluster behind the address may have changed while it was away.
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), 10)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning(
                    "kafka producer did not stop cleanly", extra={"error": exc.__class__.__name__, **BROKER_OUTAGE}
                )

    async def close(self) -> None:
        await self._reset()


class LocalSink:
    """Local mode: hands each row to the in-process handler of each of its topics (keyed by logical topic name).

    Topics without a handler (task-events has no local consumer) count as delivered. A handler that fails or hangs
    fails that row only; later rows of the same task are held so the task's order holds.

    With `batch_handlers` (topic → handler of a list, as the workers' consumers use), a delivery's rows for that topic
    go to it first in one call, in row order: one database transaction for the lot instead of one per row. Should it
    raise, nothing of it counts and the rows are handled one by one as above (the handlers are idempotent), so one
    poison row is isolated, retried and parked while the others go through."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        handler_timeout_s: float = 60.0,
    ) -> None:
        self._handlers = dict(handlers)
        self._batch_handlers = dict(batch_handlers or {})
        self._handler_timeout_s = handler_timeout_s

    async def send(self, rows: Sequence[OutboxMessage]) -> asyncio.Future[PublishOutcome]:
        """Runs the handlers now (in row order); the returned future is already settled."""
        settled: asyncio.Future[PublishOutcome] = asyncio.get_running_loop().create_future()
        settled.set_result(await self._deliver(rows))
        return settled

    async def _deliver(self, rows: Sequence[OutboxMessage]) -> PublishOutcome:
        failed: dict[int, RowFailure] = {}
        held: set[int] = set()
        blocked_tasks: set[int] = set()
        envelopes: dict[int, Envelope] = {}
        for row in rows:
            if not any(topic in self._handlers for topic in row.topics):
                continue
            try:
                envelopes[row.id] = Envelope.from_dict(row.payload)
            except EnvelopeError as exc:
                failed[row.id] = RowFailure(exc.__class__.__name__, permanent=True)
        done = await self._deliver_batches(rows, envelopes)
        for row in rows:
            envelope = envelopes.get(row.id)
            if envelope is None:
                continue  # no local handler, or malformed (failed above)
            if row.task_id in blocked_tasks:
                held.add(row.id)
                continue
            for topic in row.topics:
                handler = self._handlers.get(topic)
                if handler is None or (row.id, topic) in done:
                    continue
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

    async def _deliver_batches(
        self, rows: Sequence[OutboxMessage], envelopes: Mapping[int, Envelope]
    ) -> set[tuple[int, str]]:
        """Run each batch handler once on its topic's rows; returns the (row id, topic) pairs it took care of."""
        done: set[tuple[int, str]] = set()
        for topic, batch_handler in self._batch_handlers.items():
            if topic not in self._handlers:
                continue  # a batch handler needs its one-by-one fallback
            ids = [row.id for row in rows if topic in row.topics and row.id in envelopes]
            if len(ids) < 2:  # one row gains nothing from the batch path, and keeps its attempt count exact
                continue
            try:
                async with asyncio.timeout(self._handler_timeout_s):
                    await batch_handler([envelopes[row_id] for row_id in ids])
            # Plug-in code, as above; not retried as a batch: the one-by-one path retries, holds and parks.
            except Exception as exc:
                log.warning(
                    "local batch handler failed; handling the rows one by one",
                    extra={
                        "topic": topic,
                        "rows": len(ids),
                        "first_outbox_id": ids[0],
                        "error": exc.__class__.__name__,
                    },
                    exc_info=True,
                )
                continue
            done.update((row_id, topic) for row_id in ids)
        return done

    async def close(self) -> None:
        return None


def build_sink(
    settings: Settings,
    handlers: Mapping[str, Handler] | None = None,
    batch_handlers: Mapping[str, BatchHandler] | None = None,
) -> Sink:
    """Kafka when KAFKA_BOOTSTRAP_SERVERS is set, else the in-process handlers (local mode)."""
    if settings.local_mode:
        return LocalSink(handlers or {}, batch_handlers=batch_handlers)
    return KafkaSink(settings)
