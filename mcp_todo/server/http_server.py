"""Serving the MCP server over HTTP: streamable HTTP (`/mcp`, stateless, JSON responses) or SSE (`/sse`), on uvicorn
with guards against slow and greedy clients, and a drain on SIGTERM.

SIGTERM drains HTTP: the listener closes at once (a new connection is refused, which a client may retry elsewhere),
`/readyz` answers 503, a request already read finishes, a keep-alive connection is closed once it is idle with nothing
unread (a request on its way is still served, answered with `Connection: close`), and whatever still runs after
`DRAIN_GRACE_S` is cancelled.

`http_app` is the ASGI app (the SDK's, wrapped in this module's middlewares): a route or a mount of the server's own
is added there, inside `_RequestEdge`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, Literal, cast

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import (
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    TransportSecurityMiddleware,
    TransportSecuritySettings,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mcp_todo.auth import TokenRefused, TokenStoreUnavailable
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.server.oauth import ProtectedResourceMetadata, metadata_url, resource_metadata
from mcp_todo.server.state import AppState
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

HttpTransport = Literal["streamable-http", "sse"]
RETRY_AFTER_S: Final = 5  # what a 503 tells a client to wait: about one start-up backoff step
LOOPBACK_NAMES: Final = ("127.0.0.1", "localhost", "[::1]")
SSE_PATH: Final = "/sse"  # the SDK's default, which sse_app is built with
SDK_TRANSPORT_LOGGER: Final = "mcp.server.streamable_http"
# How long a draining server waits for its keep-alive connections to fall idle with nothing unread before uvicorn
# closes the idle ones regardless (as its own keep-alive timeout would).
DRAIN_IDLE_GRACE_S: Final = 1.0
DRAIN_POLL_S: Final = 0.02
# For requests already running when SIGTERM came (a tool call takes milliseconds; a legacy SSE stream never ends).
# With the background jobs' grace, the process exits well inside the 30 s a pod is given.
DRAIN_GRACE_S: Final = 15.0
# A client that sends its request slowly holds a connection (and, with enough of them, the server) for as long as it
# likes; uvicorn bounds only the idle time between requests (5 s). A request's head must have arrived within
# HEADER_READ_TIMEOUT_S of the connection opening (or of the first byte of a next request on a kept-alive one), and
# its body within BODY_READ_TIMEOUT_S of its head: a tool call's body is a few hundred bytes, and the largest the
# SDK accepts (4 MiB) takes under 30 s at 150 KB/s. Beyond MAX_CONNECTIONS open at once (fewer when the process may
# open fewer files), a new connection is answered 503 and closed.
HEADER_READ_TIMEOUT_S: Final = 10.0
BODY_READ_TIMEOUT_S: Final = 30.0
MAX_CONNECTIONS: Final = 1000
_FILES_KEPT_FOR_THE_REST: Final = 128
CAP_LOG_INTERVAL_S: Final = 60.0  # the database pool, the embedded server's pipes, logs, imports


async def serve_http(
    server: MCPServer[AppState],
    transport: HttpTransport,
    host: str,
    port: int,
    settings: Settings,
    *,
    public_url: str | None,
    stop: asyncio.Event,
    mount: Callable[[Starlette], Awaitable[None]] | None = None,
) -> None:
    """Serve `server` on `host`:`port` until `stop` is set, then drain. `mount` adds routes beside /mcp (CalDAV)."""
    app = http_app(server, transport, host, settings, public_url=public_url, draining=stop)
    if mount is not None:
        await mount(app)
    # log_config=None: uvicorn's records go through our one stderr formatter.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(DRAIN_GRACE_S),
        http=guarded_http_protocol(),
    )
    http = _HttpServer(config)
    log.info("serving http", extra={"transport": transport, "host": host, "port": port})
    watcher = asyncio.create_task(_stop_http_on(stop, http))
    try:
        await http.serve()
    finally:
        watcher.cancel()


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


def bind_address(host: str) -> str:
    """`[::1]` as a URL writes it is `::1` to bind to."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def http_app(
    server: MCPServer[AppState],
    transport: HttpTransport,
    host: str,
    settings: Settings,
    *,
    public_url: str | None = None,
    draining: asyncio.Event | None = None,
) -> Starlette:
    """The ASGI app of an HTTP transport: the SDK's, with its Host/Origin checks set for `host`, a token store that
    cannot be asked answered as 503, (with `public_url`: tokens required) the protected-resource metadata, and
    `Connection: close` on every response once `draining` is set."""
    security = transport_security(host, settings)
    if not log.isEnabledFor(logging.DEBUG):
        # The SDK's transport logs "Terminating session: None" at INFO after every stateless request: a line per
        # call that says nothing (each tool call logs its own), and about an eighth of the CPU of answering a ping
        # (bench/results/http_path.md).
        logging.getLogger(SDK_TRANSPORT_LOGGER).setLevel(logging.WARNING)
    if transport == "streamable-http":
        # JSON responses: a stateless request is answered by one JSON body instead of an SSE stream of one event,
        # about a millisecond of server CPU less per call (bench/results/load.md). Nothing is lost: a stateless
        # server has no session to push notifications on.
        app = server.streamable_http_app(
            stateless_http=True, json_response=True, host=host, transport_security=security
        )
    else:
        app = server.sse_app(host=host, transport_security=security)
        app.add_middleware(_SseStreamChecked, security=security)
    if public_url is not None:
        app.add_middleware(ProtectedResourceMetadata, metadata=resource_metadata(settings, public_url))
    # Outermost of the app's own middleware: nothing (the metadata, authentication, the SDK) sees a request whose
    # client went away before sending it whole.
    app.add_middleware(
        _RequestEdge,
        draining=draining,
        resource_metadata=metadata_url(public_url) if public_url is not None else None,
    )
    return app


