"""`mcp-todo`: the command line. With no command it serves MCP over stdio, as Claude Desktop expects.

Every command logs to stderr (stdout carries the stdio protocol), reports misconfiguration in one line and a non-zero
exit code, and stops gracefully on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Final, cast

import click

from mcp_todo import __version__
from mcp_todo.domain.errors import ConfigurationError, TodoError
from mcp_todo.runtime.config_errors import describe_connect_error, exit_with_error
from mcp_todo.runtime.logs import configure_logging
from mcp_todo.runtime.signals import run_until_signalled
from mcp_todo.settings import Settings, load_settings, log_level

log = logging.getLogger("mcp_todo.cli")


def _run(command: Callable[[asyncio.Event], Coroutine[Any, Any, None]], settings: Settings) -> None:
    """Run an async command until it returns or SIGTERM/SIGINT sets its `stop`; misconfiguration is one line and
    exit code 2."""
    try:
        run_until_signalled(command, watchdog_ms=settings.loop_watchdog_ms)
    except ConfigurationError as exc:
        exit_with_error(str(exc))


def _config_or_fail() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        exit_with_error(str(exc))


# SQLSTATEs that say the connection itself failed (connection exceptions, authorization, a missing database, no
# resources, shutdown, a server setting the URL named that the server does not know).
_CONNECTION_STATES: Final = ("08", "28", "3D", "53", "57P", "42704")


def describe_failure(exc: BaseException) -> str:
    """One line for an error a command did not turn into a ConfigurationError itself: a driver error met while
    connecting (anywhere in the cause chain, also wrapped by SQLAlchemy), else the exception's type and first line."""
    seen: BaseException | None = exc
    for _ in range(10):  # a cause chain is short; this only bounds a pathological loop
        if seen is None:
            break
        state = str(getattr(seen, "sqlstate", None) or "")
        if state.startswith(_CONNECTION_STATES) or isinstance(seen, (ConnectionError, TimeoutError)):
            return describe_connect_error(seen, _database_shown())
        if state:
            said = (str(getattr(seen, "message", None) or seen).splitlines() or [""])[0][:300]
            return f"the database refused a statement: {said} (SQLSTATE {state})"
        # SQLAlchemy keeps the driver's error in `orig`, not in the cause chain.
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    first_line = (str(exc).splitlines() or [""])[0][:300]
    return f"unexpected {exc.__class__.__name__}: {first_line} (MCP_TODO_LOG_LEVEL=DEBUG logs the traceback)"


def _database_shown() -> str:
    """The database the settings point at, password hidden, for an error message."""
    from mcp_todo.db.engine import redact_dsn

    try:
        settings = load_settings()
    except ConfigurationError:
        return "DATABASE_URL"
    if settings.database_url is None:
        return f"the embedded database in {settings.data_dir}"
    return redact_dsn(settings.database_url.get_secret_value().strip())


