"""Kafka client settings from Settings (the README's configuration table), without a broker."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.pipeline.kafka import (
    admin_kwargs,
    consumer_kwargs,
    dlq_topic,
    producer_kwargs,
    topic_specs,
)
from mcp_todo.settings import Settings

SECRET = "hunter2-very-secret"


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {"KAFKA_BOOTSTRAP_SERVERS": "broker-1:9092,broker-2:9092"}
    base.update(values)
    return Settings(**base)


def test_plaintext_producer_is_idempotent_with_acks_all_compression_and_bounds_by_default() -> None:
    kwargs = producer_kwargs(settings())
    assert kwargs["bootstrap_servers"] == "broker-1:9092,broker-2:9092"
    assert kwargs["security_protocol"] == "PLAINTEXT"
    assert kwargs["enable_idempotence"] is True
    assert kwargs["acks"] == "all"
    assert kwargs["compression_type"] == "lz4"
    assert 0 < kwargs["max_request_size"] <= 1_048_576
    assert 0 <= kwargs["linger_ms"] <= 10
    assert "ssl_context" not in kwargs
    assert "sasl_mechanism" not in kwargs


def test_idempotence_can_be_turned_off_for_brokers_without_it() -> None:
    kwargs = producer_kwargs(settings(KAFKA_ENABLE_IDEMPOTENCE="false"))
    assert kwargs["enable_idempotence"] is False
    assert kwargs["acks"] == "all"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_for_redpanda_cloud(mechanism: str) -> None:
    configured = settings(
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM=mechanism,
        KAFKA_SASL_USERNAME="bob",
        KAFKA_SASL_PASSWORD=SECRET,
    )
    for kwargs in (producer_kwargs(configured), consumer_kwargs(configured, "g"), admin_kwargs(configured)):
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert kwargs["sasl_mechanism"] == mechanism
        assert kwargs["sasl_plain_username"] == "bob"
        assert kwargs["sasl_plain_password"] == SECRET
        context = kwargs["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_sasl() -> None:
    sasl = producer_kwargs(
        settings(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_USERNAME="bob", KAFKA_SASL_PASSWORD=SECRET)
    )
    assert sasl["sasl_mechanism"] == "SCRAM-SHA-256"  # the default mechanism
    assert "ssl_context" not in sasl
    tls = producer_kwargs(settings(KAFKA_SECURITY_PROTOCOL="SSL"))
    assert isinstance(tls["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in tls


@pytest.mark.parametrize("missing", ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"])
def test_sasl_without_credentials_is_a_one_line_configuration_error(missing: str) -> None:
    values = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "bob", "KAFKA_SASL_PASSWORD": SECRET}
    del values[missing]
    with pytest.raises(ConfigurationError) as info:
        producer_kwargs(settings(**values))
    message = str(info.value)
    assert "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD" in message
    assert "\n" not in message and SECRET not in message


def test_local_mode_has_no_kafka_settings() -> None:
    with pytest.raises(ConfigurationError, match="KAFKA_BOOTSTRAP_SERVERS"):
        producer_kwargs(settings(KAFKA_BOOTSTRAP_SERVERS=""))


def test_consumer_commits_by_hand_from_the_earliest_offset_in_a_prefixed_group() -> None:
    kwargs = consumer_kwargs(settings(KAFKA_TOPIC_PREFIX="staging."), "mcp-todo-recurrer")
    assert kwargs["group_id"] == "staging.mcp-todo-recurrer"
    assert kwargs["enable_auto_commit"] is False
    assert kwargs["auto_offset_reset"] == "earliest"


def test_topics_are_prefixed_with_contract_partitions_retention_and_dead_letter_topics() -> None:
    specs = {spec.name: (spec.partitions, spec.retention_ms) for spec in topic_specs(settings(KAFKA_TOPIC_PREFIX="p-"))}
    day_ms = 24 * 60 * 60 * 1000
    assert specs == {
        "p-task-events": (3, 7 * day_ms),
        "p-task-recurrence": (3, 7 * day_ms),
        "p-task-reminders": (3, 1 * day_ms),
        "p-task-recurrence.dlq": (1, 7 * day_ms),
        "p-task-reminders.dlq": (1, 7 * day_ms),
    }
    assert dlq_topic("p-task-reminders") == "p-task-reminders.dlq"
