"""The MCP server: its state (database engine, background jobs), the MCPServer with the 17 tools, and serving it
over stdio, or over HTTP (server/http_server.py: streamable HTTP at `/mcp` or SSE at `/sse`) with `/healthz`
(liveness), `/readyz` (readiness) and `/metrics` (Prometheus)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import asyncpg
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp_types import GetPromptResult, InputRequiredResult
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_todo import __version__
from mcp_todo.db.engine import check_connection, create_engine, resolve_database
from mcp_todo.db.migrate import current_revision, head_revision, migrate, require_current_schema
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.metrics import exposition
from mcp_todo.runtime.backoff import backoff_delay
from mcp_todo.runtime.supervise import supervise
from mcp_todo.runtime.waits import sleep_unless_stopped, until_stopped
from mcp_todo.server.agenda import agenda_extension
from mcp_todo.server.live import HubBus, register_subscriptions
from mcp_todo.server.prompts import check_prompt_arguments, register_prompts
from mcp_todo.server.render import server_instructions
from mcp_todo.server.resources import register_resources
from mcp_todo.server.state import AppState, LiveState, utc_now
from mcp_todo.server.stdio import run_stdio
from mcp_todo.server.tools import build_tools
from mcp_todo.settings import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

log = logging.getLogger(__name__)

Transport = Literal["stdio", "streamable-http", "sse"]
STOP_GRACE_S: Final = 2.0
BACKGROUND_GRACE_S: Final = 10.0
READY_CHECK_TIMEOUT_S: Final = 3.0  # below the readiness probe's period, so a hung database is "not ready" in time

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


class StoppedBeforeReady(Exception):
    """`stop` was set while the server was still waiting for its database: there is nothing to shut down."""


# Reaching the database failed for a reason that may pass (it is starting, restarting, or not routable yet); a
# refused password, a missing database or a malformed URL will not, and fail at once.
_TRANSIENT_SQLSTATES = ("08", "53", "57P")


def is_transient(err: ConfigurationError) -> bool:
    cause = err.__cause__
    if isinstance(cause, (OSError, asyncpg.CannotConnectNowError)):  # TimeoutError is an OSError
        return True
    return isinstance(cause, asyncpg.PostgresError) and str(cause.sqlstate or "").startswith(_TRANSIENT_SQLSTATES)


async def wait_for_database(dsn: str, timeout_s: float, stop: asyncio.Event | None = None) -> None:
    """Connect once; while the database cannot be reached, retry with backoff for up to `timeout_s` seconds, then
    raise the last ConfigurationError. Raises StoppedBeforeReady when `stop` is set meanwhile."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    attempt = 0
    while True:
        try:
            await check_connection(dsn)
        except ConfigurationError as err:
            remaining = deadline - loop.time()
            if not is_transient(err) or remaining <= 0:
                raise
            delay_s = min(remaining, backoff_delay(attempt, base_s=0.5, cap_s=10.0))
            log.warning(
                "database not reachable yet, retrying",
                extra={"error": str(err), "attempt": attempt + 1, "retry_in_s": round(delay_s, 2)},
            )
            if not await sleep_unless_stopped(stop, delay_s):
                raise StoppedBeforeReady from None
            attempt += 1
            continue
        if attempt:
            log.info("database reachable", extra={"attempts": attempt + 1})
        return