class OneLineErrors(click.Group):
    """The root group: whatever a command raises (a command of a nested group too) ends as one `Error: …` line on
    stderr and a non-zero exit code, never a traceback. Click's own usage errors, exits and aborts pass through."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ConfigurationError as exc:
            exit_with_error(str(exc))
        except TodoError as exc:
            exit_with_error(exc.message)
        except Exception as exc:  # the process edge: every command's failure is reported here
            log.debug("command failed", exc_info=True)
            exit_with_error(describe_failure(exc), code=1)


# --- commands -----------------------------------------------------------------------------------------------------


@click.group(cls=OneLineErrors, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcp-todo")
@click.pass_context
def main(ctx: click.Context) -> None:
    """A task manager for LLM hosts: an MCP server on PostgreSQL.

    With no command, serves MCP over stdio (what Claude Desktop runs). Configuration comes from the environment
    (and a .env file): DATABASE_URL (unset: an embedded PostgreSQL in MCP_TODO_DATA_DIR), MCP_TODO_USER,
    MCP_TODO_TIMEZONE, KAFKA_BOOTSTRAP_SERVERS (unset: local mode, no Kafka).
    """
    configure_logging(log_level())
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@main.command()
@click.option(
    "--transport",
    type=click.Choice(["stdio", "streamable-http", "sse"]),
    default="stdio",
    show_default=True,
    help="stdio for a local host; streamable-http serves /mcp, sse serves /sse (legacy); both serve /healthz "
    "(liveness) and /readyz (readiness).",
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
    if transport == "stdio" and sys.stdin.isatty():
        # Typed in a terminal, a stdio server would only print log lines and ignore what is typed.
        click.echo(terminal_greeting(settings), err=True)

    async def command(stop: asyncio.Event) -> None:
        await serve_mcp(settings, cast(Transport, transport), host, port, insecure_local, stop=stop)
        if stop.is_set() and transport == "stdio":
            # Everything is closed; only the SDK's stdin reader thread may still block on a read that never
            # returns (the host keeps the pipe open), and Python would wait for it forever at exit.
            # os._exit skips the exit hooks: detach from an embedded database first (the last process stops it).
            from mcp_todo.db.embedded import detach_embedded

            detach_embedded()
            log.info("stopped")
            logging.shutdown()
            os._exit(0)

    _run(command, settings)


def host_command(executable: Path) -> tuple[str, list[str]]:
    """How a host starts this server: the executable itself, unless it lives in an environment uvx made in uv's
    cache, which a rebuild replaces (then the uvx command, as the README gives it)."""
    if "archive-v0" in executable.parts:
        return "uvx", ["--from", "/path/to/mcp-todo", "mcp-todo"]
    return str(executable), []


def terminal_greeting(settings: Settings) -> str:
    """What a person who typed `mcp-todo` in a terminal needs: what this is, and how a host runs it."""
    command, args = host_command(Path(shutil.which(sys.argv[0]) or sys.argv[0]).resolve())
    config = {
        "mcpServers": {
            "todo": {
                "command": command,
                "args": args,
                "env": {"MCP_TODO_TIMEZONE": settings.timezone},
            }
        }
    }
    return (
        f"mcp-todo {__version__}: a task manager for LLM hosts, serving MCP on standard input and output.\n"
        "It is meant to be started by a host, not typed to. For Claude Desktop, add this to\n"
        "claude_desktop_config.json (other hosts take the same command):\n\n"
        f"{json.dumps(config, indent=2)}\n\n"
        "Over HTTP instead: mcp-todo serve --transport streamable-http (see --help). Ctrl-C stops this server.\n"
    )


@main.command()
def migrate() -> None:
    """Apply database migrations to DATABASE_URL (or the embedded database when it is unset)."""
    from mcp_todo.db.engine import check_connection, create_engine, resolve_database
    from mcp_todo.db.migrate import migrate as run_migrations

    settings = _config_or_fail()

    async def command(_stop: asyncio.Event) -> None:
        # A migration holds an advisory lock for its whole run: on the session-capable URL.
        database = await resolve_database(settings)
        await check_connection(database.session)
        engine = create_engine(database.session, pool_size=1)
        try:
            before, after = await run_migrations(engine)
        finally:
            await engine.dispose()
        was = "" if before == after else f" (was {before or 'empty'})"
        click.echo(f"database schema at revision {after}{was}", err=True)

    _run(command, settings)


@main.command()
def relay() -> None:
    """Publish the outbox to Kafka on its own (servers and workers also run one)."""
    settings = _config_or_fail()
    if settings.local_mode:
        exit_with_error(
            "mcp-todo relay publishes to Kafka: set KAFKA_BOOTSTRAP_SERVERS "
            "(without Kafka, the server relays to its in-process handlers itself)"
        )

    async def command(stop: asyncio.Event) -> None:
        from mcp_todo.db.engine import check_connection, resolve_database
        from mcp_todo.pipeline.kafka import check_broker
        from mcp_todo.pipeline.relay import run_relay_forever

        database = await resolve_database(settings)
        await check_connection(database.session)
        # A broker that is wrong at start is misconfiguration; one that goes away later is waited for.
        await check_broker(settings)
        await run_relay_forever(settings, database.session, stop)

    _run(command, settings)


@main.command()
def doctor() -> None:
    """Report this installation's state: version, data directory, database (password hidden) and schema revision,
    broker, user, zone and mode; exit code 1 when something is wrong, each problem said in words."""
    from mcp_todo.doctor import diagnose, report_lines, summary

    settings = _config_or_fail()
    findings: list[Any] = []

    async def command(_stop: asyncio.Event) -> None:
        findings.extend(await diagnose(settings))

    _run(command, settings)
    click.echo("\n".join(report_lines(findings)))
    problems = summary(findings)
    if problems is not None:
        exit_with_error(problems, code=1)


@main.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
def topics_create() -> None:
    """Create the three topics with their partitions and retention (idempotent)."""
    settings = _config_or_fail()
    if settings.local_mode:
        exit_with_error("KAFKA_BOOTSTRAP_SERVERS is not set: there is no broker to create topics on")

    async def command(_stop: asyncio.Event) -> None:
        from mcp_todo.pipeline.kafka import create_topics

        created = await create_topics(settings)
        click.echo(f"topics created: {', '.join(created)}" if created else "topics already exist", err=True)

    _run(command, settings)


# --- tokens -------------------------------------------------------------------------------------------------------


# Token ids are PostgreSQL bigints: a larger number names no token, and the driver would refuse to send it.
MAX_TOKEN_ID: Final = 2**63 - 1


@main.group()
def token() -> None:
    """Bearer tokens for the HTTP transports (each request acts for its token's user)."""


async def current_dsn(settings: Settings) -> str:
    """The DSN of a database at this version's schema (the embedded one is migrated first), for one raw connection:
    the session-capable one, since a raw asyncpg connection caches its prepared statements."""
    from mcp_todo.db.engine import check_connection, create_engine, resolve_database
    from mcp_todo.db.migrate import migrate as run_migrations
    from mcp_todo.db.migrate import require_current_schema

    database = await resolve_database(settings)
    await check_connection(database.session)
    engine = create_engine(database.session, pool_size=1)
    try:
        await (run_migrations(engine) if database.embedded else require_current_schema(engine))
    finally:
        await engine.dispose()
    return database.session


@contextlib.asynccontextmanager
async def token_connection(settings: Settings) -> AsyncIterator[Any]:
    """A raw connection to a database at this version's schema (the embedded one is migrated first), closed on exit.
    The schema is checked before the connection is opened, so a refused check leaves nothing open."""
    from mcp_todo.db.engine import connect

    conn = await connect(await current_dsn(settings))
    try:
        yield conn
    finally:
        await conn.close()


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
        exit_with_error(exc.message)

    async def command(_stop: asyncio.Event) -> None:
        async with token_connection(settings) as conn:
            try:
                token_id, secret = await create_token(conn, user, lifetime)
            except TodoError as exc:
                raise ConfigurationError(exc.message) from None
        until = f", expires in {expires}" if expires else ""
        click.echo(f"token {token_id} for user {user.strip()}{until}; it is shown only now:")
        click.echo(f"secret: {secret}")

    _run(command, settings)


@token.command("list")
def token_list() -> None:
    """List tokens (never their secrets)."""
    from mcp_todo.auth import list_tokens

    settings = _config_or_fail()

    async def command(_stop: asyncio.Event) -> None:
        async with token_connection(settings) as conn:
            tokens = await list_tokens(conn)
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

    _run(command, settings)


@token.command("revoke")
@click.argument("token_id", type=click.IntRange(1, MAX_TOKEN_ID))
def token_revoke(token_id: int) -> None:
    """Revoke a token by its id (from `mcp-todo token list`)."""
    from mcp_todo.auth import revoke_token

    settings = _config_or_fail()

    async def command(_stop: asyncio.Event) -> None:
        async with token_connection(settings) as conn:
            revoked = await revoke_token(conn, token_id)
        if not revoked:
            raise ConfigurationError(f"no active token {token_id} — `mcp-todo token list` shows the ids")
        click.echo(f"token {token_id} revoked", err=True)

    _run(command, settings)


@contextlib.asynccontextmanager
async def schema_engine(settings: Settings) -> AsyncIterator[Any]:
    """An engine on a database at this version's schema (the embedded one is migrated first), disposed on exit."""
    from mcp_todo.db.engine import check_connection, create_engine, resolve_database
    from mcp_todo.db.migrate import migrate as run_migrations
    from mcp_todo.db.migrate import require_current_schema

    database = await resolve_database(settings)
    await check_connection(database.engine)
    engine = create_engine(database.engine, pool_size=1, pooled=database.pooled)
    try:
        await (run_migrations(engine) if database.embedded else require_current_schema(engine))
        yield engine
    finally:
        await engine.dispose()


# --- users --------------------------------------------------------------------------------------------------------


@main.group()
def user() -> None:
    """Each user's own settings: the time zone and reminder lead their calls run with (over HTTP, the token's
    user; over stdio, MCP_TODO_USER).

    A call's zone is the OAuth token's `zoneinfo` claim when it names a valid zone, else the user's stored one,
    else MCP_TODO_TIMEZONE; a running server sees a change within 30 seconds.
    """


@user.command("set")
@click.argument("name")
@click.option("--timezone", "time_zone", metavar="ZONE", help="IANA time zone, e.g. Europe/Paris.")
@click.option(
    "--reminder-lead",
    "reminder_lead",
    type=click.IntRange(0, 525_600),
    metavar="MINUTES",
    help="Default reminder lead before a due date, 0-525600 minutes.",
)
def user_set(name: str, time_zone: str | None, reminder_lead: int | None) -> None:
    """Set a user's time zone and/or reminder lead (what is not given stays as it is)."""
    from mcp_todo.service.users import set_user_settings

    settings = _config_or_fail()

    async def command(_stop: asyncio.Event) -> None:
        async with schema_engine(settings) as engine:
            try:
                stored = await set_user_settings(
                    engine, settings, name, time_zone=time_zone, reminder_lead_minutes=reminder_lead
                )
            except TodoError as exc:
                raise ConfigurationError(exc.message) from None
        click.echo(_user_lines(settings, stored))

    _run(command, settings)


@user.command("show")
@click.argument("name")
def user_show(name: str) -> None:
    """Show a user's settings, and which are the server's defaults."""
    from mcp_todo.service.users import get_user_settings

    settings = _config_or_fail()

    async def command(_stop: asyncio.Event) -> None:
        async with schema_engine(settings) as engine:
            try:
                stored = await get_user_settings(engine, settings, name)
            except TodoError as exc:
                raise ConfigurationError(exc.message) from None
        click.echo(_user_lines(settings, stored))

    _run(command, settings)


def _user_lines(settings: Settings, stored: Any) -> str:
    zone = stored.time_zone or f"{settings.timezone} (server default)"
    lead = stored.reminder_lead_minutes
    lead_text = f"{lead}" if lead is not None else f"{settings.reminder_lead_minutes} (server default)"
    return f"user\t{stored.user_id}\ntime_zone\t{zone}\nreminder_lead_minutes\t{lead_text}"


# --- import and export --------------------------------------------------------------------------------------------


def _user_name(user: str | None, settings: Settings) -> str:
    """--user (or MCP_TODO_USER) checked as `token create` checks it: trimmed, 1-200 characters, no control
    characters; one `Error:` line otherwise."""
    from mcp_todo.porting.records import check_user_name

    name = (user if user is not None else settings.user).strip()
    if not name:
        exit_with_error("--user is empty: give the user whose tasks these are")
    try:
        return check_user_name(name)
    except TodoError as exc:
        exit_with_error(f"--user {name[:40]!r}: {exc.message}")


def _progress(action: str, quiet: bool, *streams: Any) -> Any:
    """A progress line on standard error when every one of `streams` is a terminal and --quiet is not given."""
    from mcp_todo.porting.progress import TerminalProgress

    if quiet or not all(stream.isatty() for stream in streams):
        return None
    return TerminalProgress(sys.stderr, action)


@main.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ics", "json", "taskwarrior"]),
    default="ics",
    show_default=True,
    help="ics: iCalendar VTODO (RFC 5545); json: mcp-todo's own, with everything a task holds; taskwarrior: for "
    "`task import`.",
)
@click.option("--user", "user", default=None, help="Whose tasks (default: MCP_TODO_USER); refused if unknown here.")
@click.option(
    "--all-users",
    is_flag=True,
    help="Every user's tasks in one mcp-todo JSON file (a full backup; needs --format json); "
    "`mcp-todo import --all-users` restores it.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress line on the terminal.")
