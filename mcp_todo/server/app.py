"""The MCP server: its state (database engine, background jobs), the MCPServer with the 17 tools, and serving it
over stdio, streamable HTTP (`/mcp`, stateless) or SSE (`/sse`), with `/healthz` on HTTP."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, Final, Literal

import uvicorn
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from pydantic import AnyHttpUrl
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_todo import __version__
from mcp_todo.auth import DatabaseTokenVerifier
from mcp_todo.db.engine import check_connection, create_engine, resolve_dsn
from mcp_todo.db.migrate import migrate, require_current_schema
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.runtime.supervise import supervise
from mcp_todo.runtime.waits import until_stopped
from mcp_todo.server.prompts import register_prompts
from mcp_todo.server.resources import register_resources
from mcp_todo.server.state import AppState, LiveState, utc_now
from mcp_todo.server.tools import build_tools
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

Transport = Literal["stdio", "streamable-http", "sse"]
STOP_GRACE_S: Final = 2.0
BACKGROUND_GRACE_S: Final = 10.0

INSTRUCTIONS = (
    "A task list with due dates, reminders and repeating tasks. Times without an offset are in the user's zone; "
    "a date alone means the end of that day. Ids come from list_tasks, list_categories and list_tags."
)

BackgroundJob = Callable[[AppState], Awaitable[None]]
"""A coroutine run for the server's lifetime next to the tools (the outbox relay, local-mode handlers)."""


def _job_parts(jobs: Sequence[BackgroundJob], state: AppState) -> dict[str, Awaitable[None]]:
    parts: dict[str, Awaitable[None]] = {}
    for job in jobs:
        name = getattr(job, "__name__", repr(job)).lstrip("_")
        parts[name if name not in parts else f"{name}-{len(parts)}"] = job(state)
    return parts


