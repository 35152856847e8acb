"""How long a change takes to reach a subscriber on another replica, through the test broker:

    .venv/bin/python -m bench.live_bench            # TEST_DATABASE_URL's server, else an embedded PostgreSQL

Starts the test broker (tansu) and two `mcp-todo serve --transport streamable-http` replicas on one database, with
bearer tokens for BENCH_LIVE_USERS (20) users. On replica A each user opens BENCH_LIVE_STREAMS_PER_USER (5)
`subscriptions/listen` streams on `todo://today` (100 subscribers). Then, BENCH_SAMPLES (200) times, one user's task
is moved on replica B (`update_task`, a due time today) and every one of that user's streams on A records when its
`notifications/resources/updated` arrived. Latency is counted from the moment B's answer arrived (the change had
committed by then) to each stream's notice; the call's own duration is reported beside it. Target: p95 ≤ 500 ms.
Writes bench/results/live.md and prints it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from bench.common import percentile, write_report
from mcp_todo.auth import create_token
from mcp_todo.pipeline.kafka import create_topics
from tests.e2e.test_http import ServerProcess
from tests.support.broker import BrokerProcess, broker_settings
from tests.support.database import DatabaseFactory, PostgresServer

USERS = int(os.environ.get("BENCH_LIVE_USERS", "20"))
STREAMS_PER_USER = int(os.environ.get("BENCH_LIVE_STREAMS_PER_USER", "5"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "200"))
TODAY = "todo://today"
MODERN = "2026-07-28"


@contextlib.asynccontextmanager
async def client(base: str, secret: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=60) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=MODERN) as connected,
    ):
        yield connected


class Stream:
    """One listen stream on A: the arrival time of each notice, to be awaited by the sampler."""

    def __init__(self) -> None:
        self.arrivals: asyncio.Queue[float] = asyncio.Queue()

    async def run(self, connected: Client, ready: asyncio.Event, opened: list[int]) -> None:
        async with connected.listen(resource_subscriptions=[TODAY]) as subscription:
            opened.append(1)
            if len(opened) == USERS * STREAMS_PER_USER:
                ready.set()
            async for _event in subscription:
                self.arrivals.put_nowait(time.perf_counter())


async def measure(a: ServerProcess, b: ServerProcess, secrets: list[str]) -> tuple[list[float], list[float]]:
    latencies: list[float] = []
    calls: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        on_a = [await stack.enter_async_context(client(a.base, secret)) for secret in secrets]
        on_b = [await stack.enter_async_context(client(b.base, secret)) for secret in secrets]
        tasks: list[int] = []
        for user_client in on_b:
            added = await user_client.call_tool("add_task", {"title": "bench", "due_date": "today 23:00"})
            assert added.structured_content is not None, added
            tasks.append(int(added.structured_content["id"]))
        streams = [[Stream() for _ in range(STREAMS_PER_USER)] for _ in secrets]
        ready = asyncio.Event()
        opened: list[int] = []
        readers = [
            asyncio.create_task(stream.run(on_a[u], ready, opened))
            for u, user_streams in enumerate(streams)
            for stream in user_streams
        ]
        try:
            await asyncio.wait_for(ready.wait(), 120)
            await asyncio.sleep(2.0)  # the replica's feed has its partitions (it reads from their end)
            for n in range(SAMPLES + 10):
                u = n % len(secrets)
                for stream in streams[u]:  # a late notice of an earlier sample is not this one's
                    while not stream.arrivals.empty():
                        stream.arrivals.get_nowait()
                minute = 10 + n % 40
                began = time.perf_counter()
                result = await on_b[u].call_tool(
                    "update_task", {"task_id": tasks[u], "due_date": f"today 22:{minute:02d}"}
                )
                committed = time.perf_counter()
                assert not result.is_error, result
                arrivals = [await asyncio.wait_for(s.arrivals.get(), 30) for s in streams[u]]
                if n >= 10:  # warm-up
                    calls.append((committed - began) * 1000)
                    latencies += [(arrived - committed) * 1000 for arrived in arrivals]
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    return latencies, calls


def row(name: str, samples: list[float]) -> str:
    return (
        f"| {name} | {statistics.median(samples):.1f} ms | {percentile(samples, 0.95):.1f} ms | {max(samples):.1f} ms |"
    )


async def main() -> None:
    postgres = await asyncio.to_thread(PostgresServer, "mcp-todo-bench-")
    databases = DatabaseFactory(postgres.dsn, prefix="mcp_todo_bench")
    dsn = await databases.create()
    broker = BrokerProcess()
    await broker.start()
    settings = broker_settings(broker.bootstrap)
    await create_topics(settings)
    conn = await asyncpg.connect(dsn)
    try:
        secrets = [(await create_token(conn, f"bench-live-{u}", None))[1] for u in range(USERS)]
    finally:
        await conn.close()
    env: dict[str, Any] = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "MCP_TODO_LOG_LEVEL": "WARNING",
    }
    with tempfile.TemporaryDirectory() as tmp:
        a = ServerProcess("streamable-http", dsn, Path(tmp), insecure_local=False, **env)
        b = ServerProcess("streamable-http", dsn, Path(tmp), insecure_local=False, **env)
        try:
            await asyncio.gather(a.wait_healthy(), b.wait_healthy())
            latencies, calls = await measure(a, b, secrets)
        finally:
            a.stop()
            b.stop()
            broker.close()
    load = "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"
    report = f"""# Live subscriptions: a change on replica B → the notice on replica A

`.venv/bin/python -m bench.live_bench` — two `mcp-todo serve` replicas (streamable HTTP, bearer tokens) on one
database and the test broker (tansu); {USERS} users × {STREAMS_PER_USER} `subscriptions/listen` streams on
`todo://today` on replica A ({USERS * STREAMS_PER_USER} subscribers); {SAMPLES} changes (`update_task` on replica B,
one user's at a time), each notice timed from B's answer (the change committed) to its arrival on A's stream
({len(latencies)} notices). The path: commit → outbox NOTIFY → relay → Kafka `task-events` → each replica's live
feed (no consumer group) → the user's streams. {load}.

| | median | p95 | max |
|---|---|---|---|
{row("commit on B → notice on A", latencies)}
{row("the update_task call on B", calls)}

Target: p95 ≤ 500 ms.
"""
    write_report("live", report)


if __name__ == "__main__":
    asyncio.run(main())