def export_command(fmt: str, user: str | None, all_users: bool, quiet: bool) -> None:
    """Write your tasks (not the trash) to standard output: `mcp-todo export --format ics > tasks.ics`.

    On a terminal, standard error shows how far it has got. docs/import-export.md says what each format keeps and
    loses.
    """
    from datetime import UTC, datetime

    from mcp_todo.db.porting import known_users, user_known
    from mcp_todo.porting.files import export_backup, export_text

    settings = _config_or_fail()
    if all_users and user is not None:
        exit_with_error("give --user NAME or --all-users, not both")
    if all_users and fmt != "json":
        exit_with_error(
            "--all-users writes mcp-todo JSON (iCalendar has no place for whose task it is): add --format json"
        )
    user_id = "" if all_users else _user_name(user, settings)
    progress = _progress("export", quiet, sys.stderr)

    async def command(_stop: asyncio.Event) -> None:
        async with schema_engine(settings) as engine:
            if all_users:
                document, _count = await export_backup(engine, now=datetime.now(UTC), progress=progress)
            else:
                if user is not None:
                    async with engine.connect() as conn:
                        if not await user_known(conn, user_id):
                            users = await known_users(conn)
                            shown = ", ".join(users[:10]) + (f" and {len(users) - 10} more" if len(users) > 10 else "")
                            raise ConfigurationError(
                                f"no user {user_id!r} here (no tasks, labels, settings or tokens) — "
                                + (f"users: {shown}" if users else "the database has no users yet")
                                + "; --all-users exports everyone"
                            )
                document = await export_text(engine, user_id, fmt, now=datetime.now(UTC), progress=progress)
        if progress is not None:
            progress.finish()
        sys.stdout.write(document)
        sys.stdout.flush()

    _run(command, settings)


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--user", "user", default=None, help="Whose tasks (default: MCP_TODO_USER).")
@click.option(
    "--all-users",
    is_flag=True,
    help="Restore an `mcp-todo export --all-users` file: each user's tasks into that user's account.",
)
@click.option("--dry-run", is_flag=True, help="Report what the import would do and change nothing.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "ics", "json", "taskwarrior", "todoist"]),
    default="auto",
    show_default=True,
    help="auto tells iCalendar, mcp-todo JSON, Taskwarrior `task export` JSON and Todoist CSV apart.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress line on the terminal.")
