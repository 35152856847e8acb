"""Kafka client settings (SASL/TLS as the README's configuration table names them), topic creation and the broker check.

Everything here is built from `Settings`; nothing connects at import time. The SASL password only ever goes into the
kwargs handed to aiokafka, never into a log line or an error message.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
    for_code,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.events import TOPIC_RECURRENCE, TOPIC_REMINDERS, TOPICS, TopicSpec
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

CLIENT_ID: Final = "mcp-todo"
# Well under the 1 MiB broker default (and Redpanda Cloud's), so a batch is never refused for its size; an envelope
# is a few KB at most (a task with a 10 000-character description).
MAX_REQUEST_SIZE: Final = 1_000_000
# Small: the relay already sends a whole outbox batch before awaiting, so batches form without waiting, and the
# commit → ack latency budget is 20 ms.
LINGER_MS: Final = 2
# lz4 (aiokafka codes it through cramjam): aiokafka runs gzip at level 9, a few per cent of each worker's CPU; with
# lz4 the workers bench went from 4,639 to 4,921 events/s (bench/workers_bench.py, same set-up). Kafka and Redpanda
# both accept lz4.
COMPRESSION: Final = "lz4"
REQUEST_TIMEOUT_MS: Final = 15_000
CHECK_TIMEOUT_S: Final = 10.0
# A fetch returns as soon as a record is there on Kafka and Redpanda, so the wait bounds only idle polling (20
# requests/s); the test broker (tansu) holds every fetch for about half of it, which with aiokafka's 500 ms default
# would add ~250 ms to every event's latency.
FETCH_MAX_WAIT_MS: Final = 50
# aiokafka's default heartbeat; a shorter session needs a shorter one (a third of the session, as Kafka advises).
MAX_HEARTBEAT_INTERVAL_MS: Final = 3000
# The topics the workers consume get a dead-letter topic for events whose handler keeps failing (docs/events.md).
DLQ_SOURCES: Final = frozenset({TOPIC_RECURRENCE, TOPIC_REMINDERS})
DLQ_RETENTION_MS: Final = 7 * 24 * 60 * 60 * 1000

# What starting an aiokafka client raises when it cannot connect or log in. KeyError/ValueError: aiokafka's SCRAM
# client fails that way on the broker's answer to a wrong password.
START_ERRORS: Final = (KafkaError, OSError, TimeoutError, KeyError, ValueError)

_SASL_PROTOCOLS: Final = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_SSL_PROTOCOLS: Final = frozenset({"SSL", "SASL_SSL"})


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of a (prefixed) topic."""
    return f"{topic}.dlq"


def bootstrap_servers(settings: Settings) -> str:
    if settings.kafka_bootstrap_servers is None:
        raise ConfigurationError("KAFKA_BOOTSTRAP_SERVERS is not set (local mode has no Kafka)")
    return settings.kafka_bootstrap_servers


def _security_kwargs(settings: Settings) -> dict[str, Any]:
    protocol = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in _SSL_PROTOCOLS:
        # The system CA store: what Redpanda Cloud and managed Kafka present certificates from.
        kwargs["ssl_context"] = create_ssl_context()
    if protocol in _SASL_PROTOCOLS:
        if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
            raise ConfigurationError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


def _common_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap_servers(settings),
        "client_id": CLIENT_ID,
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        **_security_kwargs(settings),
    }


def producer_kwargs(settings: Settings) -> dict[str, Any]:
    """AIOKafkaProducer arguments: idempotent with acks=all unless KAFKA_ENABLE_IDEMPOTENCE=false (the test broker)."""
    return {
        **_common_kwargs(settings),
        "acks": "all",
        "enable_idempotence": settings.kafka_enable_idempotence,
        "compression_type": COMPRESSION,
        "max_request_size": MAX_REQUEST_SIZE,
        "linger_ms": LINGER_MS,
    }