@asynccontextmanager
async def open_app_state(
    settings: Settings,
    *,
    background: Sequence[BackgroundJob] = (),
    clock: Callable[[], datetime] = utc_now,
    stop: asyncio.Event | None = None,
    acts_for_one_user: bool = True,
) -> AsyncIterator[AppState]:
    """Resolve the database (embedded and migrated when there is no DATABASE_URL; otherwise it must already be
    migrated), build the engine, start the background jobs; undo it all on exit.

    A DATABASE_URL that cannot be reached yet is waited for, up to MCP_TODO_STARTUP_TIMEOUT_S (`stop` ends the wait
    with StoppedBeforeReady). `acts_for_one_user` is false for a server whose requests act for their tokens' users,
    which logs no user of its own."""
    database = await resolve_database(settings)
    embedded = database.embedded
    await wait_for_database(database.engine, 0.0 if embedded else settings.startup_timeout_s, stop)
    engine = create_engine(database.engine, pooled=database.pooled)
    try:
        if embedded:
            await migrate(engine)
        else:
            await require_current_schema(engine)
        # `dsn` is what the relay and the local handlers LISTEN and take session locks on.
        state = AppState(settings=settings, engine=engine, dsn=database.session, embedded=embedded, clock=clock)
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
        who = {"user": settings.user} if acts_for_one_user else {"users": "each token's"}
        log.info("server ready", extra={**who, "embedded_db": embedded, "background_jobs": len(background)})
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
    draining: asyncio.Event | None = None,
) -> MCPServer[AppState]:
    """The MCPServer with the 17 tools, the resources and the agenda app (`mcp_todo.server.agenda`).

    With `public_url` (HTTP without --insecure-local), requests must carry a bearer token: one from `mcp-todo token
    create`, or a JWT of MCP_TODO_OAUTH_ISSUER (docs/oauth.md).

    With `state`, every session shares it (`serve` opens it once for the process). Without, the server's lifespan
    opens one per run (in-process clients in tests). Once `draining` is set, `/readyz` answers 503.
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
        # Imported for token-checked HTTP only: the verifiers and their token store are not needed over stdio.
        from mcp_todo.server.oauth import auth_options

        auth = auth_options(settings, public_url, lambda: live.get().engine)
    bus = HubBus()
    server: MCPServer[AppState] = _Server(
        "mcp-todo",
        version=__version__,
        instructions=server_instructions(INSTRUCTIONS, settings.timezone, clock()),
        tools=build_tools(),
        extensions=[agenda_extension()],
        lifespan=lifespan,
        subscriptions=bus,
        **auth,
    )
    register_resources(server, live)
    register_subscriptions(server, bus)
    register_prompts(server)

    @server.custom_route("/healthz", methods=["GET"])  # type: ignore[untyped-decorator]  # the SDK's is unannotated
    async def healthz(_request: Request) -> Response:
        # Liveness: the process serves. Never the database, or an outage would restart every healthy replica.
        return JSONResponse({"status": "ok"})

    readiness = _Readiness(live, draining or asyncio.Event())

    @server.custom_route("/readyz", methods=["GET"])  # type: ignore[untyped-decorator]  # the SDK's is unannotated
    async def readyz(_request: Request) -> Response:
        reason = await readiness.check()
        if reason is not None:
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    @server.custom_route("/metrics", methods=["GET"])  # type: ignore[untyped-decorator]  # the SDK's is unannotated
    async def metrics(_request: Request) -> Response:
        # Unauthenticated, like /healthz: counters and latencies only, no user data. Never touches the database.
        body, content_type = exposition()
        return Response(body, headers={"Content-Type": content_type})

    return server


class _Server(MCPServer[AppState]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with _sdk_logging_setup_skipped_when_configured():
            super().__init__(*args, **kwargs)

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[AppState, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        await check_prompt_arguments(self, name, arguments)
        return await super().get_prompt(name, arguments, context)


@contextmanager
def _sdk_logging_setup_skipped_when_configured() -> Iterator[None]:
    """The SDK's server sets up logging as it is built: `logging.basicConfig` with a Rich handler when Rich is
    installed. basicConfig does nothing once the root logger has a handler (ours: every command configures logging
    first), but Rich is imported all the same, a tenth of a second or more of the start. Skipped then; a process that
    configured nothing gets the SDK's set-up as before."""
    if not logging.getLogger().handlers:
        yield
        return
    sdk_server = sys.modules[MCPServer.__module__]
    configure = getattr(sdk_server, "configure_logging")  # noqa: B009  # a name the SDK's module does not export
    setattr(sdk_server, "configure_logging", lambda *_args, **_kwargs: None)  # noqa: B010
    try:
        yield
    finally:
        setattr(sdk_server, "configure_logging", configure)  # noqa: B010