@asynccontextmanager
async def open_app_state(
    settings: Settings,
    *,
    background: Sequence[BackgroundJob] = (),
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[AppState]:
    """Resolve the database (embedded and migrated when there is no DATABASE_URL; otherwise it must already be
    migrated), build the engine, start the background jobs; undo it all on exit."""
    dsn, embedded = await resolve_dsn(settings)
    await check_connection(dsn)
    engine = create_engine(dsn)
    try:
        if embedded:
            await migrate(engine)
        else:
            await require_current_schema(engine)
        state = AppState(settings=settings, engine=engine, dsn=dsn, embedded=embedded, clock=clock)
        parts = _job_parts(background, state)
        state.background_jobs = tuple(parts)
        # A failing job is logged with its traceback and the others carry on: the tools keep serving.
        jobs = asyncio.create_task(
            supervise(
                parts,
                state.stopping,
                deadline_s=BACKGROUND_GRACE_S,
                stop_on_failure=False,
            ),
            name="background jobs",
        )
        log.info(
            "server ready",
            extra={"user": settings.user, "embedded_db": embedded, "background_jobs": len(background)},
        )
        try:
            yield state
        finally:
            state.stopping.set()
            await jobs
    finally:
        await engine.dispose()


def build_server(
    settings: Settings,
    *,
    state: AppState | None = None,
    background: Sequence[BackgroundJob] = (),
    clock: Callable[[], datetime] = utc_now,
    public_url: str | None = None,
) -> MCPServer[AppState]:
    """The MCPServer with the 17 tools and the notifications resource.

    With `public_url` (HTTP without --insecure-local), requests must carry a bearer token from `mcp-todo token create`.

    With `state`, every session shares it (`serve` opens it once for the process). Without, the server's lifespan
    opens one per run (in-process clients in tests).
    """
    live = LiveState(state)

    @asynccontextmanager
    async def lifespan(_server: MCPServer[AppState]) -> AsyncIterator[AppState]:
        if state is not None:
            yield state
            return
        async with open_app_state(settings, background=background, clock=clock) as opened:
            with live.serving(opened):
                yield opened

    auth: dict[str, Any] = {}
    if public_url is not None:
        auth = {
            "token_verifier": DatabaseTokenVerifier(lambda: live.get().engine),
            "auth": AuthSettings(
                issuer_url=AnyHttpUrl(public_url), resource_server_url=AnyHttpUrl(f"{public_url}/mcp")
            ),
        }
    server: MCPServer[AppState] = MCPServer(
        "mcp-todo",
        version=__version__,
        instructions=INSTRUCTIONS,
        tools=build_tools(),
        lifespan=lifespan,
        **auth,
    )
    register_resources(server, live)
    register_prompts(server)

    @server.custom_route("/healthz", methods=["GET"])  # type: ignore[untyped-decorator]  # the SDK's is unannotated
    async def healthz(_request: Request) -> Response:
        try:
            async with live.get().engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:  # a health probe's edge: any failure means "not healthy", logged for the operator
            log.warning("health check failed", exc_info=True)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return server


def check_http_allowed(host: str, insecure_local: bool) -> None:
    """HTTP needs bearer tokens; --insecure-local turns them off, and is refused unless the host is loopback."""
    if insecure_local and not is_loopback(host):
        raise ConfigurationError(
            f"--insecure-local serves a loopback host only (127.0.0.1, ::1 or localhost), not {host!r}"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def serve(
    settings: Settings,
    transport: Transport,
    host: str,
    port: int,
    insecure_local: bool,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until the client disconnects (stdio) or `stop` is set (the CLI sets it on SIGTERM/SIGINT)."""
    if transport != "stdio":
        check_http_allowed(host, insecure_local)
    token_auth = transport != "stdio" and not insecure_local
    stop = stop or asyncio.Event()
    async with open_app_state(settings, background=default_background(settings)) as state:
        state.token_auth = token_auth
        public_url = f"http://{'[' + host + ']' if ':' in host else host}:{port}" if token_auth else None
        server = build_server(settings, state=state, public_url=public_url)
        if transport == "stdio":
            # A stopped stdio server may not finish cancelling: the SDK reads stdin in a worker thread that only
            # returns with the next line. After a short grace it is left behind, so the CLI can clean up and exit.
            await until_stopped(server.run_stdio_async(), stop, cancel_grace_s=STOP_GRACE_S)
            return
        if transport == "streamable-http":
            app = server.streamable_http_app(stateless_http=True, host=host)
        else:
            app = server.sse_app(host=host)
        # log_config=None: uvicorn's records go through our one stderr formatter.
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
        http = _HttpServer(config)
        log.info("serving http", extra={"transport": transport, "host": host, "port": port})
        watcher = asyncio.create_task(_stop_http_on(stop, http))
        try:
            await http.serve()
        finally:
            watcher.cancel()


class _HttpServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: the CLI owns SIGTERM/SIGINT and sets `stop`, so shutdown is one path
    whatever the transport (uvicorn would re-raise the signal after serving and kill our cleanup)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:
            # uvicorn exits the process when it cannot bind (after logging why); we owe the user one clear line.
            raise ConfigurationError(
                f"could not listen on {self.config.host}:{self.config.port} — is the port in use?"
            ) from None


async def _stop_http_on(stop: asyncio.Event, http: uvicorn.Server) -> None:
    await stop.wait()
    log.info("stopping: finishing in-flight requests")
    http.should_exit = True


def default_background(settings: Settings) -> list[BackgroundJob]:
    """The jobs `serve` runs beside the tools: with Kafka, the outbox relay; in local mode, the relay feeding the
    recurrence and reminder handlers in this process, and the reminder scheduler."""
    if settings.local_mode:
        return [_local_mode]
    return [_kafka_relay]


async def _kafka_relay(state: AppState) -> None:
    from mcp_todo.relay import run_relay_forever

    await run_relay_forever(state.settings, state.dsn, state.stopping)


async def _local_mode(state: AppState) -> None:
    from mcp_todo.handlers.local import run_local_mode

    await run_local_mode(state.engine, state.dsn, state.settings, state.stopping)
