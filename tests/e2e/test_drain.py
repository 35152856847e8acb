"""SIGTERM drains a real HTTP server: the tool calls in flight finish with 200, /readyz says not ready at once, a new
connection is refused (a client retries it elsewhere), and the process exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.test_http import POST_HEADERS, ServerProcess
from tests.support.database import DatabaseFactory
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

IN_FLIGHT = 40


def add_task(title: str) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "add_task", "arguments": {"title": title}},
    }


async def test_sigterm_finishes_in_flight_calls_and_refuses_new_ones(
    db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await db_factory.create()
    server = ServerProcess("streamable-http", dsn, tmp_path)
    await server.wait_healthy()
    clients = [httpx.AsyncClient(base_url=server.base, headers=POST_HEADERS, timeout=30) for _ in range(IN_FLIGHT)]
    prober = httpx.AsyncClient(base_url=server.base, timeout=5)
    try:
        # Every client's keep-alive connection is open before SIGTERM, as a busy client's is.
        for client in (*clients, prober):
            assert (await client.get("/readyz")).status_code == 200
        sent = time.monotonic()
        answered: list[float] = []
        calls = [asyncio.create_task(c.post("/mcp", json=add_task(f"call {i}"))) for i, c in enumerate(clients)]
        for call in calls:
            call.add_done_callback(lambda _: answered.append(time.monotonic()))
        # Enough calls that two cores take a while over them: most are still running when the signal comes.
        await asyncio.sleep(0.05)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        async def not_ready() -> bool:
            # Either answered 503 (a probe that came before the listener closed, or on an open connection) or refused.
            try:
                probe = await prober.get("/readyz")
            except httpx.ConnectError:
                return True
            assert probe.status_code in (200, 503), probe.text
            if probe.status_code == 503:
                assert "draining" in probe.json()["reason"] and probe.headers["connection"] == "close"
            return probe.status_code == 503

        await eventually(not_ready, 1.0, "/readyz says not ready once draining", interval_s=0.01)

        async def refused() -> bool:
            try:
                async with httpx.AsyncClient() as fresh:
                    await fresh.get(f"{server.base}/healthz", timeout=1)
            except httpx.ConnectError:
                return True
            except httpx.ReadError:
                # A connection the kernel queued just before the listener closed is reset unanswered (seen once in
                # CI): it never reached the server, so it is not served either.
                return True
            return False

        await eventually(refused, 2.0, "a new connection is refused")

        responses = await asyncio.gather(*calls)
        for response in responses:
            assert response.status_code == 200, response.text
            result = json.loads(response.text)["result"]
            assert not result["isError"], result
        assert sum(at > signalled for at in answered) >= IN_FLIGHT // 2, (signalled - sent, answered)
        code = await asyncio.to_thread(server.process.wait, 30)
        assert code == 0
        assert time.monotonic() - signalled < 30
    finally:
        for client in (*clients, prober):
            await client.aclose()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM tasks") == IN_FLIGHT
    finally:
        await conn.close()
    log = server.log.read_text()
    assert "Traceback" not in log and "Cancel" not in log, log