def transport_security(host: str, settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: which Host and Origin headers the MCP endpoints accept.

    A loopback bind accepts the loopback names (any port) and the bound address; a browser page from another site
    that resolves its name to this address is refused. MCP_TODO_ALLOWED_HOSTS / MCP_TODO_ALLOWED_ORIGINS add the
    names a proxy in front uses; a host without a port is allowed on any port, and its http(s) origins with it.
    Off on a non-loopback bind unless hosts are configured (replicas are reached by many names).
    """
    hosts = list(settings.allowed_host_list)
    origins = list(settings.allowed_origin_list)
    if is_loopback(host):
        bound = f"[{host}]" if ":" in host else host
        hosts += [name for name in (*LOOPBACK_NAMES, bound) if name not in hosts]
    elif not hosts:
        if origins:
            # The SDK checks Host whenever it checks Origin: with no host allowed, every request would be refused.
            raise ConfigurationError(
                f"MCP_TODO_ALLOWED_ORIGINS needs MCP_TODO_ALLOWED_HOSTS when --host {host} is not loopback"
            )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    allowed_hosts: list[str] = []
    allowed_origins: list[str] = list(origins)
    for name in hosts:
        patterns = [name] if ":" in name.rsplit("]", 1)[-1] else [name, f"{name}:*"]  # the port after an [IPv6]
        allowed_hosts += patterns
        allowed_origins += [f"{scheme}://{pattern}" for scheme in ("http", "https") for pattern in patterns]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins
    )


class _SseStreamChecked:
    """The SDK's Host/Origin check for `GET /sse`, made before the SDK's own: the SDK sends its refusal and then raises,
    which drops the connection before the client reads the answer and logs a traceback per refused request."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        self.app = app
        self.check = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == SSE_PATH and scope["method"] == "GET":
            refusal = await self.check.validate_request(Request(scope, receive), is_post=False)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


# Set on a request's scope when the server closed its connection because its body did not arrive in time.
_READ_TIMED_OUT: Final = "mcp_todo.read_timed_out"


class _RequestEdge:
    """What every HTTP request meets before the SDK's app, in one layer (each layer is another coroutine per request
    and another wrapper around each response message):

    - The body is read whole before the app sees the request, so that a client that goes away (or is timed out)
      mid-body is one log line, not a traceback from whichever layer was reading; the app gets the body in one piece.
      A body beyond the SDK's limit is passed on as it comes (the SDK answers 413); a request without a body (`GET
      /sse`, whose stream watches for the disconnect) is passed on untouched.
    - Once `draining` is set, every response says `Connection: close`, so a keep-alive client opens its next request
      on a new connection (refused here, hence retryable on another replica) instead of one this server is about to
      close.
    - A request whose token cannot be checked (the database is away) is answered 503 with Retry-After, logged in one
      line: nothing is wrong with the request, and the client may retry. One whose token verified but cannot be used
      (TokenRefused) is answered 401 saying why, as the SDK answers a token that did not verify. This layer sits
      around the SDK's authentication (which calls the verifier) and inside Starlette's error middleware (which would
      answer 500 and log a traceback).
    """

    def __init__(self, app: ASGIApp, draining: asyncio.Event | None, resource_metadata: str | None) -> None:
        self.app = app
        self.draining = draining
        self.resource_metadata = resource_metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _has_body(scope):
            whole = await _whole_body(scope, receive)
            if whole is None:
                return
            receive = whole
        started = False
        draining = self.draining

        async def edge_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if draining is not None and draining.is_set():
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, receive, edge_send)
        except TokenRefused as err:
            if started:
                raise
            challenge = f'Bearer error="invalid_token", error_description="{err.description}"'
            if self.resource_metadata is not None:
                challenge += f', resource_metadata="{self.resource_metadata}"'
            response = JSONResponse(
                {"error": "invalid_token", "error_description": err.description},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
            await response(scope, receive, edge_send)
        except TokenStoreUnavailable as err:
            if started:
                raise
            log.warning("request refused: cannot check its token", extra={"path": scope["path"], "error": str(err)})
            response = JSONResponse(
                {"error": "temporarily_unavailable", "error_description": err.description},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            await response(scope, receive, edge_send)


async def _whole_body(scope: Scope, receive: Receive) -> Receive | None:
    """A `receive` that hands out the request's body read whole, then reads on; None when the client went away (or
    was timed out) first, which is logged."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            log.info(
                "request body timed out" if scope.get(_READ_TIMED_OUT) else "client went away mid-request",
                extra={"method": scope["method"], "path": scope["path"][:200], "bytes_read": size},
            )
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body", False) or size > DEFAULT_MAX_REQUEST_BODY_SIZE:
            break
    first: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": message.get("more_body", False)}
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return first
        return await receive()

    return replay


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


def guarded_http_protocol(
    *,
    header_timeout_s: float = HEADER_READ_TIMEOUT_S,
    body_timeout_s: float = BODY_READ_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with read timeouts for a request's head and body, a cap on open connections,
    and a 400 for a request with two `Host` headers (which would leave it to each layer to pick one)."""
    max_connections = min(max_connections, max(16, _open_files_limit() - _FILES_KEPT_FOR_THE_REST))

    class GuardedHttpProtocol(HttpToolsProtocol):
        _read_deadline: asyncio.TimerHandle | None = None
        _refusal: str | None = None

        def send_400_response(self, msg: str) -> None:
            super().send_400_response(self._refusal or msg)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                _log_cap_reached(max_connections)
                _refuse(transport, 503, "too many connections, retry shortly")
                return
            self._arm(header_timeout_s, "headers")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._read_deadline is None:
                self._arm(header_timeout_s, "headers")

        def on_headers_complete(self) -> None:
            self._disarm()
            hosts = sum(1 for name, _value in self.headers if name == b"host")
            if hosts > 1:
                # Raised out of the parser, which uvicorn answers with 400 (send_400_response) and a close.
                self._refusal = f"{hosts} Host headers: a request names one host"
                raise _BadRequest(self._refusal)
            super().on_headers_complete()
            if self.cycle is not None and self.cycle.more_body and _has_body(cast(Scope, self.scope)):
                self._arm(body_timeout_s, "body")

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _arm(self, timeout_s: float, part: str) -> None:
            self._disarm()
            self._read_deadline = self.loop.call_later(timeout_s, self._read_timed_out, part)

        def _disarm(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None

        def _read_timed_out(self, part: str) -> None:
            self._read_deadline = None
            if self.transport.is_closing():
                return
            if part == "body" and self.cycle is not None:
                cast(dict[str, Any], self.scope)[_READ_TIMED_OUT] = True  # read by _whole_body
                if self.cycle.response_started:
                    self.transport.close()
                    return
            else:
                log.info("request head timed out", extra={"timeout_s": header_timeout_s})
            _refuse(self.transport, 408, f"the request's {part} did not arrive within the time allowed")

    return GuardedHttpProtocol


class _BadRequest(Exception):
    """A request uvicorn's parser accepted and this server refuses."""


def _refuse(transport: asyncio.Transport, status: int, reason: str) -> None:
    phrase = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}[status]
    body = f'{{"error": "{reason}"}}'.encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    transport.write(head.encode() + body)
    transport.close()


def _open_files_limit() -> int:
    try:
        import resource
    except ImportError:  # not on Windows
        return 1 << 20
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


_cap_logged_at = -CAP_LOG_INTERVAL_S


def _log_cap_reached(max_connections: int) -> None:
    """At most once per CAP_LOG_INTERVAL_S: a flood of connections is not a flood of lines."""
    global _cap_logged_at
    now = time.monotonic()
    if now - _cap_logged_at >= CAP_LOG_INTERVAL_S:
        _cap_logged_at = now
        log.warning(
            "connection cap reached: refusing new connections with 503", extra={"max_connections": max_connections}
        )


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
            raise ConfigurationError(_why_not_listening(self.config.host, self.config.port)) from None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Refuse new connections at once; close each keep-alive connection once it is idle with nothing unread (a
        request already on its way is read and served, with `Connection: close`), for up to DRAIN_IDLE_GRACE_S; then
        uvicorn's own shutdown closes what is idle and waits for the requests still running.

        uvicorn alone would close every idle connection at once, and a request its client had just sent on one, still
        unread in the socket, would be lost without an answer: a request a client cannot know is safe to retry."""
        for server in self.servers:
            server.close()
        # uvicorn signals no event when a connection closes or reads: look every few milliseconds.
        for _ in range(round(DRAIN_IDLE_GRACE_S / DRAIN_POLL_S)):
            for connection in list(self.server_state.connections):
                if _idle_and_unread_nothing(connection):
                    connection.shutdown()  # on an idle connection: closes it
            if not self.server_state.connections:
                break
            await asyncio.sleep(DRAIN_POLL_S)
        log.info("draining: closing idle connections", extra={"open_connections": len(self.server_state.connections)})
        await super().shutdown(sockets)


def _idle_and_unread_nothing(connection: Any) -> bool:
    """A uvicorn HTTP/1.1 connection between requests with no byte of a next request waiting in its socket."""
    cycle = getattr(connection, "cycle", None)
    if cycle is not None and not cycle.response_complete:
        return False
    transport = getattr(connection, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return True
    try:
        # asyncio hands out a wrapper without recv(); a duplicate of the descriptor reads the same socket.
        with sock.dup() as peek:
            return bool(peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")  # b"": the client closed it
    except OSError:  # BlockingIOError: nothing waits to be read; any other: the socket is gone
        return True


def _why_not_listening(host: str, port: int) -> str:
    """Whether the address or the port is what stopped the bind: try the address on a port of the system's choice."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except OSError as err:
        return f"could not listen on {host}: {err.strerror or err} — --host must be an address of this machine"
    return f"could not listen on {host}:{port} — the port is in use; choose another with --port"


async def _stop_http_on(stop: asyncio.Event, http: uvicorn.Server) -> None:
    await stop.wait()
    log.info("stopping: finishing in-flight requests")
    http.should_exit = True
