"""`mcp-todo serve` over HTTP as a real process: a streamable-HTTP session on /mcp, the legacy SSE transport on /sse,
/healthz, graceful SIGTERM, bearer tokens (each request acts for its token's user), and --insecure-local's refusals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.support.broker import free_port
from tests.support.database import DatabaseFactory
from tests.support.polling import eventually
from tests.support.processes import BIN, clean_env

MCP_TODO = str(BIN / "mcp-todo")
START_TIMEOUT_S = 30.0

pytestmark = pytest.mark.slow


def server_env(dsn: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=dsn, MCP_TODO_USER="web", MCP_TODO_TIMEZONE="Asia/Kolkata")


class ServerProcess:
    def __init__(self, transport: str, dsn: str, tmp_path: Path, *, insecure_local: bool = True) -> None:
        self.port = free_port()
        self.log = tmp_path / f"{transport}.log"
        self.base = f"http://127.0.0.1:{self.port}"
        args = [MCP_TODO, "serve", "--transport", transport, "--port", str(self.port)]
        args += ["--insecure-local"] if insecure_local else []
        with self.log.open("w") as log:
            self.process = subprocess.Popen(args, env=server_env(dsn), cwd=tmp_path, stdout=log, stderr=log)

    async def wait_healthy(self) -> None:
        async with httpx.AsyncClient() as http:

            async def healthy() -> bool:
                assert self.process.poll() is None, self.log.read_text()
                try:
                    return (await http.get(f"{self.base}/healthz", timeout=1)).status_code == 200
                except httpx.TransportError:
                    return False

            try:
                await eventually(healthy, START_TIMEOUT_S, "the server is healthy", interval_s=0.1)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {self.log.read_text()}") from None

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
        await server.wait_healthy()
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
        (["--insecure-local", "--host", "::"], "--insecure-local serves a loopback host only"),
    ],
)
@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_insecure_local_off_loopback_is_refused(
    transport: str, arguments: list[str], expected: str, tmp_path: Path
) -> None:
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


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MCP_TODO, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def create_token(env: dict[str, str], user: str) -> str:
    result = cli(env, "token", "create", "--user", user, "--expires", "1d")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1].split()[-1]


async def test_http_with_bearer_tokens_acts_for_each_tokens_user(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    import httpx2

    dsn = await db_factory.create()
    env = server_env(dsn)
    alice, bob = create_token(env, "alice"), create_token(env, "bob")
    listing = cli(env, "token", "list")
    assert listing.returncode == 0 and "alice" in listing.stdout and "bob" in listing.stdout
    assert alice not in listing.stdout + listing.stderr and bob not in listing.stdout + listing.stderr

    server = ServerProcess("streamable-http", dsn, tmp_path, insecure_local=False)
    await server.wait_healthy()
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        async with httpx.AsyncClient() as http:
            for headers in ({}, {"Authorization": "Bearer mtd_not-a-token"}, {"Authorization": f"Basic {alice}"}):
                refused = await http.post(f"{server.base}/mcp", json=body, headers=headers)
                assert refused.status_code == 401, headers

        @contextlib.asynccontextmanager
        async def client_for(secret: str) -> AsyncIterator[Client]:
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}) as http,
                Client(streamable_http_client(f"{server.base}/mcp", http_client=http)) as client,
            ):
                yield client

        async with client_for(alice) as client:
            added = await client.call_tool("add_task", {"title": "alice's secret plan"})
            assert not added.is_error and added.structured_content is not None
            task_id = added.structured_content["id"]
        async with client_for(bob) as client:
            listed = await client.call_tool("list_tasks", {})
            assert listed.structured_content is not None and listed.structured_content["total"] == 0
            stolen = await client.call_tool("complete_task", {"task_id": task_id})
            assert stolen.is_error and stolen.content[0].text.startswith("NOT_FOUND")  # type: ignore[union-attr]

        token_id = next(
            line.split()[0] for line in cli(env, "token", "list").stdout.splitlines() if "\talice\t" in line
        )
        assert cli(env, "token", "revoke", token_id).returncode == 0
        async with httpx.AsyncClient() as http:
            revoked = await http.post(f"{server.base}/mcp", json=body, headers={"Authorization": f"Bearer {alice}"})
        assert revoked.status_code == 401
    finally:
        assert await asyncio.to_thread(server.stop) == 0
    log = server.log.read_text()
    assert "user=alice" in log and "user=bob" in log
    assert alice not in log and bob not in log and "Traceback" not in log
