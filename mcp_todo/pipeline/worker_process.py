"""What both worker binaries share: the command line, the database, the supervisor of their parts, `--check`.

A worker runs a few long-lived parts side by side (its consumer loop, the outbox relay for the events it writes,
and for the notifier the reminder scheduler) under `mcp_todo.runtime.supervise`: they share one `stop` event that
SIGTERM/SIGINT sets, and so does a part that fails, so the process never keeps running half-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo import __version__
from mcp_todo.db.engine import check_connection, create_engine, resolve_database
from mcp_todo.db.migrate import require_current_schema
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.metrics import MetricsPort
from mcp_todo.pipeline.kafka import check_broker
from mcp_todo.runtime.config_errors import exit_with_error
from mcp_todo.runtime.logs import configure_logging
from mcp_todo.runtime.signals import run_until_signalled
from mcp_todo.runtime.waits import until_stopped
from mcp_todo.settings import Settings, log_level
from mcp_todo.settings import load_settings as load_valid_settings

log = logging.getLogger("workers")

CHECK_TIMEOUT_S: Final = 12.0  # under the 15 s timeout of the Helm chart's --check probe (templates/workers.yaml)


@dataclass
class Database:
    dsn: str
    engine: AsyncEngine


def load_settings(name: str) -> Settings:
    """The settings, or a one-line ConfigurationError; a worker without Kafka has nothing to do."""
    settings = load_valid_settings()
    if settings.local_mode:
        raise ConfigurationError(
            f"{name} needs KAFKA_BOOTSTRAP_SERVERS; without Kafka (local mode) its work runs inside the server "
            "(`mcp-todo`), so there is nothing to start"
        )
    return settings


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, pool_size: int = 5) -> AsyncIterator[Database]:
    """DATABASE_URL (or the embedded server), reachable and at this version's schema."""
    database = await resolve_database(settings)
    await check_connection(database.engine)
    engine = create_engine(database.engine, pool_size=pool_size, pooled=database.pooled)
    try:
        await require_current_schema(engine)
        # The relay and the scheduler LISTEN and hold session locks: they take the session-capable DSN.
        yield Database(database.session, engine)
    finally:
        await engine.dispose()


async def announce_ready(name: str, waits: list[Awaitable[Any]], stop: asyncio.Event, **extra: Any) -> None:
    """Log "ready" once every part is ready (the consumer has its partitions): what tests and operators wait for."""
    await until_stopped(asyncio.gather(*waits), stop)
    if not stop.is_set():
        log.info("ready", extra={"worker": name, **extra})


async def check(settings: Settings) -> None:
    """Raise ConfigurationError unless the database and the broker both answer (in parallel, bounded)."""

    async def database() -> None:
        database = await resolve_database(settings)
        await check_connection(database.engine)
        if database.pooled:
            await check_connection(database.session)

    async with asyncio.timeout(CHECK_TIMEOUT_S):
        await asyncio.gather(database(), check_broker(settings))


Serve = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]


def run_worker(name: str, serve: Serve, *, check_only: bool) -> None:
    """The process edge: settings, signals, one-line errors and exit codes (0 ok, 1 check failed, 2 misconfigured)."""
    configure_logging(log_level())
    try:
        settings = load_settings(name)
    except ConfigurationError as exc:
        exit_with_error(str(exc))

    if check_only:
        try:
            asyncio.run(check(settings))
        except (ConfigurationError, TimeoutError) as exc:
            exit_with_error(f"check failed: {exc}" if str(exc) else "check failed: no answer in time", code=1)
        click.echo(f"{name}: database and Kafka broker reachable", err=True)
        return

    async def main(stop: asyncio.Event) -> None:
        with MetricsPort(settings.metrics_port):
            await serve(settings, stop)

    try:
        run_until_signalled(main, watchdog_ms=settings.loop_watchdog_ms)
    except ConfigurationError as exc:
        exit_with_error(str(exc))
    except Exception:  # the process edge: an unexpected failure is logged with its traceback, exit 1
        log.exception("worker crashed", extra={"worker": name})
        raise SystemExit(1) from None
    log.info("stopped", extra={"worker": name})


def worker_command(name: str, summary: str, serve: Serve) -> click.Command:
    @click.command(name=name, help=summary, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name=name)
    @click.option(
        "--check",
        "check_only",
        is_flag=True,
        help="Health check (e.g. a Kubernetes exec probe): exit 0 when the database and the Kafka broker answer, "
        "1 when one does not, 2 when misconfigured. Starts nothing.",
    )
    def command(check_only: bool) -> None:
        run_worker(name, serve, check_only=check_only)

    return command
