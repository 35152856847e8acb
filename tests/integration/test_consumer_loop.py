"""The shared consume → handle → commit loop against the real tansu broker (its group join takes ~5 s, so each test
starts its clocks only once the loop reports `ready`)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaProducer

from mcp_todo.events import EVENT_TYPES, GROUP_RECURRER, TASK_COMPLETED, TOPIC_RECURRENCE, Envelope
from mcp_todo.pipeline.consumer import ConsumerLoop, Handler
from mcp_todo.pipeline.kafka import dlq_topic, producer_kwargs
from mcp_todo.settings import Settings
from tests.support.background import Background
from tests.support.broker import FAST_GROUP_OPTIONS, read_topic
from tests.support.polling import eventually

pytestmark = pytest.mark.kafka

TIMEOUT_S = 30.0


def envelope(task_id: int, **data: object) -> Envelope:
    return Envelope(event_type=TASK_COMPLETED, user_id="alice", task_id=task_id, data=dict(data))


@pytest.fixture
async def producer(kafka_settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(**producer_kwargs(kafka_settings))
    await producer.start()
    yield producer
    await producer.stop()


async def send(producer: AIOKafkaProducer, settings: Settings, key: bytes, value: bytes) -> None:
    await producer.send_and_wait(settings.topic(TOPIC_RECURRENCE), value=value, key=key)


class Running(Background):
    def __init__(self, loop: ConsumerLoop) -> None:
        super().__init__(loop.run)
        self.loop = loop

    async def ready(self) -> None:
        ready = asyncio.ensure_future(self.loop.ready.wait())
        done, _ = await asyncio.wait([ready, self.task], timeout=TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if self.task.done():
                self.task.result()  # surfaces the loop's error
            raise AssertionError("the consumer loop was never assigned partitions")

    async def close(self, timeout_s: float = TIMEOUT_S) -> float:
        """Stop the loop; returns how long it took to drain, commit and close."""
        return await super().close(timeout_s)


@pytest.fixture
async def start_loop(kafka_settings: Settings) -> AsyncIterator[Callable[..., Running]]:
    running: list[Running] = []

    def start(handler: Handler, **options: object) -> Running:
        options.setdefault("retry_base_s", 0.02)
        options.setdefault("retry_cap_s", 0.1)
        options.setdefault("consumer_options", FAST_GROUP_OPTIONS)
        loop = Running(ConsumerLoop(kafka_settings, TOPIC_RECURRENCE, GROUP_RECURRER, handler, **options))  # type: ignore[arg-type]
        running.append(loop)
        return loop

    yield start
    for loop in running:
        if not loop.task.done():
            await loop.close()


async def test_poison_messages_are_parked_with_their_reason_and_the_next_one_handled(
    kafka_settings: Settings, producer: AIOKafkaProducer, start_loop: Callable[..., Running]
) -> None:
    handled: list[Envelope] = []

    async def handler(event: Envelope) -> None:
        handled.append(event)

    running = start_loop(handler)
    await running.ready()
    good = envelope(1, seq=1)
    # All on one key, so one partition: the poison messages sit right before the good one.
    await send(producer, kafka_settings, b"1", b"\xff not json")
    await send(producer, kafka_settings, b"1", b'{"event_type": "task.exploded", "task_id": 1}')
    await send(producer, kafka_settings, b"1", good.to_json())
    await eventually(lambda: len(handled) == 1, TIMEOUT_S, "the good event after the poison ones is handled")
    assert handled == [good]
    assert await running.close() < 30
    bootstrap = kafka_settings.kafka_bootstrap_servers
    assert bootstrap is not None
    parked = await read_topic(bootstrap, dlq_topic(kafka_settings.topic(TOPIC_RECURRENCE)), 2)
    assert [(record.value, dict(record.headers)["mcp_todo.error"]) for record in parked] == [
        (b"\xff not json", b"message is not UTF-8"),
        (
            b'{"event_type": "task.exploded", "task_id": 1}',
            b"event_type is not one of " + str(sorted(EVENT_TYPES)).encode(),
        ),
    ]
    assert [dict(record.headers)["mcp_todo.attempts"] for record in parked] == [b"0", b"0"]


async def test_failing_handler_is_retried_then_parked_on_the_dlq(
    kafka_settings: Settings, producer: AIOKafkaProducer, start_loop: Callable[..., Running]
) -> None:
    attempts: dict[int, int] = defaultdict(int)
    handled: list[int] = []

    async def handler(event: Envelope) -> None:
        attempts[event.task_id] += 1
        if event.task_id == 1 and attempts[1] < 3:
            raise ConnectionError("database blip")  # succeeds on the third attempt
        if event.task_id == 2:
            raise RuntimeError("always broken")
        handled.append(event.task_id)

    running = start_loop(handler, max_attempts=4)
    await running.ready()
    broken = envelope(2, seq=2)
    for event in (envelope(1, seq=1), broken, envelope(3, seq=3)):
        await send(producer, kafka_settings, b"same-partition", event.to_json())
    await eventually(lambda: handled == [1, 3], TIMEOUT_S, "the flaky and the following events are handled")
    assert attempts == {1: 3, 2: 4, 3: 1}  # retried, not skipped; the broken one exactly max_attempts times

    bootstrap = kafka_settings.kafka_bootstrap_servers
    assert bootstrap is not None
    parked = await read_topic(bootstrap, dlq_topic(kafka_settings.topic(TOPIC_RECURRENCE)), 1)
    assert len(parked) == 1
    assert parked[0].key == b"same-partition"
    assert Envelope.from_json(parked[0].value) == broken
    headers = dict(parked[0].headers)
    assert headers["mcp_todo.source_topic"] == kafka_settings.topic(TOPIC_RECURRENCE).encode()
    assert headers["mcp_todo.error"] == b"RuntimeError"
    assert headers["mcp_todo.attempts"] == b"4"


async def test_a_database_outage_spends_no_attempts_and_parks_nothing(
    kafka_settings: Settings, producer: AIOKafkaProducer, start_loop: Callable[..., Running]
) -> None:
    """A handler that cannot reach its database is waited for, however long: parking its event would lose its
    effect (a reminder already marked sent, a successor never created)."""
    attempts: dict[int, int] = defaultdict(int)
    handled: list[int] = []

    async def handler(event: Envelope) -> None:
        attempts[event.task_id] += 1
        if attempts[event.task_id] <= 8:  # twice max_attempts: the database is down for a while
            raise ConnectionRefusedError(111, "Connect call failed")
        handled.append(event.task_id)

    running = start_loop(handler, max_attempts=4)
    await running.ready()
    for task_id in (1, 2):
        await send(producer, kafka_settings, b"same-partition", envelope(task_id, seq=task_id).to_json())
    await eventually(lambda: handled == [1, 2], TIMEOUT_S, "both events are handled once the database is back")
    assert attempts == {1: 9, 2: 9}
    bootstrap = kafka_settings.kafka_bootstrap_servers
    assert bootstrap is not None
    assert await read_topic(bootstrap, dlq_topic(kafka_settings.topic(TOPIC_RECURRENCE)), 1, timeout_s=3) == []


async def test_offsets_are_committed_after_handling_so_a_restart_does_not_redeliver(
    kafka_settings: Settings, producer: AIOKafkaProducer, start_loop: Callable[..., Running]
) -> None:
    handled: list[int] = []

    async def handler(event: Envelope) -> None:
        handled.append(event.task_id)

    first = start_loop(handler)
    await first.ready()
    for task_id in range(1, 7):  # several keys: several partitions
        await send(producer, kafka_settings, str(task_id).encode(), envelope(task_id).to_json())
    await eventually(lambda: sorted(handled) == [1, 2, 3, 4, 5, 6], TIMEOUT_S, "the first loop handled all six")
    assert await first.close() < 30

    second = start_loop(handler)
    await second.ready()
    await send(producer, kafka_settings, b"7", envelope(7).to_json())
    await eventually(lambda: 7 in handled, TIMEOUT_S, "the restarted loop handled the new event")
    assert sorted(handled) == [1, 2, 3, 4, 5, 6, 7]  # nothing committed came back


async def test_stop_during_retries_leaves_the_record_uncommitted(
    kafka_settings: Settings, producer: AIOKafkaProducer, start_loop: Callable[..., Running]
) -> None:
    calls: list[int] = []
    healthy = asyncio.Event()

    async def handler(event: Envelope) -> None:
        calls.append(event.task_id)
        if not healthy.is_set():
            raise ConnectionError("database down")

    first = start_loop(handler, retry_base_s=5.0, retry_cap_s=5.0)
    await first.ready()
    await send(producer, kafka_settings, b"1", envelope(1).to_json())
    await eventually(lambda: len(calls) == 1, TIMEOUT_S, "the first attempt failed")
    assert await first.close() < 5  # the backoff wait is cut short by stop

    healthy.set()
    second = start_loop(handler)
    await second.ready()
    await eventually(lambda: len(calls) == 2, TIMEOUT_S, "the uncommitted event is redelivered after the restart")