def import_command(file: str, user: str | None, all_users: bool, dry_run: bool, fmt: str, quiet: bool) -> None:
    """Import tasks from FILE (- for standard input): iCalendar VTODO, an mcp-todo JSON export, Taskwarrior's
    `task export`, or a Todoist CSV export.

    Tasks are matched by UID, so importing a file again adds nothing. Prints what was added, updated, left
    unchanged, skipped and why each failed record failed; exit code 1 when a record failed (the others landed),
    2 when the file is not one of these formats (nothing changed). On a terminal, standard error shows how far it
    has got.
    """
    from datetime import UTC, datetime

    from mcp_todo.porting.files import check_file, import_backup, import_file
    from mcp_todo.porting.records import MAX_IMPORT_BYTES, FormatError
    from mcp_todo.porting.report import Report

    settings = _config_or_fail()
    if all_users and user is not None:
        exit_with_error("give --user NAME or --all-users, not both")
    if all_users and fmt not in ("auto", "json"):
        exit_with_error("--all-users restores mcp-todo JSON (an export --all-users): drop --format or give json")
    user_id = "" if all_users else _user_name(user, settings)
    with click.open_file(file, "rb") as stream:
        data = stream.read(MAX_IMPORT_BYTES + 1)
    try:
        # Before the database is opened: a file that is too big or holds too many records is refused at once.
        check_file(data, "json" if all_users else fmt, file)
    except FormatError as exc:
        exit_with_error(f"{file}: {exc} — nothing was imported")
    progress = _progress("import", quiet, sys.stdout, sys.stderr)
    failed = False

    async def command(_stop: asyncio.Event) -> None:
        nonlocal failed
        reports: list[tuple[str, Report]]
        async with schema_engine(settings) as engine:
            try:
                if all_users:
                    reports = await import_backup(
                        engine, settings, data, now=datetime.now(UTC), dry_run=dry_run, progress=progress
                    )
                    users = len([owner for owner, _report in reports if owner != "(no user)"])
                    read_as = f"json, {users} user{'s' if users != 1 else ''}"
                else:
                    read_as, report = await import_file(
                        engine,
                        settings,
                        user_id,
                        data,
                        fmt=fmt,
                        name=file,
                        now=datetime.now(UTC),
                        dry_run=dry_run,
                        progress=progress,
                    )
                    reports = [(user_id, report)]
            except FormatError as exc:
                raise ConfigurationError(f"{file}: {exc} — nothing was imported") from None
            except TodoError as exc:
                raise ConfigurationError(f"{file}: {exc.message} — nothing was imported") from None
        if progress is not None:
            progress.finish()
        if all_users:
            click.echo(f"{file} ({read_as}):")
            for owner, report in reports:
                for line in report.lines():
                    click.echo(f"{owner}: {line}" if not line.startswith("  ") else f"  {owner}:{line[1:]}")
        else:
            click.echo(f"{file} ({read_as}) for {user_id}:")
            for line in reports[0][1].lines():
                click.echo(line)
        failed = any(report.failed for _owner, report in reports)

    _run(command, settings)
    if failed:
        sys.exit(1)


# Last, once every command (the `token` group too) is attached to `main`.
if __name__ == "__main__":
    main()
