"""A broker outage in a worker's log: one line when it goes away, none per retry, one line when it is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcp_todo.pipeline.kafka import create_topics
from tests.support.broker import BrokerProcess, broker_settings
from tests.support.database import DatabaseFactory
from tests.support.polling import eventually
from tests.support.processes import FAST_REJOIN_SESSION_TIMEOUT_MS, WorkerProcess, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OUTAGE_S = 12.0  # the scenario: how long the broker stays away (not a wait for a condition)


async def test_a_broker_outage_is_two_lines_in_the_recurrers_log(
    broker_process: BrokerProcess, db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    await broker_process.start()
    settings = broker_settings(broker_process.bootstrap)
    await create_topics(settings)
    env = worker_env(await db_factory.create(), settings, session_timeout_ms=FAST_REJOIN_SESSION_TIMEOUT_MS)
    recurrer = await WorkerProcess("mcp-todo-recurrer", env, tmp_path).start()
    try:
        await recurrer.wait_ready()
        before = len(recurrer.lines)

        broker_process.stop()
        await asyncio.sleep(OUTAGE_S)
        await broker_process.start()
        await create_topics(settings)  # the test broker keeps nothing across a restart
        await eventually(
            lambda: any("Kafka broker reachable again" in line for line in recurrer.lines[before:]),
            timeout_s=60,
            what="the recurrer to say the broker is back",
        )

        during = recurrer.lines[before:]
        complaints = [line for line in during if " level=warning " in line or " level=error " in line]
        assert sum("Kafka broker unreachable" in line for line in during) == 1, recurrer.tail(30)
        assert not any("Unable connect" in line and "Kafka broker unreachable" not in line for line in during)
        # The first line, and at most a summary or two: not one line per reconnection attempt.
        assert len(complaints) <= 3, "\n".join(complaints[:20])
        assert recurrer.running
    finally:
        await recurrer.close()