class _Readiness:
    """Readiness: the database answers and its schema is the one this version needs. Logged once when it changes,
    not on every probe."""

    def __init__(self, live: LiveState, draining: asyncio.Event) -> None:
        self._live = live
        self._draining = draining
        self._last_reason: str | None = None

    async def check(self) -> str | None:
        reason = await self._reason()
        if reason != self._last_reason:
            if reason is None:
                log.info("ready again")
            else:
                log.warning("not ready", extra={"reason": reason})
            self._last_reason = reason
        return reason

    async def _reason(self) -> str | None:
        if self._draining.is_set():
            return "draining: the server is shutting down"
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
                current = await current_revision(self._live.get().engine)
        except Exception as err:  # a probe's edge: any failure means "not ready", and says which kind
            return f"database unreachable ({err.__class__.__name__})"
        if current != head_revision():
            return f"database schema at revision {current or 'none'}, this version needs {head_revision()}"
        return None


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
        from mcp_todo.server.http_server import bind_address, check_http_allowed

        host = bind_address(host)
        check_http_allowed(host, insecure_local)
    token_auth = transport != "stdio" and not insecure_local
    stop = stop or asyncio.Event()
    try:
        async with open_app_state(
            settings, background=default_background(settings), stop=stop, acts_for_one_user=not token_auth
        ) as state:
            await _serve_state(state, transport, host, port, token_auth, stop)
    except StoppedBeforeReady:
        log.info("stopped before the database answered")


async def _serve_state(
    state: AppState, transport: Transport, host: str, port: int, token_auth: bool, stop: asyncio.Event
) -> None:
    state.token_auth = token_auth
    public_url: str | None = None
    if token_auth:
        from mcp_todo.server.oauth import public_url_for

        public_url = public_url_for(state.settings, host, port)
    # Off the loop: building the 17 tools' schemas is a few hundred milliseconds of CPU (a second or more on a busy
    # machine), and the background jobs already run on the loop.
    server = await asyncio.to_thread(build_server, state.settings, state=state, public_url=public_url, draining=stop)
    if transport == "stdio":
        # A stopped stdio server may not finish cancelling: the SDK reads stdin in a worker thread that only
        # returns with the next line. After a short grace it is left behind, so the CLI can clean up and exit.
        await until_stopped(run_stdio(server), stop, cancel_grace_s=STOP_GRACE_S)
        return
    from mcp_todo.server.http_server import serve_http, transport_security

    async def mount(app: Starlette) -> None:
        # CalDAV (/dav/, /.well-known/caldav) beside /mcp: the same tokens and Host/Origin checks (mcp_todo/caldav);
        # imported here, off the loop, so stdio never pays for it.
        await _import_off_the_loop("mcp_todo.caldav.caldav_mount")
        from mcp_todo.caldav.caldav_mount import mount_caldav

        mount_caldav(app, state, transport_security(host, state.settings), public_url)

    await serve_http(server, transport, host, port, state.settings, public_url=public_url, stop=stop, mount=mount)


def default_background(settings: Settings) -> list[BackgroundJob]:
    """The jobs `serve` runs beside the tools: with Kafka, the outbox relay; in local mode, the relay feeding the
    recurrence and reminder handlers in this process, and the reminder scheduler; in both, the live feed of the
    subscriptions."""
    if settings.local_mode:
        return [_local_mode, live_feed]
    return [_kafka_relay, live_feed]


async def _import_off_the_loop(module: str) -> None:
    """Import `module` in a worker thread: a first import reads and runs hundreds of files (aiokafka, apprise), which
    would hold the event loop for as long."""
    await asyncio.to_thread(importlib.import_module, module)


async def _kafka_relay(state: AppState) -> None:
    await _import_off_the_loop("mcp_todo.pipeline.relay")
    from mcp_todo.pipeline.relay import run_relay_forever

    await run_relay_forever(state.settings, state.dsn, state.stopping)


async def live_feed(state: AppState) -> None:
    """The changes made anywhere, to this process's subscribers (mcp_todo.pipeline.live)."""
    if not state.settings.local_mode:
        await _import_off_the_loop("mcp_todo.pipeline.kafka")  # aiokafka, which the feed's consumer imports
    from mcp_todo.pipeline.live import run_live_feed

    await run_live_feed(state.settings, state.dsn, state.live.publish, state.stopping)


async def _local_mode(state: AppState) -> None:
    await _import_off_the_loop("mcp_todo.pipeline.local_mode")
    from mcp_todo.pipeline.local_mode import run_local_mode

    await run_local_mode(state.engine, state.dsn, state.settings, state.stopping)
