"""The HTTP server against slow, greedy and odd clients, on real loopback sockets: a request's head and body must
arrive in time, connections beyond the cap are refused, a client that leaves mid-body is one log line (no
traceback), and a request with two `Host` headers is refused with 400.

The server is the one `serve` runs (the app of `http_app`, uvicorn with `guarded_http_protocol`) with short timeouts
and a small cap, in this process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.server.app import build_server
from mcp_todo.server.http_server import _HttpServer, guarded_http_protocol, http_app
from mcp_todo.server.state import AppState
from tests.integration.tool_client import settings_for
from tests.support.broker import free_port

# Short, so the tests are; long against a loaded machine's scheduling noise (tens of milliseconds).
TIMEOUT_S = 0.8
MAX_CONNECTIONS = 20
# How long after its deadline a connection may still be open: the timer fires on time, but the test's own reads
# share a loaded 2-core machine with other jobs.
SLACK_S = 3.0


@dataclass
class Served:
    port: int
    user_agent_host: str

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@pytest.fixture
async def served(db: AsyncEngine, database_dsn: str) -> AsyncIterator[Served]:
    settings = settings_for(database_dsn, "guard")
    state = AppState(settings=settings, engine=db, dsn=database_dsn, embedded=False)
    server = build_server(settings, state=state)
    app = http_app(server, "streamable-http", "127.0.0.1", settings)
    port = free_port()
    protocol = guarded_http_protocol(
        header_timeout_s=TIMEOUT_S, body_timeout_s=TIMEOUT_S, max_connections=MAX_CONNECTIONS
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="on", http=protocol, timeout_graceful_shutdown=2
    )
    http = _HttpServer(config)  # serve's, which leaves signals to the process
    task = asyncio.create_task(http.serve())
    for _ in range(500):
        if http.started:
            break
        await asyncio.sleep(0.01)
    assert http.started
    try:
        yield Served(port, f"127.0.0.1:{port}")
    finally:
        http.should_exit = True
        await task


def call_tool_request(host: str, body: bytes, *, declared: int | None = None, extra_headers: str = "") -> bytes:
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Length: {declared or len(body)}\r\n{extra_headers}\r\n"
    )
    return head.encode() + body


LIST_TOOLS = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).encode()


async def read_until_closed(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    async with asyncio.timeout(timeout_s):
        return await reader.read()


async def test_a_whole_request_is_served(served: Served) -> None:
    reader, writer = await served.open()
    writer.write(
        call_tool_request(served.user_agent_host, LIST_TOOLS).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    )
    answer = await read_until_closed(reader, 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b'"tools"' in answer


async def test_trickling_heads_are_timed_out_and_connections_beyond_the_cap_refused(served: Served) -> None:
    # Twice the cap, each sending its head a byte at a time, slower than the timeout allows.
    head = f"GET /healthz HTTP/1.1\r\nHost: {served.user_agent_host}\r\n\r\n".encode()
    connections = [await served.open() for _ in range(2 * MAX_CONNECTIONS)]
    opened = time.monotonic()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[bytes, float]:
        async def feed() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in head:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(TIMEOUT_S / 4)

        feeding = asyncio.create_task(feed())
        try:
            answer = await read_until_closed(reader, TIMEOUT_S + SLACK_S)
        finally:
            feeding.cancel()
            writer.close()
        return answer, time.monotonic() - opened

    results = await asyncio.gather(*(trickle(r, w) for r, w in connections))
    statuses = sorted(answer.split(b" ", 2)[1].decode() for answer, _ in results)
    # Those over the cap at once; the others once their head is overdue (none got to /healthz).
    assert statuses.count("503") >= MAX_CONNECTIONS - 2 and set(statuses) == {"408", "503"}, statuses
    assert max(took for _, took in results) < TIMEOUT_S + SLACK_S
    # The server serves again once they are gone.
    reader, writer = await served.open()
    writer.write(head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert (await read_until_closed(reader, 10)).startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_a_body_that_does_not_arrive_in_time_is_408_and_one_line(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await served.open()
    started = time.monotonic()
    writer.write(call_tool_request(served.user_agent_host, LIST_TOOLS[:10], declared=len(LIST_TOOLS)))
    with caplog.at_level(logging.INFO):
        answer = await read_until_closed(reader, TIMEOUT_S + SLACK_S)
        for _ in range(100):
            if any(r.getMessage() == "request body timed out" for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert TIMEOUT_S * 0.9 <= time.monotonic() - started < TIMEOUT_S + SLACK_S
    assert [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()] == ["request body timed out"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_clients_that_leave_mid_body_are_a_line_each_without_a_traceback(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    clients = 30
    with caplog.at_level(logging.INFO):
        for _ in range(clients):
            _reader, writer = await served.open()
            writer.write(call_tool_request(served.user_agent_host, LIST_TOOLS[:10], declared=len(LIST_TOOLS)))
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.close()
        for _ in range(200):
            if sum(r.getMessage() == "client went away mid-request" for r in caplog.records) >= clients:
                break
            await asyncio.sleep(0.02)
    gone = [r for r in caplog.records if r.getMessage() == "client went away mid-request"]
    assert len(gone) == clients
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in gone)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_two_host_headers_are_400(served: Served) -> None:
    for request in (
        f"GET /healthz HTTP/1.1\r\nHost: {served.user_agent_host}\r\nHost: evil.example\r\n\r\n".encode(),
        call_tool_request(served.user_agent_host, LIST_TOOLS, extra_headers="Host: evil.example\r\n"),
    ):
        reader, writer = await served.open()
        writer.write(request)
        answer = await read_until_closed(reader, 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert answer.endswith(b"2 Host headers: a request names one host")
