"""`mcp-todo serve` over HTTP as a real process: a streamable-HTTP session on /mcp, the legacy SSE transport on /sse,
/healthz, graceful SIGTERM, and the refusals while HTTP has no authentication."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from mcp.client import Client
from mcp.client.sse import sse_client

from tests.conftest import DatabaseFactory

MCP_TODO = str(Path(sys.executable).parent / "mcp-todo")
START_TIMEOUT_S = 30.0

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MCP_TODO_", "DATABASE_URL"))}
    return env | {"DATABASE_URL": dsn, "MCP_TODO_USER": "web", "MCP_TODO_TIMEZONE": "Asia/Kolkata"}


class ServerProcess:
    def __init__(self, transport: str, dsn: str, tmp_path: Path) -> None:
        self.port = free_port()
        self.log = tmp_path / f"{transport}.log"
        self.base = f"http://127.0.0.1:{self.port}"
        args = [MCP_TODO, "serve", "--transport", transport, "--insecure-local", "--port", str(self.port)]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(args, env=server_env(dsn), cwd=tmp_path, stdout=log, stderr=log)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not healthy within {START_TIMEOUT_S} s: {self.log.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


Starter = Callable[[str], Awaitable[ServerProcess]]


@pytest.fixture
def serve_http(db_factory: DatabaseFactory, tmp_path: Path) -> Iterator[Starter]:
    started: list[ServerProcess] = []

    async def start(transport: str) -> ServerProcess:
        server = ServerProcess(transport, await db_factory.create(), tmp_path)
        started.append(server)
        await asyncio.to_thread(server.wait_healthy)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


async def test_streamable_http_session(serve_http: Starter) -> None:
    server = await serve_http("streamable-http")
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{server.base}/healthz")
    assert health.json() == {"status": "ok"}

    async with Client(f"{server.base}/mcp") as client:
        assert len((await client.list_tools()).tools) == 17
        added = await client.call_tool("add_task", {"title": "over http", "due_date": "2027-01-01T09:00"})
        assert added.structured_content is not None
        assert added.structured_content["due_date"] == "2027-01-01T09:00:00+05:30"
    # Stateless: a second, independent session sees the same data (any replica could serve it).
    async with Client(f"{server.base}/mcp") as client:
        listed = await client.call_tool("list_tasks", {})
        assert listed.structured_content is not None and listed.structured_content["total"] == 1

    assert await asyncio.to_thread(server.stop) == 0
    log = server.log.read_text()
    assert "tool=add_task" in log and "user=web" in log
    assert "Traceback" not in log


async def test_sse_session(serve_http: Starter) -> None:
    server = await serve_http("sse")
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.base}/healthz")).status_code == 200
    async with Client(sse_client(f"{server.base}/sse"), mode="legacy") as client:
        result = await client.call_tool("add_category", {"name": "via sse"})
        assert result.structured_content == {"id": 1, "name": "via sse", "color": None}
    assert await asyncio.to_thread(server.stop) == 0


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--insecure-local", "--host", "0.0.0.0"], "--insecure-local serves a loopback host only"),
        (["--insecure-local", "--host", "192.168.1.10"], "--insecure-local serves a loopback host only"),
        ([], "HTTP transports need authentication"),
        (["--host", "127.0.0.1"], "HTTP transports need authentication"),
    ],
)
@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_http_without_auth_is_refused(transport: str, arguments: list[str], expected: str, tmp_path: Path) -> None:
    env = server_env("postgresql://nobody@127.0.0.1:1/none")
    result = subprocess.run(
        [MCP_TODO, "serve", "--transport", transport, "--port", str(free_port()), *arguments],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_loopback_hosts_are_accepted() -> None:
    from mcp_todo.server.app import is_loopback

    assert all(is_loopback(host) for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2", "[::1]"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "10.0.0.1", "example.com", ""))