def consumer_kwargs(settings: Settings, group_id: str) -> dict[str, Any]:
    """AIOKafkaConsumer arguments for a worker group (`group_id` is logical; the topic prefix is applied here).

    Offsets are committed by hand after the effect is durable; a new group starts from the earliest retained event so
    nothing published before the worker's first start is missed (handlers are idempotent). The group session follows
    KAFKA_CONSUMER_SESSION_TIMEOUT_MS."""
    return {
        **_common_kwargs(settings),
        "group_id": settings.topic(group_id),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 500,
        "isolation_level": "read_uncommitted",
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        "session_timeout_ms": settings.kafka_consumer_session_timeout_ms,
        "heartbeat_interval_ms": min(MAX_HEARTBEAT_INTERVAL_MS, settings.kafka_consumer_session_timeout_ms // 3),
    }


def live_consumer_kwargs(settings: Settings) -> dict[str, Any]:
    """AIOKafkaConsumer arguments for a server replica's live feed: no group (its partitions are assigned, every
    replica reads every event), no commits, from the end."""
    return {
        **_common_kwargs(settings),
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "latest",
        "max_poll_records": 500,
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
    }


def admin_kwargs(settings: Settings) -> dict[str, Any]:
    return _common_kwargs(settings)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The prefixed topics `create_topics` ensures: the three of docs/events.md and the dead-letter topics of the two
    consumed ones (Redpanda Cloud does not auto-create topics, so a DLQ must exist before it is needed)."""
    specs = [TopicSpec(settings.topic(spec.name), spec.partitions, spec.retention_ms) for spec in TOPICS]
    specs += [
        TopicSpec(dlq_topic(settings.topic(spec.name)), 1, DLQ_RETENTION_MS)
        for spec in TOPICS
        if spec.name in DLQ_SOURCES
    ]
    return specs


async def create_topics(settings: Settings, *, replication_factor: int = -1) -> list[str]:
    """Create the topics with their partitions and `retention.ms`; existing topics are left as they are.

    Returns the (prefixed) names this call created. `replication_factor=-1` lets the broker apply its default."""
    specs = topic_specs(settings)
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    try:
        await _start_or_explain(admin, settings)
        response = await admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    num_partitions=spec.partitions,
                    replication_factor=replication_factor,
                    # aiokafka's argument check wrongly rejects replication_factor=-1 (the broker default, KIP-464)
                    # unless an (empty) assignment is passed; an empty one sends nothing extra.
                    replica_assignments={} if replication_factor == -1 else None,
                    topic_configs={"retention.ms": str(spec.retention_ms)},
                )
                for spec in specs
            ]
        )
    finally:
        await admin.close()
    created: list[str] = []
    for name, error_code, *_ in response.topic_errors:
        if error_code == 0:
            created.append(name)
            log.info("topic created", extra={"topic": name})
        elif error_code == TopicAlreadyExistsError.errno:
            log.info("topic exists", extra={"topic": name})
        else:
            error = for_code(error_code)
            raise ConfigurationError(f"the Kafka broker refused to create topic {name}: {error.message}")
    return created


async def _start_or_explain(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    try:
        await asyncio.wait_for(admin.start(), CHECK_TIMEOUT_S)
    except START_ERRORS as exc:
        # aiokafka folds auth and TLS failures into "unable to bootstrap"; the direct probe names the cause.
        await check_broker(settings)
        raise ConfigurationError(
            f"cannot reach the Kafka broker at {bootstrap_servers(settings)}: {exc.__class__.__name__}"
        ) from exc


def _split_host(server: str) -> tuple[str, int]:
    host, sep, port = server.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigurationError(f"KAFKA_BOOTSTRAP_SERVERS entry {server.strip()!r} is not host:port")
    return host.strip("[]"), int(port)


async def check_broker(settings: Settings, *, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Connect (and authenticate) to the first reachable bootstrap server, or raise a one-line ConfigurationError
    naming the cause: unreachable, TLS handshake, rejected credentials or unsupported mechanism."""
    servers = [s for s in bootstrap_servers(settings).split(",") if s.strip()]
    if not servers:
        raise ConfigurationError("KAFKA_BOOTSTRAP_SERVERS is empty")
    security = _security_kwargs(settings)
    sasl = settings.kafka_security_protocol in _SASL_PROTOCOLS
    last_problem = "no server tried"
    for server in servers:
        host, port = _split_host(server)
        where = f"{host}:{port}"
        try:
            await asyncio.wait_for(_probe(host, port, int(timeout_s * 1000), security), timeout_s)
        except (SaslAuthenticationFailed, IllegalSaslStateError) as exc:
            raise ConfigurationError(_rejected(settings, where)) from exc
        except (KeyError, ValueError) as exc:
            if not sasl:
                raise
            # aiokafka's SCRAM client fails this way on the broker's "e=…" answer to a wrong password.
            raise ConfigurationError(_rejected(settings, where)) from exc
        except UnsupportedSaslMechanismError as exc:
            raise ConfigurationError(
                f"the Kafka broker at {where} does not support KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism}"
            ) from exc
        except ssl.SSLError as exc:
            last_problem = (
                f"TLS handshake with {where} failed ({exc.__class__.__name__}) — "
                f"check KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}"
            )
        except TimeoutError:
            last_problem = (
                f"no answer from the Kafka broker at {where} within {timeout_s:g} s "
                f"(KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol})"
            )
        except KafkaConnectionError:
            # Reached, then hung up on: the broker wants another protocol, or refused the SASL exchange.
            last_problem = (
                f"the Kafka broker at {where} closed the connection — check KAFKA_SECURITY_PROTOCOL="
                f"{settings.kafka_security_protocol}"
                + (", KAFKA_SASL_MECHANISM and the credentials" if sasl else " (it may require SASL or TLS)")
            )
        except (OSError, KafkaError) as exc:
            last_problem = f"cannot reach the Kafka broker at {where}: {exc.__class__.__name__}"
        else:
            return
    raise ConfigurationError(last_problem)


def _rejected(settings: Settings, where: str) -> str:
    return (
        f"the Kafka broker at {where} rejected the {settings.kafka_sasl_mechanism} credentials of user "
        f"{settings.kafka_sasl_username!r} — check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
    )


async def _probe(host: str, port: int, timeout_ms: int, security: dict[str, Any]) -> None:
    """Connect, authenticate and ask for metadata: proof that a Kafka broker (not just a socket) answers."""
    conn = await create_conn(host, port, client_id=CLIENT_ID, request_timeout_ms=timeout_ms, **security)
    try:
        await conn.send(MetadataRequest([]))
    finally:
        conn.close()
