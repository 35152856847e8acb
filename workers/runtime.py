"""What both worker binaries share: the command line, the database, the supervisor of their parts, `--check`.

A worker runs a few long-lived parts side by side (its consumer loop, the outbox relay for the events it writes,
and for the notifier the reminder scheduler). They share one `stop` event: SIGTERM/SIGINT sets it, and so does a part
that fails, so the process never keeps running half-alive. Each part drains on `stop`; whatever has not finished
after SHUTDOWN_DEADLINE_S is cancelled, which keeps the exit inside the 30 s a SIGTERM allows (CONTRACT §1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

import click
import pydantic
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo import __version__
from mcp_todo.cli import configure_logging
from mcp_todo.db.engine import check_connection, create_engine, resolve_dsn
from mcp_todo.db.migrate import require_current_schema
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.kafka import check_broker
from mcp_todo.settings import Settings, get_settings

log = logging.getLogger("workers")

CONFIG_EXIT_CODE: Final = 2
SHUTDOWN_DEADLINE_S: Final = 25.0
CHECK_TIMEOUT_S: Final = 12.0  # under the 15 s probe timeout of k8s/workers.yaml


@dataclass
class Database:
    dsn: str
    engine: AsyncEngine


def load_settings(name: str) -> Settings:
    """The settings, or a one-line ConfigurationError; a worker without Kafka has nothing to do."""
    try:
        settings = get_settings()
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or 'settings'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration — {problems}") from None
    if settings.local_mode:
        raise ConfigurationError(
            f"{name} needs KAFKA_BOOTSTRAP_SERVERS; without Kafka (local mode) its work runs inside the server "
            "(`mcp-todo`), so there is nothing to start"
        )
    return settings


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, pool_size: int = 5) -> AsyncIterator[Database]:
    """DATABASE_URL (or the embedded server), reachable and at this version's schema."""
    dsn, _embedded = await resolve_dsn(settings)
    await check_connection(dsn)
    engine = create_engine(dsn, pool_size=pool_size)
    try:
        await require_current_schema(engine)
        yield Database(dsn, engine)
    finally:
        await engine.dispose()


async def supervise(parts: dict[str, Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
    """Run the parts until `stop`; the first one to fail stops the others and its error is raised after they drain."""
    tasks: dict[asyncio.Future[Any], str] = {asyncio.create_task(coro, name=name): name for name, coro in parts.items()}
    stopping: asyncio.Future[Any] = asyncio.create_task(stop.wait())
    failure: BaseException | None = None
    try:
        pending = set(tasks)
        while pending and failure is None and not stop.is_set():
            done, pending = await asyncio.wait(pending | {stopping}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopping)
            for task in done:
                if task is not stopping and not task.cancelled() and task.exception() is not None:
                    failure = task.exception()
                    log.error("worker part failed", extra={"part": tasks[task]})
        stop.set()
        pending = {task for task in tasks if not task.done()}
        if pending:
            _, late = await asyncio.wait(pending, timeout=SHUTDOWN_DEADLINE_S)
            if late:
                log.error("did not drain in time; cancelling", extra={"parts": sorted(tasks[t] for t in late)})
        for task in tasks:
            if failure is None and task.done() and not task.cancelled() and task.exception() is not None:
                failure = task.exception()
    finally:
        unfinished = [task for task in (*tasks, stopping) if not task.done()]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
    if failure is not None:
        raise failure


async def announce_ready(name: str, waits: list[Awaitable[Any]], stop: asyncio.Event, **extra: Any) -> None:
    """Log "ready" once every part is ready (the consumer has its partitions): what tests and operators wait for."""
    gathered: asyncio.Future[Any] = asyncio.gather(*waits)
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([gathered, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not gathered.done():
            gathered.cancel()
        await asyncio.gather(gathered, stopping, return_exceptions=True)
    if not stop.is_set():
        log.info("ready", extra={"worker": name, **extra})


async def check(settings: Settings) -> None:
    """Raise ConfigurationError unless the database and the broker both answer (in parallel, bounded)."""

    async def database() -> None:
        dsn, _embedded = await resolve_dsn(settings)
        await check_connection(dsn)

    async with asyncio.timeout(CHECK_TIMEOUT_S):
        await asyncio.gather(database(), check_broker(settings))


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("stop requested", extra={"signal": sig.name})
    stop.set()


def _fail(message: str, code: int = CONFIG_EXIT_CODE) -> None:
    click.echo(f"Error: {message.splitlines()[0] if message else 'unknown error'}", err=True)
    raise SystemExit(code)


Serve = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]


def run_worker(name: str, serve: Serve, *, check_only: bool) -> None:
    """The process edge: settings, signals, one-line errors and exit codes (0 ok, 1 check failed, 2 misconfigured)."""
    configure_logging()
    try:
        settings = load_settings(name)
    except ConfigurationError as exc:
        _fail(str(exc))
        return

    if check_only:
        try:
            asyncio.run(check(settings))
        except (ConfigurationError, TimeoutError) as exc:
            _fail(f"check failed: {exc}" if str(exc) else "check failed: no answer in time", code=1)
        click.echo(f"{name}: database and Kafka broker reachable", err=True)
        return

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, stop, sig)
        await serve(settings, stop)

    try:
        asyncio.run(main())
    except ConfigurationError as exc:
        _fail(str(exc))
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
