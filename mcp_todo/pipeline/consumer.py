"""The one consume → handle → commit loop the workers share.

Per batch (`getmany`): each partition's records are handled in offset order (partitions concurrently). A record that
cannot be an event of this topic (whatever its bytes: not a bounded, valid envelope, another event type, a payload
that does not fit its type) is parked at once on `<prefixed topic>.dlq` with the reason in a header, since no retry
can repair it; a handler that raises is retried with backoff up to `max_attempts`, then parked the same way. Either
way the loop goes on past it: nothing a record carries ends the loop, and a parked record is committed past, so a
restart does not meet it again.

With a `batch_handler` (one database transaction for a partition's whole batch instead of one per event), the
partition's decoded envelopes go to it in one call, once. Should it raise, nothing of the batch counts (the handler's
transaction rolled back, or its effects are idempotent) and the records are handled one by one with `handler`, with the
retries and the parking above: one poison event is isolated and parked, the others handled. Offsets are committed
per partition (offset + 1) only after the records' effects are done, so a crash redelivers (handlers are idempotent).
`stop.set()` lets the in-flight batch finish (without further retries), commits, and closes.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CorruptRecordException, KafkaError

from mcp_todo.db.availability import database_unreachable
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.events import MAX_EVENT_BYTES, Envelope, EnvelopeError
from mcp_todo.metrics import EVENTS_HANDLED
from mcp_todo.pipeline.kafka import START_ERRORS, check_broker, consumer_kwargs, dlq_topic, producer_kwargs
from mcp_todo.runtime.backoff import backoff_delay
from mcp_todo.runtime.outage import BROKER_OUTAGE
from mcp_todo.runtime.waits import sleep_unless_stopped
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[Envelope], Awaitable[None]]
# All of a partition's decoded envelopes of one poll, in offset order; durable when it returns, idempotent per event.
BatchHandler = Callable[[list[Envelope]], Awaitable[None]]

# What a dead-letter record carries of the original, so that parking one can never fail for its size (the producer
# sends at most MAX_REQUEST_SIZE): the value up to MAX_EVENT_BYTES (larger ones were refused for their size and keep
# their first bytes, their full size in a header), a key up to 4 KiB, original headers up to 16 KiB in all.
_DLQ_KEY_BYTES = 4096
_DLQ_HEADER_BYTES = 16 * 1024
# A reason is our own one-line text, never the record's content; capped all the same.
_REASON_CHARS = 500
# What aiokafka raises from a poll when it cannot parse a fetched record: a header key that is not UTF-8
# (UnicodeDecodeError), a malformed length or varint, a checksum that does not match.
UNREADABLE = (ValueError, IndexError, struct.error, CorruptRecordException)


@dataclass
class _PartitionResult:
    next_offset: int | None = None  # what to commit; None: nothing finished in this partition
    handled: int = 0
    refused: int = 0  # parked at once: not an event of this topic
    parked: int = 0  # parked after its attempts
    batch_failed: bool = False  # the batch handler raised; the records were handled one by one


class _ReadyListener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type information
    def __init__(self, ready: asyncio.Event, topic: str) -> None:
        self._ready = ready
        self._topic = topic

    def on_partitions_revoked(self, revoked: Any) -> None:
        # Nothing to flush: offsets are committed at the end of every batch.
        return None

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info(
            "partitions assigned", extra={"topic": self._topic, "partitions": sorted(tp.partition for tp in assigned)}
        )
        self._ready.set()


class ConsumerLoop:
    def __init__(
        self,
        settings: Settings,
        topic: str,
        group_id: str,
        handler: Handler,
        *,
        max_attempts: int = 5,
        retry_base_s: float = 0.5,
        retry_cap_s: float = 8.0,
        handler_timeout_s: float = 60.0,
        poll_timeout_ms: int = 500,
        max_records: int = 1000,
        consumer_options: Mapping[str, Any] | None = None,
        batch_handler: BatchHandler | None = None,
        event_types: Collection[str] | None = None,
    ) -> None:
        """`topic` and `group_id` are logical names; KAFKA_TOPIC_PREFIX is applied here. `consumer_options` override
        AIOKafkaConsumer arguments (tests shorten the group session so a restarted member joins quickly).
        `batch_handler`, when given, takes each partition's batch first; `handler` is the per-record fallback.
        `event_types`, when given, are the only ones this topic carries: a record of another type, or whose payload
        does not fit its type's model, is parked at once instead of reaching the handlers."""
        self._settings = settings
        self.topic = settings.topic(topic)
        self.dlq = dlq_topic(self.topic)
        self.group_id = settings.topic(group_id)
        self._logical_group = group_id
        self._handler = handler
        self._batch_handler = batch_handler
        self.event_types = frozenset(event_types) if event_types is not None else None
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.handler_timeout_s = handler_timeout_s
        self.poll_timeout_ms = poll_timeout_ms
        self.max_records = max_records
        self.ready = asyncio.Event()  # set once partitions are assigned
        self._consumer_options = dict(consumer_options or {})
        self._producer: AIOKafkaProducer | None = None
        # Created up front, so every outcome is exposed (at 0) from the start.
        self._handled_counters = {o: EVENTS_HANDLED.labels(group_id, o) for o in ("handled", "parked")}

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            **{**consumer_kwargs(self._settings, self._logical_group), **self._consumer_options}
        )
        try:
            await consumer.start()
        except START_ERRORS as exc:
            await consumer.stop()
            await check_broker(self._settings)  # names the cause (auth, TLS, unreachable) when it can
            raise ConfigurationError(
                f"cannot start the Kafka consumer for {self.topic}: {exc.__class__.__name__}"
            ) from exc
        consumer.subscribe([self.topic], listener=_ReadyListener(self.ready, self.topic))
        log.info("consumer started", extra={"topic": self.topic, "group": self.group_id})
        try:
            while not stop.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
                except UNREADABLE as exc:
                    try:
                        await self._step_past_unreadable(consumer, exc, stop)
                    except KafkaError as lost:
                        # The broker went away or a rebalance took the partition: the next poll starts it again.
                        log.warning("finding an unreadable record failed", extra={"error": type(lost).__name__})
                        await sleep_unless_stopped(stop, self.retry_base_s)
                    continue
                if batch:
                    await self._process(consumer, batch, stop)
        finally:
            try:
                await asyncio.wait_for(consumer.stop(), 10)
            finally:
                if self._producer is not None:
                    await asyncio.wait_for(self._producer.stop(), 10)
            log.info("consumer stopped", extra={"topic": self.topic, "group": self.group_id})

    async def _process(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event
    ) -> None:
        started = time.perf_counter()
        partitions = list(batch)
        results = await asyncio.gather(*(self._handle_partition(batch[tp], stop) for tp in partitions))
        offsets = {tp: r.next_offset for tp, r in zip(partitions, results, strict=True) if r.next_offset is not None}
        if offsets:
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # A rebalance took the partitions away: the new owner redelivers, and handlers are idempotent.
                log.warning("offset commit failed", extra={"topic": self.topic, "error": exc.__class__.__name__})
        self._handled_counters["handled"].inc(sum(r.handled for r in results))
        self._handled_counters["parked"].inc(sum(r.refused + r.parked for r in results))
        log.info(
            "consumer batch",
            extra={
                "topic": self.topic,
                "group": self.group_id,
                "records": sum(len(records) for records in batch.values()),
                "handled": sum(r.handled for r in results),
                "refused": sum(r.refused for r in results),
                "parked": sum(r.parked for r in results),
                "batch_fallbacks": sum(r.batch_failed for r in results),
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )

    async def _step_past_unreadable(self, consumer: AIOKafkaConsumer, error: Exception, stop: asyncio.Event) -> None:
        """aiokafka could not read a fetched record (a header key that is not UTF-8, a bad checksum) and raises for it
        at every poll, having dropped the records it had read before it in that poll. Find it: each partition from its
        committed offset, one record at a time (those handled as usual), until the one that cannot be read; park a
        note of it (its bytes are out of reach) and step past it. Each call gets at least that far, or through up to
        `max_records` records of every partition; the next unreadable record makes the next poll call again."""
        log.warning(
            "a fetched record cannot be read; finding it",
            extra={"topic": self.topic, "error": error.__class__.__name__},
        )
        for tp in sorted(consumer.assignment(), key=lambda tp: tp.partition):
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
            for _ in range(self.max_records):
                if stop.is_set():
                    return
                try:
                    batch = await consumer.getmany(tp, timeout_ms=self.poll_timeout_ms, max_records=1)
                except UNREADABLE as exc:
                    offset = await consumer.position(tp)
                    where = {"topic": tp.topic, "partition": tp.partition, "offset": offset}
                    placeholder = ConsumerRecord(tp.topic, tp.partition, offset, -1, 0, None, None, None, -1, -1, [])
                    reason = f"unreadable record ({exc.__class__.__name__}): its bytes could not be read"
                    if await self._park(placeholder, where, reason, attempts=0, stop=stop) is None:
                        return
                    await consumer.commit({tp: offset + 1})
                    consumer.seek(tp, offset + 1)
                    return
                if not batch:
                    break
                await self._process(consumer, batch, stop)

    def _decode(self, record: ConsumerRecord) -> Envelope | str:
        """The record's envelope, or why it is not an event of this topic (one line, quoting nothing of the record)."""
        try:
            envelope = Envelope.from_json(record.value)
            if self.event_types is not None:
                if envelope.event_type not in self.event_types:
                    return f"a {envelope.event_type} event does not belong on {self.topic}"
                envelope.check_payload()
            return envelope
        except EnvelopeError as exc:
            return str(exc)
        # A record holds whatever anybody wrote to the topic: whatever decoding it raises parks it (and is a bug in
        # the decoder's bounds, hence the traceback), never ends the loop.
        except Exception as exc:
            log.exception("undecodable record", extra={"topic": record.topic, "offset": record.offset})
            return f"undecodable ({exc.__class__.__name__})"

    async def _handle_partition(self, records: Sequence[ConsumerRecord], stop: asyncio.Event) -> _PartitionResult:
        result = _PartitionResult()
        decoded = [(record, self._decode(record)) for record in records]
        envelopes = [item for _, item in decoded if isinstance(item, Envelope)]
        batch_done = False
        # One event gains nothing from the batch path, and going straight to the per-record one keeps its attempt count.
        if self._batch_handler is not None and len(envelopes) > 1:
            batch_done = await self._handle_batch(records, envelopes)
            result.batch_failed = not batch_done
        for record, item in decoded:
            where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
            if isinstance(item, str):
                if await self._park(record, where, item, attempts=0, stop=stop) is None:
                    return result  # stopping while the DLQ is away: leave this record and the rest uncommitted
                result.refused += 1
            elif batch_done:
                result.handled += 1
            else:
                outcome = await self._handle_record(record, item, stop, where)
                if outcome is None:
                    return result  # stopping mid-retry: leave this record and the rest uncommitted
                if outcome:
                    result.handled += 1
                else:
                    result.parked += 1
            result.next_offset = record.offset + 1
        return result

    async def _handle_batch(self, records: Sequence[ConsumerRecord], envelopes: list[Envelope]) -> bool:
        """One attempt of the batch handler; False (logged) when it raised: the caller falls back to one by one."""
        assert self._batch_handler is not None
        try:
            async with asyncio.timeout(self.handler_timeout_s):
                await self._batch_handler(envelopes)
            return True
        # Plug-in code, as in _handle_record; not retried as a batch: the per-record path retries and parks.
        except Exception as exc:
            log.warning(
                "batch handler failed; handling the records one by one",
                extra={
                    "topic": records[0].topic,
                    "partition": records[0].partition,
                    "first_offset": records[0].offset,
                    "last_offset": records[-1].offset,
                    "events": len(envelopes),
                    "error": exc.__class__.__name__,
                },
                exc_info=True,
            )
            return False

    async def _handle_record(
        self, record: ConsumerRecord, envelope: Envelope, stop: asyncio.Event, where: dict[str, Any]
    ) -> bool | None:
        """True: handled; False: parked on the DLQ; None: given up because the loop is stopping."""
        error = "none"
        attempt = 0
        waits = 0  # for the database, which spend none of the event's attempts
        waited = 0.0
        while attempt < self.max_attempts:
            try:
                async with asyncio.timeout(self.handler_timeout_s):
                    await self._handler(envelope)
                if waits:
                    log.info("database back; event handled", extra={**where, "waited_s": round(waited, 1)})
                return True
            # A handler is plug-in code: whatever it raises is retried, then parked, never fatal to the loop.
            except Exception as exc:
                error = exc.__class__.__name__
                if database_unreachable(exc):
                    # The event is not at fault, and parking it would lose its effect: wait for the database.
                    if not waits:
                        log.warning("database unreachable; waiting for it", extra={**where, "error": error})
                    delay = backoff_delay(waits, base_s=self.retry_base_s, cap_s=self.retry_cap_s)
                    waits += 1
                    waited += delay
                    if not await sleep_unless_stopped(stop, delay):
                        return None
                    continue
                log.warning(
                    "handler failed",
                    extra={**where, "event_id": str(envelope.event_id), "attempt": attempt + 1, "error": error},
                    exc_info=True,
                )
            attempt += 1
            if attempt < self.max_attempts and not await sleep_unless_stopped(
                stop, backoff_delay(attempt - 1, base_s=self.retry_base_s, cap_s=self.retry_cap_s)
            ):
                return None
        return await self._park(record, where, error, attempts=self.max_attempts, stop=stop, envelope=envelope)

    async def _park(
        self,
        record: ConsumerRecord,
        where: dict[str, Any],
        error: str,
        *,
        attempts: int,
        stop: asyncio.Event,
        envelope: Envelope | None = None,
    ) -> bool | None:
        """Publish the record to the DLQ with `error` (a class name, or the reason it was refused); False once there,
        None when stopping before it could be."""
        key, value, headers = _dead_letter(record, error, attempts)
        failures = 0
        note_only = False
        while True:
            try:
                producer = await self._dlq_producer()
                await producer.send_and_wait(self.dlq, value=value, key=key, headers=headers)
            except (AssertionError, TypeError) as exc:
                # The client refused the copy itself (not the broker): park a note without the record's own key,
                # value and headers rather than end the loop on it.
                if note_only:
                    raise
                log.warning("dead-letter copy refused; parking a note", extra={**where, "error": type(exc).__name__})
                key, value, headers = None, b"", _note_headers(record, error, attempts)
                note_only = True
                continue
            except START_ERRORS as exc:
                # Until the DLQ has it, the record must stay uncommitted: keep trying (or give up on stop).
                delay = backoff_delay(failures, base_s=self.retry_base_s, cap_s=self.retry_cap_s)
                failures += 1
                log.warning(
                    "dead-letter publish failed", extra={**where, "error": exc.__class__.__name__, **BROKER_OUTAGE}
                )
                if not await sleep_unless_stopped(stop, delay):
                    return None
                continue
            about = {"event_id": str(envelope.event_id), "event_type": envelope.event_type} if envelope else {}
            log.error(
                "event parked on the dead-letter topic",
                extra={**where, "dlq": self.dlq, **about, "attempts": attempts, "error": error},
            )
            return False

    async def _dlq_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(**producer_kwargs(self._settings))
            try:
                await producer.start()
            except START_ERRORS:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer


def _dead_letter(record: ConsumerRecord, error: str, attempts: int) -> tuple[bytes | None, bytes | None, list[Any]]:
    """(key, value, headers) of the DLQ copy of `record`: the original key, value and headers, within the bounds above
    (what was cut is said in a header), plus where it came from and why it is parked."""
    value: bytes | None = record.value
    key: bytes | None = record.key
    extra: list[tuple[str, bytes]] = []
    if value is not None and len(value) > MAX_EVENT_BYTES:
        extra.append(("mcp_todo.value_bytes", str(len(value)).encode()))
        value = bytes(value[:MAX_EVENT_BYTES])
    if key is not None and len(key) > _DLQ_KEY_BYTES:
        extra.append(("mcp_todo.key_bytes", str(len(key)).encode()))
        key = bytes(key[:_DLQ_KEY_BYTES])
    original = [(k, v) for k, v in (record.headers or ()) if isinstance(k, str) and isinstance(v, bytes)]
    if sum(len(k.encode()) + len(v) for k, v in original) > _DLQ_HEADER_BYTES:
        extra.append(("mcp_todo.headers_dropped", str(len(original)).encode()))
        original = []
    if key is None and value is None:
        value = b""  # a Kafka client sends a key, a value or both
    return key, value, [*original, *_note_headers(record, error, attempts), *extra]


def _note_headers(record: ConsumerRecord, error: str, attempts: int) -> list[tuple[str, bytes]]:
    """Where a parked record came from and why it is parked."""
    reason = " ".join(error.split())[:_REASON_CHARS]
    return [
        ("mcp_todo.source_topic", record.topic.encode()),
        ("mcp_todo.source_partition", str(record.partition).encode()),
        ("mcp_todo.source_offset", str(record.offset).encode()),
        ("mcp_todo.error", reason.encode()),
        ("mcp_todo.attempts", str(attempts).encode()),
    ]
