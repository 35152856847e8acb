"""`mcp-todo serve` over HTTP as a real process: a streamable-HTTP session on /mcp, the legacy SSE transport on /sse,
/healthz, graceful SIGTERM, bearer tokens (each request acts for its token's user), and --insecure-local's refusals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from mcp_todo.auth import TOKEN_CACHE_TTL_S
from mcp_todo.db.migrate import head_revision
from tests.support.broker import TcpProxy, free_port
from tests.support.database import DatabaseFactory, with_database
from tests.support.polling import eventually
from tests.support.pooler import database_env
from tests.support.processes import BIN, clean_env

MCP_TODO = str(BIN / "mcp-todo")
START_TIMEOUT_S = 30.0

pytestmark = pytest.mark.slow


def server_env(dsn: str) -> dict[str, str]:
    return clean_env(**database_env(dsn), MCP_TODO_USER="web", MCP_TODO_TIMEZONE="Asia/Kolkata")


class ServerProcess:
    def __init__(
        self,
        transport: str,
        dsn: str,
        tmp_path: Path,
        *,
        insecure_local: bool = True,
        host: str = "127.0.0.1",
        **env: str,
    ) -> None:
        self.port = free_port()
        self.log = tmp_path / f"{transport}-{self.port}.log"
        self.authority = f"{host}:{self.port}"
        self.base = f"http://{self.authority}"
        args = [MCP_TODO, "serve", "--transport", transport, "--host", host, "--port", str(self.port)]
        args += ["--insecure-local"] if insecure_local else []
        with self.log.open("w") as log:
            self.process = subprocess.Popen(args, env=server_env(dsn) | env, cwd=tmp_path, stdout=log, stderr=log)

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
        assert result.structured_content == {"id": 1, "name": "via sse"}  # lean: no color is no "color"
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
    from mcp_todo.server.http_server import is_loopback

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

            async def revoked_refused() -> bool:
                answer = await http.post(f"{server.base}/mcp", json=body, headers={"Authorization": f"Bearer {alice}"})
                return answer.status_code == 401

            # A server trusts a token it verified for TOKEN_CACHE_TTL_S without asking the database again.
            await eventually(revoked_refused, TOKEN_CACHE_TTL_S + 10, "the revoked token is refused", interval_s=0.5)
    finally:
        assert await asyncio.to_thread(server.stop) == 0
    log = server.log.read_text()
    assert "user=alice" in log and "user=bob" in log
    assert alice not in log and bob not in log and "Traceback" not in log
    # Each token has its own user: the server acts for none of its own (MCP_TODO_USER=web is not it).
    (ready,) = [line for line in log.splitlines() if 'msg="server ready"' in line]
    assert " user=" not in ready and "user=web" not in log, ready


PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
POST_HEADERS = {"Accept": "application/json, text/event-stream"}


async def drop_database(dsn: str) -> None:
    """Drop `dsn`'s database, ending its sessions: every connection the server holds dies and every new one fails,
    as in an outage."""
    name = dsn.split("?", 1)[0].rsplit("/", 1)[1]
    conn = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.mark.parametrize(("transport", "method", "path"), [("streamable-http", "POST", "/mcp"), ("sse", "GET", "/sse")])
async def test_a_database_outage_answers_503_and_not_ready_while_alive(
    transport: str, method: str, path: str, db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await db_factory.create()
    env = server_env(dsn)
    alice = create_token(env, "alice")
    server = ServerProcess(transport, dsn, tmp_path, insecure_local=False)
    await server.wait_healthy()
    try:
        async with httpx.AsyncClient(base_url=server.base, headers=POST_HEADERS) as http:
            assert (await http.get("/readyz")).json() == {"status": "ok"}
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("UPDATE alembic_version SET version_num = 'f00f'")
                stale = await http.get("/readyz")
                assert stale.status_code == 503 and "schema at revision f00f" in stale.json()["reason"]
                await conn.execute("UPDATE alembic_version SET version_num = $1", head_revision())
            finally:
                await conn.close()
            assert (await http.get("/readyz")).status_code == 200

            await drop_database(dsn)
            for secret in ("mtd_bogus", alice):
                refused = await http.request(method, path, json=PING, headers={"Authorization": f"Bearer {secret}"})
                assert refused.status_code == 503, refused.text
                assert int(refused.headers["Retry-After"]) > 0
                assert refused.json()["error"] == "temporarily_unavailable"
            # Not a token of ours: refused without asking the database.
            assert (await http.request(method, path, headers={"Authorization": "Bearer x"})).status_code == 401
            # Alive (a restart would not help), not ready (no traffic until the database is back).
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            not_ready = await http.get("/readyz")
            assert not_ready.status_code == 503 and "database unreachable" in not_ready.json()["reason"]
    finally:
        assert await asyncio.to_thread(server.stop) == 0
    log = server.log.read_text()
    assert "Traceback" not in log
    assert log.count("cannot check its token") == 2, log
    assert alice not in log


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_dns_rebinding_is_refused_on_any_loopback_bind(
    transport: str, db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    server = ServerProcess(transport, await db_factory.create(), tmp_path, host="127.0.0.2")
    await server.wait_healthy()
    path = "/mcp" if transport == "streamable-http" else "/messages/?session_id=0123456789abcdef0123456789abcdef"
    try:
        async with httpx.AsyncClient(base_url=server.base, headers=POST_HEADERS) as http:
            evil_host = await http.post(path, json=PING, headers={"Host": "evil.example"})
            assert evil_host.status_code in (400, 421), evil_host.text
            evil_origin = await http.post(path, json=PING, headers={"Origin": "http://evil.example"})
            assert evil_origin.status_code == 403, evil_origin.text
            if transport == "sse":
                stream = await http.get("/sse", headers={"Host": "evil.example:80"})
                assert stream.status_code in (400, 421)
            own_origin = await http.post(path, json=PING, headers={"Origin": server.base})
            assert own_origin.status_code not in (403, 421), own_origin.text  # past the checks (sse: no such session)
        if transport == "streamable-http":
            async with Client(f"{server.base}/mcp") as client:
                assert len((await client.list_tools()).tools) == 17
        else:
            async with Client(sse_client(f"{server.base}/sse"), mode="legacy") as client:
                assert len((await client.list_tools()).tools) == 17
    finally:
        assert await asyncio.to_thread(server.stop) == 0
    assert "Traceback" not in server.log.read_text()


async def test_allowed_hosts_and_origins_admit_a_proxys_name(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    server = ServerProcess(
        "streamable-http",
        await db_factory.create(),
        tmp_path,
        MCP_TODO_ALLOWED_HOSTS="todo.example.com, other.example:8443",
        MCP_TODO_ALLOWED_ORIGINS="https://app.example.com",
    )
    await server.wait_healthy()
    try:
        async with httpx.AsyncClient(base_url=server.base, headers=POST_HEADERS) as http:

            async def status(**headers: str) -> int:
                return (await http.post("/mcp", json=PING, headers=headers)).status_code

            assert await status(Host="todo.example.com") == 200
            assert await status(Host="todo.example.com:443", Origin="https://todo.example.com") == 200
            assert await status(Host="other.example:8443") == 200
            assert await status(Origin="https://app.example.com") == 200
            assert await status(Host=server.authority) == 200  # loopback names stay allowed
            assert await status(Host="other.example:9999") in (400, 421)
            assert await status(Host="evil.example") in (400, 421)
            assert await status(Origin="https://evil.example") == 403
    finally:
        assert await asyncio.to_thread(server.stop) == 0


async def test_bracketed_ipv6_loopback_binds(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    server = ServerProcess("streamable-http", await db_factory.create(), tmp_path, host="[::1]")
    await server.wait_healthy()
    try:
        async with Client(f"{server.base}/mcp") as client:
            assert len((await client.list_tools()).tools) == 17
    finally:
        assert await asyncio.to_thread(server.stop) == 0


async def test_an_address_not_on_this_machine_is_named_not_the_port(
    db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine.
    result = await asyncio.to_thread(
        subprocess.run,
        [MCP_TODO, "serve", "--transport", "streamable-http", "--host", "192.0.2.1", "--port", str(free_port())],
        env=server_env(await db_factory.create()),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr
    assert "could not listen on 192.0.2.1:" in errors[0] and "--host must be an address of this machine" in errors[0]
    assert "port" not in errors[0]


def through_port(dsn: str, port: int) -> str:
    """`dsn` with its host and port replaced by 127.0.0.1:`port` (user, password, database and query kept)."""
    parts = urlsplit(dsn)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"))


async def test_start_up_waits_for_the_database_then_serves(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    dsn = await db_factory.create()
    pg_port = urlsplit(dsn).port
    if pg_port is None:
        pytest.skip("the test database is reached through a socket, not a TCP port")
    proxy = TcpProxy(pg_port)  # not started: nothing listens on its port yet
    server = ServerProcess("streamable-http", through_port(dsn, proxy.port), tmp_path)
    try:

        def waiting() -> bool:
            assert server.process.poll() is None, server.log.read_text()
            return "database not reachable yet" in server.log.read_text()

        await eventually(waiting, START_TIMEOUT_S, "the server waits for its database", interval_s=0.05)
        await proxy.start()  # the database "comes up"
        await server.wait_healthy()
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{server.base}/readyz")).json() == {"status": "ok"}
    finally:
        assert await asyncio.to_thread(server.stop) == 0
        await proxy.cut()
    assert "Traceback" not in server.log.read_text()


async def test_a_stop_signal_ends_the_wait_for_the_database(tmp_path: Path) -> None:
    server = ServerProcess("streamable-http", f"postgresql://nobody@127.0.0.1:{free_port()}/none", tmp_path)

    def waiting() -> bool:
        assert server.process.poll() is None, server.log.read_text()
        return "database not reachable yet" in server.log.read_text()

    await eventually(waiting, START_TIMEOUT_S, "the server waits for its database", interval_s=0.05)
    started = time.monotonic()
    assert await asyncio.to_thread(server.stop) == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in server.log.read_text()
