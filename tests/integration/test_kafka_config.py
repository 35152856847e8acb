"""Topic creation and the broker check against the real tansu broker."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.pipeline.kafka import check_broker, create_topics
from mcp_todo.settings import Settings
from tests.support.broker import BrokerProcess, broker_settings, free_port

pytestmark = pytest.mark.kafka

SECRET = "hunter2-very-secret"


async def test_create_topics_is_idempotent_and_honours_the_prefix(kafka_broker: str) -> None:
    settings = broker_settings(kafka_broker, KAFKA_TOPIC_PREFIX="cfg-test.")
    first = await create_topics(settings)
    assert sorted(first) == [
        "cfg-test.task-events",
        "cfg-test.task-recurrence",
        "cfg-test.task-recurrence.dlq",
        "cfg-test.task-reminders",
        "cfg-test.task-reminders.dlq",
    ]
    assert await create_topics(settings) == []  # they exist: nothing to do, no error
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker)
    await consumer.start()
    try:
        topics = await consumer.topics()
        partitions = {name: consumer.partitions_for_topic(name) for name in first}
    finally:
        await consumer.stop()
    assert set(first) <= topics
    assert {name: len(p or ()) for name, p in partitions.items()} == {
        "cfg-test.task-events": 3,
        "cfg-test.task-recurrence": 3,
        "cfg-test.task-reminders": 3,
        "cfg-test.task-recurrence.dlq": 1,
        "cfg-test.task-reminders.dlq": 1,
    }


async def test_check_broker_accepts_a_running_broker(kafka_settings: Settings) -> None:
    await check_broker(kafka_settings)


async def test_unreachable_broker_is_a_one_line_error() -> None:
    settings = broker_settings(f"127.0.0.1:{free_port()}")
    with pytest.raises(ConfigurationError) as info:
        await check_broker(settings)
    assert str(info.value).startswith("cannot reach the Kafka broker at 127.0.0.1:")
    with pytest.raises(ConfigurationError, match="cannot reach the Kafka broker"):
        await create_topics(settings)


async def test_wrong_password_is_a_one_line_error_without_the_password() -> None:
    broker = BrokerProcess(authentication=True)
    await broker.start()
    try:
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            settings = broker_settings(
                broker.bootstrap,
                KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                KAFKA_SASL_MECHANISM=mechanism,
                KAFKA_SASL_USERNAME="bob",
                KAFKA_SASL_PASSWORD=SECRET,
            )
            for action in (check_broker, create_topics):
                with pytest.raises(ConfigurationError) as info:
                    await action(settings)
                message = str(info.value)
                assert f"rejected the {mechanism} credentials of user 'bob'" in message
                assert SECRET not in message and "\n" not in message
        # A broker that wants SASL, asked without it: told to check the security protocol.
        with pytest.raises(ConfigurationError, match="closed the connection — check KAFKA_SECURITY_PROTOCOL"):
            await check_broker(broker_settings(broker.bootstrap))
    finally:
        broker.close()


async def test_tls_to_a_plaintext_broker_is_a_one_line_error(kafka_broker: str) -> None:
    settings = broker_settings(kafka_broker, KAFKA_SECURITY_PROTOCOL="SSL")
    with pytest.raises(ConfigurationError) as info:
        await check_broker(settings, timeout_s=1.0)
    assert "KAFKA_SECURITY_PROTOCOL=SSL" in str(info.value)
