"""Prometheus metrics from outside: `/metrics` of a real HTTP server after real tool calls (no token needed, still
answering while the database is away), and a worker's MCP_TODO_METRICS_PORT after it handled real events through the
broker."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from mcp_todo.db.engine import create_engine
from mcp_todo.settings import Settings
from tests.e2e.test_http import ServerProcess, create_token, drop_database, server_env
from tests.e2e.test_workers import add_reminder, complete_recurring_task, db_now
from tests.support.broker import free_port
from tests.support.database import DatabaseFactory
from tests.support.polling import eventually
from tests.support.processes import FAST_REJOIN_SESSION_TIMEOUT_MS, WorkerProcess, clean_env, worker_env

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    """Every sample of a scrape: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(url: str) -> tuple[httpx.Response, Samples]:
    async with httpx.AsyncClient() as http:
        response = await http.get(url, timeout=5)
    return response, parse(response.text)


@contextlib.asynccontextmanager
async def token_client(base: str, secret: str) -> AsyncIterator[Client]:
    import httpx2

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        yield client


async def test_server_metrics_count_tool_calls_without_a_token(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    dsn = await db_factory.create()
    secret = create_token(server_env(dsn), "alice")
    server = ServerProcess("streamable-http", dsn, tmp_path, insecure_local=False)
    await server.wait_healthy()
    try:
        _, before = await scrape(f"{server.base}/metrics")
        assert value(before, "mcp_todo_tool_calls_total", tool="add_task", outcome="OK") is None
        async with token_client(server.base, secret) as client:
            for title in ("one", "two"):
                assert not (await client.call_tool("add_task", {"title": title})).is_error
            assert (await client.call_tool("complete_task", {"task_id": 999})).is_error

        # No Authorization header: /metrics is open, like /healthz.
        response, after = await scrape(f"{server.base}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=")
        assert value(after, "mcp_todo_tool_calls_total", tool="add_task", outcome="OK") == 2
        assert value(after, "mcp_todo_tool_calls_total", tool="complete_task", outcome="NOT_FOUND") == 1
        assert value(after, "mcp_todo_tool_duration_seconds_count", tool="add_task") == 2
        assert value(after, "mcp_todo_tool_duration_seconds_count", tool="complete_task") == 1
        duration = value(after, "mcp_todo_tool_duration_seconds_sum", tool="add_task")
        assert duration is not None and 0 < duration < 5
        slowest = value(after, "mcp_todo_tool_duration_seconds_bucket", tool="add_task", le="10.0")
        assert slowest == 2
        # The relay (local mode runs it in the server) refreshed the outbox gauges: both tasks' events published.
        assert value(after, "mcp_todo_outbox_pending") is not None
        assert (value(after, "mcp_todo_outbox_oldest_age_seconds") or 0) >= 0
        assert secret not in response.text

        await drop_database(dsn)
        started = time.monotonic()
        response, outage = await scrape(f"{server.base}/metrics")
        assert response.status_code == 200 and time.monotonic() - started < 2
        assert value(outage, "mcp_todo_tool_calls_total", tool="add_task", outcome="OK") == 2
    finally:
        assert await asyncio.to_thread(server.stop) == 0
    assert "Traceback" not in server.log.read_text()


async def test_outbox_gauges_show_a_backlog(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    """With Kafka configured but unreachable, the server's relay cannot publish: the backlog shows in the gauges."""
    dsn = await db_factory.create()
    server = ServerProcess(
        "streamable-http", dsn, tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", MCP_TODO_USER="bob"
    )
    await server.wait_healthy()
    try:
        async with Client(f"{server.base}/mcp") as client:
            for title in ("a", "b", "c"):
                assert not (await client.call_tool("add_task", {"title": title})).is_error

        async def backlog_shown() -> bool:
            _, samples = await scrape(f"{server.base}/metrics")
            return value(samples, "mcp_todo_outbox_pending") == 3

        # Refreshed every rebalance interval (5 s).
        await eventually(backlog_shown, 15.0, "the outbox gauge shows 3 pending rows")
        _, samples = await scrape(f"{server.base}/metrics")
        age = value(samples, "mcp_todo_outbox_oldest_age_seconds")
        assert age is not None and 0 < age < 60
    finally:
        server.process.kill()
        server.process.wait()


async def start_worker(name: str, dsn: str, kafka_settings: Settings, tmp_path: Path) -> tuple[WorkerProcess, str]:
    port = free_port()
    env = worker_env(
        dsn, kafka_settings, session_timeout_ms=FAST_REJOIN_SESSION_TIMEOUT_MS, MCP_TODO_METRICS_PORT=str(port)
    )
    worker = await WorkerProcess(name, env, tmp_path).start()
    await worker.wait_ready()
    return worker, f"http://127.0.0.1:{port}/metrics"


@pytest.mark.kafka
async def test_worker_metrics_port_counts_events_handled_through_the_broker(
    db_factory: DatabaseFactory, kafka_settings: Settings, tmp_path: Path
) -> None:
    dsn = await db_factory.create()
    engine = create_engine(dsn, pool_size=2)
    recurrer, recurrer_metrics = await start_worker("mcp-todo-recurrer", dsn, kafka_settings, tmp_path)
    notifier, notifier_metrics = await start_worker("mcp-todo-notifier", dsn, kafka_settings, tmp_path)
    try:
        _, samples = await scrape(recurrer_metrics)
        assert value(samples, "mcp_todo_events_handled_total", worker="mcp-todo-recurrer", outcome="handled") == 0

        await complete_recurring_task(engine)
        remind_at = await db_now(engine) + timedelta(seconds=1)
        await add_reminder(engine, remind_at)

        async def counted(url: str, worker: str) -> bool:
            _, samples = await scrape(url)
            return (value(samples, "mcp_todo_events_handled_total", worker=worker, outcome="handled") or 0) >= 1

        await eventually(lambda: counted(recurrer_metrics, "mcp-todo-recurrer"), 15.0, "the recurrer counted it")
        await eventually(lambda: counted(notifier_metrics, "mcp-todo-notifier"), 15.0, "the notifier counted it")
        _, samples = await scrape(notifier_metrics)
        assert value(samples, "mcp_todo_reminder_lateness_seconds_count") == 1
        lateness = value(samples, "mcp_todo_reminder_lateness_seconds_sum")
        assert lateness is not None and 0 <= lateness < 2
        assert value(samples, "mcp_todo_events_handled_total", worker="mcp-todo-notifier", outcome="parked") == 0
        # The notifier's relay published the reminder.due it wrote: its gauges are there.
        assert value(samples, "mcp_todo_outbox_pending") is not None
        for worker in (recurrer, notifier):
            code, _ = await worker.stop()
            assert code == 0, worker.tail()
    finally:
        await recurrer.close()
        await notifier.close()
        await engine.dispose()


async def test_worker_metrics_port_in_use_is_one_clear_error(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    dsn = await db_factory.create()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        env = clean_env(
            DATABASE_URL=dsn, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", MCP_TODO_METRICS_PORT=str(taken.getsockname()[1])
        )
        worker = await WorkerProcess("mcp-todo-recurrer", env, tmp_path).start()
        assert worker.proc is not None
        code = await asyncio.wait_for(worker.proc.wait(), 30)
    assert code == 2, worker.tail()
    assert any("MCP_TODO_METRICS_PORT" in line for line in worker.lines), worker.tail()
    assert not any("Traceback" in line for line in worker.lines)
