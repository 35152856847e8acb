"""Chaos soak: the whole Kafka-mode pipeline under load while processes die, the broker link drops and the database
restarts; then a quiet drain and the checks that nothing was lost, duplicated or answered wrongly.

    .venv/bin/python -m bench.chaos --duration 600     # from the repository root; --duration 60 in CI

Everything runs on loopback and is started here, from this checkout's virtualenv: an embedded PostgreSQL of the
soak's own (never TEST_DATABASE_URL's server, since it is stopped once mid-run), the tansu broker behind a TCP proxy
that the soak cuts (tansu advertises the proxy's address, so every Kafka client goes through it), two
`mcp-todo serve --transport streamable-http` servers with bearer tokens (each runs its outbox relay), two
`mcp-todo-recurrer` and two `mcp-todo-notifier`.

- Load: USERS users, SESSIONS_PER_USER loops each, through the official MCP client over streamable HTTP with the
  user's token: add tasks (one-off, `FREQ=DAILY`, `FREQ=WEEKLY`, `FREQ=DAILY;COUNT=3`, due in 30-90 s with reminder
  leads of 0-1 minutes or the default hour, so reminders come due during the run), complete recurring ones and
  their successors, update, list, search, delete, and probe another user's ids. A call is ok, a clean
  `UNAVAILABLE` (a tool result, or HTTP 503 from the edge), a transport error while its server was down ("server
  down", retried on a new session), or a failure (any other error, an HTTP 500 included); an answer that is wrong
  (another user's task, a task just added and not listed or not found by search, a field not as asked, another
  user's id not NOT_FOUND) is counted apart. Both must be 0.
- Chaos, from a seeded RNG (the seed is in the report): every few seconds SIGKILL a random one of the six
  processes and restart it, or cut the broker link for 1-10 s; once, stop PostgreSQL for 5-10 s and start it again.
  A process that exits on its own is restarted as well (once the database is back) and reported.
- Quiet drain: the load and the chaos stop, the link and every process are back; wait (bounded) until nothing new is
  coming due (no unsent reminder due within QUIET_HORIZON_S: the soak's reminders come due up to LAST_DUE_AFTER_END_S
  after the load stops, and each writes a `reminder.due` to the outbox when it does), the outbox is published, every
  completion has its successor and every due reminder its inbox row; and all of that still holds, with no new outbox
  row, a moment later. Checking before then races the rows still being written.
- Checks: calls; one successor per completed recurring occurrence, none past a COUNT; one inbox row per fired
  reminder, and every reminder that came due fired; the outbox published with nothing parked; every event on its
  topics, in per-task order.

Prints a Markdown report, writes bench/results/chaos.md (BENCH_OUTPUT_DIR), exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from bench.common import write_report
from mcp_todo.auth import create_token
from mcp_todo.domain.recurrence import next_occurrence, next_occurrences
from mcp_todo.domain.reminder_times import is_due_for_delivery
from mcp_todo.events import TOPIC_RECURRENCE, TOPIC_REMINDERS, TOPIC_TASK_EVENTS
from mcp_todo.pipeline.kafka import dlq_topic
from tests.support.broker import BrokerProcess, TcpProxy, broker_settings, free_port, read_to_end
from tests.support.database import DatabaseFactory, EmbeddedPostgres
from tests.support.polling import eventually
from tests.support.pooler import DEFAULT_POOL_SIZE, PgBouncer
from tests.support.processes import BIN, FAST_REJOIN_SESSION_TIMEOUT_MS, WorkerProcess, worker_env

USERS = 5
SESSIONS_PER_USER = 2
CALLS_PER_SESSION = (10, 40)  # a session (one MCP client) makes this many calls, then a new one starts
THINK_S = (0.05, 0.35)  # between one loop's calls
CALL_TIMEOUT_S = 20.0
CHAOS_EVERY_S = (2.0, 5.0)
CUT_S = (1.0, 10.0)
PG_OUTAGE_S = (5.0, 10.0)
SERVER_READY_S = 30.0
# Around a call, the window in which its server being down explains a transport error.
DOWN_SLACK_S = 1.0
# A reminder due at least this long before the drain ended must have fired by then.
REMINDER_GRACE_S = 5.0
# Tasks are due 30-90 s after they are added, but never later than this long after the load ends, so the drain waits
# a bounded time for the last reminders (leads of 0-1 minutes) to come due.
LAST_DUE_AFTER_END_S = 30.0
# The drain is over only when no unsent reminder is due within this long: nothing the checks read is still to come.
# (The soak's other reminders belong to successors, due a day or more later.)
QUIET_HORIZON_S = 60.0
# Settled twice this far apart, with no outbox row written between: nothing was in flight at the first look.
SETTLED_TWICE_S = 2.0
# A reminder's delivery drops it when its task is no longer pending. Completed within this long of the reminder
# coming due, that is the race of a delivery slowed by the chaos (an outage, a rejoin); completed later, the
# reminder had time enough and was lost.
DROPPED_WITHIN_S = 60.0
ZONES = ("Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "UTC")
TOPICS = (TOPIC_TASK_EVENTS, TOPIC_RECURRENCE, TOPIC_REMINDERS)
TOOL_TIMEOUT_FAILURE = "no answer within the call timeout"
# The one-line errors of a process that exits 2 because the broker or the database did not answer at start-up.
REFUSED_TO_START = ("cannot reach the Kafka broker", "cannot reach the database")


def utc_now() -> datetime:
    return datetime.now(UTC)


# The pipeline


@dataclass
class Slot:
    """One of the six chaos targets: a process kind, restarted whenever it dies, each incarnation a WorkerProcess."""

    name: str
    binary: str
    args: tuple[str, ...]
    env: dict[str, str]
    port: int | None = None  # a server's
    proc: WorkerProcess | None = None
    kills: int = 0
    starts: int = 0
    kill_requested: bool = False
    unexpected_exits: list[str] = field(default_factory=list)
    refused_starts: Counter[str] = field(default_factory=Counter)
    down_since: float | None = 0.0  # monotonic; None while it serves
    down_windows: list[tuple[float, float]] = field(default_factory=list)
    incarnations: list[WorkerProcess] = field(default_factory=list)

    @property
    def is_server(self) -> bool:
        return self.port is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def was_down(self, start: float, end: float) -> bool:
        if self.down_since is not None and self.down_since <= end + DOWN_SLACK_S:
            return True
        return any(a <= end + DOWN_SLACK_S and b >= start - DOWN_SLACK_S for a, b in self.down_windows)

    def mark_down(self) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()

    def mark_up(self) -> None:
        if self.down_since is not None:
            self.down_windows.append((self.down_since, time.monotonic()))
            self.down_since = None


class Pipeline:
    """Everything the soak runs, and the supervisors that restart what dies."""

    def __init__(
        self,
        workdir: Path,
        rng: random.Random,
        *,
        pooler: bool = False,
        pool_size: int = DEFAULT_POOL_SIZE,
        workers: Sequence[tuple[str, int]] = (("recurrer", 2), ("notifier", 2)),
        server_dsn: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.use_pooler = pooler
        self.pool_size = pool_size
        self.workers = tuple(workers)  # (kind, replicas): mcp-todo-<kind> processes
        # A server to make the database on, which is never stopped; else an embedded one of the pipeline's own.
        self.server_dsn = server_dsn
        self.databases: DatabaseFactory | None = None
        self.pooler: PgBouncer | None = None
        self.pooler_peak = {"clients": 0, "servers": 0}
        self.rng = rng
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.postgres: EmbeddedPostgres | None = None
        self.proxy_port = free_port()
        self.broker = BrokerProcess(advertised_port=self.proxy_port)
        self.proxy = TcpProxy(self.broker.port, port=self.proxy_port)
        self.kafka = broker_settings(self.proxy.bootstrap)
        self.dsn = ""
        self.slots: list[Slot] = []
        self.tokens: dict[str, str] = {}
        self.pg_up = asyncio.Event()
        self.pg_down_windows: list[tuple[float, float]] = []
        self.pg_down_since: float | None = None
        self.cuts: list[float] = []
        self.closing = False
        self._supervisors: list[asyncio.Task[None]] = []

    # start-up

    async def start(self, users: Sequence[str]) -> None:
        server_dsn = self.server_dsn
        if server_dsn is None:
            self.postgres = await asyncio.to_thread(EmbeddedPostgres, self.workdir)
            server_dsn = self.postgres.dsn
        self.pg_up.set()
        self.databases = DatabaseFactory(server_dsn, prefix="mcp_todo_chaos")
        self.dsn = await self.databases.create(migrated=False)
        if self.use_pooler:
            self.pooler = await asyncio.to_thread(lambda: PgBouncer(self.dsn, pool_size=self.pool_size).start())
        await self.proxy.start()
        await self.broker.start()
        env = self.base_env()
        await self.cli(env, "migrate")
        await self.cli(env, "topics", "create")
        conn = await asyncpg.connect(self.dsn)
        try:
            self.tokens = {u: (await create_token(conn, u, timedelta(days=1)))[1] for u in users}
        finally:
            await conn.close()
        for i in (1, 2):
            port = free_port()
            args = ("serve", "--transport", "streamable-http", "--host", "127.0.0.1", "--port", str(port))
            self.slots.append(Slot(f"server-{i}", "mcp-todo", args, env, port=port))
        for kind, replicas in self.workers:
            for i in range(1, replicas + 1):
                self.slots.append(Slot(f"{kind}-{i}", f"mcp-todo-{kind}", (), env))
        await asyncio.gather(*(self.launch(slot) for slot in self.slots))
        self._supervisors = [asyncio.create_task(self.supervise(slot)) for slot in self.slots]
        await self.wait_all_ready(90.0)

    def base_env(self) -> dict[str, str]:
        pooled = {} if self.pooler is None else {"DATABASE_URL": self.pooler.pooled(self.dsn)}
        direct = {} if self.pooler is None else {"MCP_TODO_DIRECT_DATABASE_URL": self.dsn}
        return worker_env(
            self.dsn,
            self.kafka,
            session_timeout_ms=FAST_REJOIN_SESSION_TIMEOUT_MS,
            MCP_TODO_TIMEZONE="UTC",
            MCP_TODO_USER="chaos",
            MCP_TODO_NOTIFY_URLS="",
            **pooled,
            **direct,
        )

    async def sample_pooler(self) -> None:
        """The most clients and server connections the pooler held at once (its POOLS, twice a second)."""
        assert self.pooler is not None
        while not self.closing:
            with contextlib.suppress(Exception):
                pools = [p for p in await asyncio.to_thread(self.pooler.show, "POOLS") if p["database"] != "pgbouncer"]
                clients = sum(int(p["cl_active"]) + int(p["cl_waiting"]) for p in pools)
                servers = sum(int(p[k]) for p in pools for k in ("sv_active", "sv_idle", "sv_used", "sv_tested"))
                self.pooler_peak["clients"] = max(self.pooler_peak["clients"], clients)
                self.pooler_peak["servers"] = max(self.pooler_peak["servers"], servers)
            await asyncio.sleep(0.5)

    async def cli(self, env: dict[str, str], *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "mcp-todo"),
            *args,
            env=env,
            cwd=self.logs,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"mcp-todo {' '.join(args[:2])} exited {proc.returncode}: {err.decode()[-1500:]}")
        return out.decode()

    async def launch(self, slot: Slot) -> None:
        proc = WorkerProcess(slot.binary, slot.env, self.logs, args=slot.args, own_group=True)
        slot.proc = proc
        slot.incarnations.append(proc)
        slot.starts += 1
        await proc.start()
        if slot.is_server:
            with contextlib.suppress(AssertionError):
                await self.wait_server(slot, SERVER_READY_S)

    async def wait_server(self, slot: Slot, timeout_s: float) -> None:
        async with httpx.AsyncClient() as http:

            async def healthy() -> bool:
                if slot.proc is None or not slot.proc.running:
                    raise AssertionError(f"{slot.name} exited")
                try:
                    return (await http.get(f"http://127.0.0.1:{slot.port}/healthz", timeout=1)).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, timeout_s, f"{slot.name} is healthy", interval_s=0.1)
        slot.mark_up()

    async def supervise(self, slot: Slot) -> None:
        """Restart the slot's process whenever it exits (after the database is back); note exits nobody asked for."""
        while not self.closing:
            proc = slot.proc
            assert proc is not None and proc.proc is not None
            code = await proc.proc.wait()
            slot.mark_down()
            if self.closing:
                return
            if slot.kill_requested:
                slot.kill_requested = False
            else:
                last = [line for line in proc.lines if line.strip()][-3:]
                error = last[-1] if last and last[-1].startswith("Error: ") else ""
                if code == 2 and error and any(cause in error for cause in REFUSED_TO_START):
                    # The contract: an unreachable broker or database at start-up is exit 2 with one line.
                    slot.refused_starts[error.split(":", 1)[1].split(" at ")[0].strip()] += 1
                else:
                    what = " | ".join(last)[-600:]
                    slot.unexpected_exits.append(f"exit {code} at +{self.elapsed():.0f} s: {what}")
                await asyncio.sleep(1.0)  # a restart loop must not spin
            await self.pg_up.wait()
            if self.closing:
                return
            await self.launch(slot)

    started_at = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    async def wait_all_ready(self, timeout_s: float) -> None:
        """Every slot running, each server healthy, each worker's current incarnation ready (has its partitions)."""

        async def ready() -> bool:
            for slot in self.slots:
                if slot.proc is None or not slot.proc.running:
                    return False
                if slot.is_server and slot.down_since is not None:
                    return False
                if not slot.is_server and not any(" msg=ready " in f"{line} " for line in slot.proc.lines):
                    return False
            return True

        try:
            await eventually(ready, timeout_s, "every process is up and ready", interval_s=0.2)
        except AssertionError as exc:
            tails = "\n".join(f"--- {s.name}\n{s.proc.tail(8) if s.proc else '(none)'}" for s in self.slots)
            raise AssertionError(f"{exc}\n{tails}") from None

    # chaos

    async def kill(self, slot: Slot) -> None:
        if slot.proc is None or not slot.proc.running:
            return
        slot.kill_requested = True
        slot.kills += 1
        slot.mark_down()
        slot.proc.kill()

    async def cut(self, seconds: float) -> None:
        self.cuts.append(seconds)
        await self.proxy.cut()
        try:
            await asyncio.sleep(seconds)
        finally:
            await self.proxy.restore()

    def database_was_down(self, start: float, end: float) -> bool:
        if self.pg_down_since is not None and self.pg_down_since <= end + DOWN_SLACK_S:
            return True
        return any(a <= end + DOWN_SLACK_S and b >= start - DOWN_SLACK_S for a, b in self.pg_down_windows)

    async def database_outage(self, seconds: float) -> None:
        assert self.postgres is not None
        self.pg_up.clear()
        self.pg_down_since = time.monotonic()
        try:
            await asyncio.to_thread(self.postgres.stop)
            await asyncio.sleep(seconds)
        finally:
            await asyncio.to_thread(self.postgres.start)
            self.pg_down_windows.append((self.pg_down_since, time.monotonic()))
            self.pg_down_since = None
            self.pg_up.set()

    # shutdown

    async def close(self) -> None:
        self.closing = True
        for task in self._supervisors:
            task.cancel()
        for slot in self.slots:
            for proc in slot.incarnations:
                with contextlib.suppress(Exception):
                    await proc.close()
        with contextlib.suppress(Exception):
            await self.proxy.close()
        with contextlib.suppress(Exception):
            self.broker.close()
        if self.pooler is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.pooler.close)
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.postgres.close)
        elif self.databases is not None:
            with contextlib.suppress(Exception):
                await self.databases.drop_all()


async def chaos(pipeline: Pipeline, rng: random.Random, until: float, pg_at: float, log: list[str]) -> None:
    """Until `until` (monotonic): a kill or a cut every few seconds, and the one database outage at `pg_at`."""
    cutting: asyncio.Task[None] | None = None
    pg_done = False
    try:
        while True:
            await asyncio.sleep(rng.uniform(*CHAOS_EVERY_S))
            now = time.monotonic()
            if now >= until:
                return
            at = f"+{pipeline.elapsed():.0f} s"
            if not pg_done and now >= pg_at:
                pg_done = True
                seconds = rng.uniform(*PG_OUTAGE_S)
                log.append(f"{at} PostgreSQL stopped for {seconds:.1f} s")
                await pipeline.database_outage(seconds)
                continue
            if rng.random() < 0.7 or (cutting is not None and not cutting.done()):
                slot = rng.choice(pipeline.slots)
                log.append(f"{at} kill -9 {slot.name}")
                await pipeline.kill(slot)
            else:
                seconds = rng.uniform(*CUT_S)
                log.append(f"{at} broker link cut for {seconds:.1f} s")
                cutting = asyncio.create_task(pipeline.cut(seconds))
    finally:
        if cutting is not None:
            await cutting


# The load


@dataclass
class Mine:
    """A task a loop made (or found: a successor of one of its series), and what it knows of it."""

    id: int
    title: str
    word: str
    rule: str | None
    pending: bool = True


@dataclass
class Stats:
    outcomes: Counter[str] = field(default_factory=Counter)  # ok / unavailable / server_down / failed / wrong
    by_tool: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    completed_recurring: int = 0

    def record(self, tool: str, outcome: str, detail: str = "") -> None:
        self.outcomes[outcome] += 1
        self.by_tool[tool][outcome] += 1
        if detail:
            self.examples[outcome][f"{tool}: {detail}"[:300]] += 1

    def top(self, outcome: str, n: int = 8) -> list[str]:
        return [f"{text} (×{count})" for text, count in self.examples[outcome].most_common(n)]


class WrongAnswer(Exception):
    pass


class SessionBroken(Exception):
    """The session's transport failed; the loop opens a new one (on a server picked again)."""


def first_text(result: CallToolResult) -> str:
    block = result.content[0] if result.content else None
    return block.text if isinstance(block, TextContent) else ""


def describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return " / ".join(describe(inner) for inner in exc.exceptions[:3])
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


class UserLoop:
    def __init__(
        self,
        pipeline: Pipeline,
        stats: Stats,
        user: str,
        index: int,
        rng: random.Random,
        registry: dict[str, list[int]],
    ) -> None:
        self.pipeline = pipeline
        self.stats = stats
        self.user = user
        self.prefix = f"{user}/{index}"
        self.rng = rng
        self.registry = registry
        self.mine: dict[int, Mine] = {}
        self.serial = 0
        self.server: Slot | None = None
        self.statuses: list[int] = []  # the HTTP statuses of the current call's requests
        self.last_due = utc_now() + timedelta(days=1)  # set by run(): no task of the load is due after it

    async def run(self, until: float) -> None:
        self.last_due = utc_now() + timedelta(seconds=until - time.monotonic() + LAST_DUE_AFTER_END_S)
        servers = [slot for slot in self.pipeline.slots if slot.is_server]
        while time.monotonic() < until:
            up = [s for s in servers if s.down_since is None] or servers
            self.server = self.rng.choice(up)
            try:
                await self.session(self.server, until)
            except SessionBroken:
                await asyncio.sleep(self.rng.uniform(0.1, 0.5))

    @contextlib.asynccontextmanager
    async def client(self, server: Slot) -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {self.pipeline.tokens[self.user]}"}

        async def on_response(response: httpx2.Response) -> None:
            self.statuses.append(response.status_code)

        hooks = {"response": [on_response]}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=CALL_TIMEOUT_S, event_hooks=hooks) as http,
            Client(streamable_http_client(server.url, http_client=http)) as client,
        ):
            yield client

    async def session(self, server: Slot, until: float) -> None:
        started = time.monotonic()
        self.statuses = []
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S * 40), self.client(server) as client:
                for _ in range(self.rng.randint(*CALLS_PER_SESSION)):
                    if time.monotonic() >= until:
                        return
                    await self.one_call(client)
                    await asyncio.sleep(self.rng.uniform(*THINK_S))
        except SessionBroken:
            raise
        except ExceptionGroup as group:
            # A call's SessionBroken (already recorded) comes out of the client's task group wrapped.
            if group.subgroup(SessionBroken) is not None:
                raise SessionBroken from None
            self.classify_exception("session", group, started, server)
            raise SessionBroken from None
        except Exception as exc:  # the soak's edge: opening or closing the session failed, classified as a call
            self.classify_exception("session", exc, started, server)
            raise SessionBroken from None

    def classify_exception(self, tool: str, exc: BaseException, started: float, server: Slot) -> None:
        """A failed request: the server was down (retried), a clean 503 (the HTTP form of UNAVAILABLE), or a failure."""
        ended = time.monotonic()
        errors = [status for status in self.statuses if status >= 400]
        if server.was_down(started, ended):
            self.stats.record(tool, "server_down")
        elif errors and errors[-1] == HTTPStatus.SERVICE_UNAVAILABLE:
            self.stats.record(tool, "unavailable")
        elif errors:
            during = " while the database was down" if self.pipeline.database_was_down(started, ended) else ""
            self.stats.record(tool, "failed", f"HTTP {errors[-1]}{during}: {describe(exc)}")
        elif self.pipeline.database_was_down(started, ended):
            self.stats.record(tool, "failed", f"while the database was down: {describe(exc)}")
        elif isinstance(exc, TimeoutError):
            self.stats.record(tool, "failed", TOOL_TIMEOUT_FAILURE)
        else:
            self.stats.record(tool, "failed", describe(exc))

    async def call(self, client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | str:
        """The structured result, or the error text of an error result; SessionBroken after a transport failure
        (recorded). Records ok / unavailable / failed here; the caller records wrong answers."""
        assert self.server is not None
        started = time.monotonic()
        self.statuses = []
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                result = await client.call_tool(tool, arguments)
        except Exception as exc:  # the soak's edge: any transport failure ends the session; classified, never lost
            self.classify_exception(tool, exc, started, self.server)
            raise SessionBroken from None
        if result.is_error:
            text = first_text(result)
            if text.startswith("UNAVAILABLE"):
                self.stats.record(tool, "unavailable")
            return text
        if result.structured_content is None:
            self.stats.record(tool, "wrong", "no structured content")
            return ""
        structured: dict[str, Any] = result.structured_content
        return structured

    async def checked(self, client: Client, tool: str, arguments: dict[str, Any], check: Callable[[Any], None]) -> Any:
        """Call, and record ok or what was wrong with the answer; None when it was not a usable answer."""
        answer = await self.call(client, tool, arguments)
        if isinstance(answer, str):
            if answer and not answer.startswith("UNAVAILABLE"):
                self.stats.record(tool, "failed", f"error result: {answer[:200]}")
            return None
        try:
            check(answer)
        except (WrongAnswer, KeyError, TypeError, ValueError) as exc:
            self.stats.record(tool, "wrong", f"{describe(exc)} in {json.dumps(answer)[:300]}")
            return None
        self.stats.record(tool, "ok")
        return answer

    async def one_call(self, client: Client) -> None:
        pending = [t for t in self.mine.values() if t.pending]
        recurring = [t for t in pending if t.rule]
        one_off = [t for t in pending if not t.rule]
        choice = self.rng.random()
        if choice < 0.30 or not pending:
            await self.add(client)
        elif choice < 0.45 and recurring:
            await self.complete(client, self.rng.choice(recurring))
        elif choice < 0.50 and one_off:
            await self.complete(client, self.rng.choice(one_off))
        elif choice < 0.60:
            await self.update(client, self.rng.choice(pending))
        elif choice < 0.72:
            await self.list(client)
        elif choice < 0.80:
            await self.search(client, self.rng.choice(list(self.mine.values())))
        elif choice < 0.86 and one_off:
            await self.delete(client, self.rng.choice(one_off))
        elif choice < 0.92:
            await self.probe_other_user(client)
        else:
            tool = self.rng.choice(("get_upcoming_tasks", "get_overdue_tasks"))
            await self.checked(client, tool, {"limit": 100}, self.owned_page)

    def owned(self, task: dict[str, Any]) -> None:
        if not str(task["title"]).startswith(f"{self.user}/"):
            raise WrongAnswer(f"another user's task {task['id']} ({task['title']!r}) shown to {self.user}")

    def owned_page(self, page: dict[str, Any]) -> None:
        for task in page.get("tasks", []):
            self.owned(task)

    async def add(self, client: Client) -> None:
        self.serial += 1
        word = f"kw{uuid.uuid4().hex[:10]}"
        kind = self.rng.random()
        arguments: dict[str, Any] = {"priority": self.rng.choice(("low", "medium", "high", "urgent"))}
        rule: str | None = None
        if kind < 0.1:
            title = f"{self.prefix} note {self.serial} {word}"
        else:
            due = min(utc_now() + timedelta(seconds=self.rng.uniform(30, 90)), self.last_due)
            arguments["due_date"] = due.isoformat(timespec="seconds")
            if kind < 0.55:
                title = f"{self.prefix} errand {self.serial} {word}"
            else:
                rule = self.rng.choice(("FREQ=DAILY", "FREQ=DAILY", "FREQ=WEEKLY", "FREQ=DAILY;COUNT=3"))
                arguments["recurrence_rule"] = rule
                title = f"{self.prefix} routine {self.serial} {word}"
            if self.rng.random() < 0.7:
                arguments["remind_before_minutes"] = self.rng.choice((0, 1))
        arguments["title"] = title

        def check(task: dict[str, Any]) -> None:
            self.owned(task)
            if task["title"] != title or task.get("status", "pending") != "pending" or not isinstance(task["id"], int):
                raise WrongAnswer("the added task is not the one asked for")
            if rule is not None and task.get("recurrence_rule") != rule:
                raise WrongAnswer(f"recurrence_rule {task.get('recurrence_rule')!r}, asked {rule!r}")
            if "remind_before_minutes" in arguments:
                due_at = datetime.fromisoformat(task["due_date"])
                expected = due_at - timedelta(minutes=arguments["remind_before_minutes"])
                if datetime.fromisoformat(task["remind_at"]) != expected:
                    raise WrongAnswer(f"remind_at {task['remind_at']}, expected {expected.isoformat()}")

        task = await self.checked(client, "add_task", arguments, check)
        if task is None:
            return
        self.mine[task["id"]] = Mine(task["id"], title, word, rule)
        self.registry[self.user].append(task["id"])
        # Listed at once, for this user (a stateless server: the next request may reach the other replica).
        if self.rng.random() < 0.5:

            def listed(page: dict[str, Any]) -> None:
                self.owned_page(page)
                if task["id"] not in {t["id"] for t in page.get("tasks", [])}:
                    raise WrongAnswer(f"task {task['id']} just added is not listed")

            arguments = {"status": "pending", "sort_by": "created_at", "sort_order": "desc", "limit": 100}
            await self.checked(client, "list_tasks", arguments, listed)

    async def complete(self, client: Client, mine: Mine) -> None:
        def check(task: dict[str, Any]) -> None:
            self.owned(task)
            if task["id"] != mine.id or task.get("status") != "completed":
                raise WrongAnswer(f"complete_task({mine.id}) answered task {task['id']} {task.get('status')}")
            if mine.rule and "COUNT" not in mine.rule and not task.get("next_occurrence"):
                raise WrongAnswer(f"an unbounded series ({mine.rule}) has no next occurrence")

        mine.pending = False  # also when the outcome is unknown (transport error): never completed twice on purpose
        done = await self.checked(client, "complete_task", {"task_id": mine.id}, check)
        if done is not None and mine.rule:
            self.stats.completed_recurring += 1

    async def update(self, client: Client, mine: Mine) -> None:
        title = f"{self.prefix} edited {self.serial} {mine.word}"
        priority = self.rng.choice(("low", "medium", "high", "urgent"))

        def check(task: dict[str, Any]) -> None:
            self.owned(task)
            if task["id"] != mine.id or task["title"] != title or task.get("priority", "medium") != priority:
                raise WrongAnswer("update_task answered with other values than asked")

        if await self.checked(client, "update_task", {"task_id": mine.id, "title": title, "priority": priority}, check):
            mine.title = title

    async def list(self, client: Client) -> None:
        """This loop's pending tasks, and the successors of its series (they copy the title) adopted."""
        arguments = {"status": "pending", "sort_by": "created_at", "sort_order": "desc", "limit": 100}
        page = await self.checked(client, "list_tasks", arguments, self.owned_page)
        if page is None:
            return
        for task in page["tasks"]:
            if task["title"].startswith(f"{self.prefix} ") and task["id"] not in self.mine:
                word = task["title"].rsplit(" ", 1)[-1]
                self.mine[task["id"]] = Mine(task["id"], task["title"], word, task.get("recurrence_rule"))

    async def search(self, client: Client, mine: Mine) -> None:
        def check(page: dict[str, Any]) -> None:
            self.owned_page(page)
            if mine.pending and mine.id not in {t["id"] for t in page.get("tasks", [])}:
                raise WrongAnswer(f"search for {mine.word!r} misses task {mine.id}")

        if mine.pending:
            await self.checked(client, "search_tasks", {"query": mine.word, "limit": 100}, check)
        else:
            await self.checked(client, "search_tasks", {"query": mine.word, "limit": 100}, self.owned_page)

    async def delete(self, client: Client, mine: Mine) -> None:
        def check(answer: dict[str, Any]) -> None:
            if answer["deleted_task_id"] != mine.id:
                raise WrongAnswer(f"delete_task({mine.id}) deleted {answer['deleted_task_id']}")

        self.mine.pop(mine.id)
        await self.checked(client, "delete_task", {"task_id": mine.id}, check)

    async def probe_other_user(self, client: Client) -> None:
        """Another user's id must be NOT_FOUND, exactly like a missing one."""
        others = [u for u, ids in self.registry.items() if u != self.user and ids]
        if not others:
            await self.list(client)
            return
        victim = self.rng.choice(self.registry[self.rng.choice(others)])
        answer = await self.call(client, "update_task", {"task_id": victim, "priority": "low"})
        if isinstance(answer, str) and answer.startswith("NOT_FOUND"):
            self.stats.record("update_task (other user's id)", "ok")
        elif isinstance(answer, str) and answer.startswith("UNAVAILABLE"):
            pass  # recorded by call()
        else:
            self.stats.record("update_task (other user's id)", "wrong", f"task {victim}: {str(answer)[:200]}")


# The checks


@dataclass
class Check:
    name: str
    passed: bool
    figures: str
    problems: list[str] = field(default_factory=list)
    gating: bool = True  # False: reported ("noted"), but the soak's verdict does not depend on it


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


@dataclass
class Drain:
    """What the quiet drain waited for, for the report."""

    coming_due: int = 0  # unsent reminders due within QUIET_HORIZON_S when the drain began
    rows_written: int = 0  # outbox rows written after the drain began
    last_outbox_id: int = 0  # the outbox's highest id when the drain began
    settled_at: datetime | None = None  # when the drain found everything settled (twice)
    first_look: tuple[int, int] | None = None  # (outbox max id, monotonic ms) of the last settled look


async def outbox_top(dsn: str) -> int:
    rows = await fetch(dsn, "SELECT coalesce(max(id), 0) AS top FROM outbox")
    return int(rows[0]["top"])


async def coming_due(dsn: str) -> int:
    """Unsent reminders of pending tasks due within QUIET_HORIZON_S (or overdue): each will still write an outbox row
    (a stale one, more than a day past due, is marked sent without one)."""
    rows = await fetch(
        dsn,
        "SELECT count(*) AS n FROM tasks WHERE status = 'pending' AND NOT reminder_sent AND deleted_at IS NULL "
        "AND remind_at <= clock_timestamp() + make_interval(secs => $1)",
        QUIET_HORIZON_S,
    )
    return int(rows[0]["n"])


async def settled(dsn: str, drain: Drain) -> bool:
    """Nothing is coming due, the outbox is published, every completion has its successor and every due reminder its
    one inbox row; and so it was at a look at least SETTLED_TWICE_S earlier, with no outbox row written since."""
    top = await outbox_top(dsn)
    now_ms = int(time.monotonic() * 1000)
    ok = await coming_due(dsn) == 0
    if ok:
        rows = await fetch(dsn, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL AND parked_at IS NULL")
        ok = rows[0]["n"] == 0
    ok = ok and (await check_successors(dsn)).passed and (await check_reminders(dsn, utc_now())).passed
    ok = ok and await outbox_top(dsn) == top  # nothing written while this look ran
    if not ok:
        drain.first_look = None
        return False
    if drain.first_look is None or drain.first_look[0] != top:
        drain.first_look = (top, now_ms)
        return False
    if now_ms - drain.first_look[1] < SETTLED_TWICE_S * 1000:
        return False
    drain.settled_at = utc_now()
    return True


def check_calls(stats: Stats) -> Check:
    made = sum(stats.outcomes.values())
    bad = stats.outcomes["failed"] + stats.outcomes["wrong"]
    figures = (
        f"{made} calls: {stats.outcomes['ok']} ok, {stats.outcomes['unavailable']} clean UNAVAILABLE (or HTTP 503), "
        f"{stats.outcomes['server_down']} server down (retried), {stats.outcomes['failed']} failed, "
        f"{stats.outcomes['wrong']} wrong answers"
    )
    problems = [f"failed: {e}" for e in stats.top("failed")] + [f"wrong: {e}" for e in stats.top("wrong")]
    return Check("calls: only ok, clean UNAVAILABLE or server down", bad == 0 and made > 0, figures, problems)


async def check_successors(dsn: str) -> Check:
    tasks = await fetch(
        dsn,
        "SELECT id, status, due_date, completed_at, recurrence_rule, series_id, series_start, time_zone, "
        "previous_task_id, deleted_at FROM tasks WHERE series_id IS NOT NULL ORDER BY id",
    )
    successors: dict[int, list[asyncpg.Record]] = defaultdict(list)
    series: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for task in tasks:
        if task["previous_task_id"] is not None:
            successors[task["previous_task_id"]].append(task)
        series[task["series_id"]].append(task)
    problems: list[str] = []
    completed = ended = 0
    for task in tasks:
        # A completed occurrence moved to the trash before the recurrer saw it gets no successor, by design.
        if task["status"] != "completed" or task["recurrence_rule"] is None or task["deleted_at"] is not None:
            continue
        completed += 1
        expected = next_occurrence(
            task["recurrence_rule"], task["series_start"], task["time_zone"], task["due_date"], task["completed_at"]
        )
        found = successors.get(task["id"], [])
        if expected is None:
            ended += 1
            if found:
                problems.append(f"task {task['id']}: its series ended, yet {len(found)} successor(s) {found[0]['id']}")
        elif len(found) != 1:
            problems.append(f"task {task['id']} ({task['recurrence_rule']}): {len(found)} successors, expected 1")
        elif found[0]["due_date"] != expected:
            problems.append(f"task {task['id']}: successor due {found[0]['due_date']}, expected {expected}")
    beyond = 0
    for members in series.values():
        rule = members[0]["recurrence_rule"]
        if rule is None or "COUNT=" not in rule:
            continue
        start = members[0]["series_start"]
        allowed = {start, *next_occurrences(rule, start, members[0]["time_zone"], start, limit=1000)}
        extra = [m for m in members if m["due_date"] not in allowed]
        beyond += len(extra)
        problems += [f"task {m['id']}: due {m['due_date']} is past its series' COUNT ({rule})" for m in extra]
    figures = f"{completed} completed recurring occurrences: {completed - ended} with one successor due when it "
    figures += f"should be, {ended} ended their series with none; {beyond} occurrences past a COUNT"
    return Check("recurrence: exactly one successor per completion", not problems, figures, problems[:10])


async def check_reminders(dsn: str, drain_started: datetime) -> Check:
    problems: list[str] = []
    duplicates = await fetch(
        dsn, "SELECT task_id, remind_at, count(*) AS n FROM notifications GROUP BY 1, 2 HAVING count(*) > 1"
    )
    problems += [f"task {r['task_id']}: {r['n']} inbox rows for {r['remind_at']}" for r in duplicates]
    fired = await fetch(
        dsn,
        "SELECT t.id, t.remind_at, t.due_date, t.status, t.completed_at, "
        "greatest(t.remind_at, t.created_at) AS came_due, "
        "(SELECT count(*) FROM notifications n WHERE n.task_id = t.id AND n.remind_at = t.remind_at) AS inbox "
        "FROM tasks t WHERE t.reminder_sent AND t.remind_at IS NOT NULL AND t.deleted_at IS NULL",
    )
    # Sent means delivered: the scheduler marks it in the transaction of its reminder.due, which the notifier turns
    # into one inbox row, unless the task is no longer pending by then ("reminder dropped: task no longer pending").
    # (A stale reminder, past due by more than a day, is marked sent without an event; the soak's tasks are all due
    # within minutes of their creation, so none is stale.)
    dropped: list[float] = []
    for row in fired:
        if row["inbox"] == 1 or not is_due_for_delivery(row["remind_at"], row["due_date"], row["remind_at"]):
            continue
        late_s = (row["completed_at"] - row["came_due"]).total_seconds() if row["completed_at"] else 0.0
        if row["inbox"] == 0 and row["status"] == "completed" and late_s <= DROPPED_WITHIN_S:
            dropped.append(late_s)
        elif row["inbox"] == 0 and row["status"] == "completed":
            problems.append(
                f"task {row['id']}: reminder due {row['came_due']} never reached the inbox, though the task stayed "
                f"pending for {late_s:.0f} s after"
            )
        else:
            problems.append(
                f"task {row['id']} ({row['status']}): reminder_sent, {row['inbox']} inbox rows for {row['remind_at']}"
            )
    # Came due well before the drain, still pending: it must have fired, unless it was stale when it came due.
    cutoff = drain_started - timedelta(seconds=REMINDER_GRACE_S)
    unfired = await fetch(
        dsn,
        "SELECT id, remind_at, due_date FROM tasks WHERE status = 'pending' AND NOT reminder_sent AND remind_at <= $1 "
        "AND deleted_at IS NULL",
        cutoff,
    )
    due_unfired = [r for r in unfired if is_due_for_delivery(r["remind_at"], r["due_date"], cutoff)]
    problems += [f"task {r['id']}: pending, reminder due {r['remind_at']}, never fired" for r in due_unfired]
    inbox = await fetch(dsn, "SELECT count(*) AS n FROM notifications")
    # Inbox rows of tasks deleted since, or whose remind_at moved since, are in the total but match no task row.
    # (Tasks in the trash are left out above: delete_task trashes them, and a trashed task's reminder never fires.)
    latest = max(dropped, default=0.0)
    figures = f"{len(fired)} reminders fired: {len(fired) - len(dropped)} in the inbox, {len(dropped)} dropped as "
    figures += f"their task was completed first (at most {latest:.1f} s after the reminder came due); "
    figures += f"{len(duplicates)} duplicated; {len(due_unfired)} due and never fired; {inbox[0]['n']} inbox rows"
    return Check("reminders: every due reminder in the inbox exactly once", not problems, figures, problems[:10])


async def check_outbox(dsn: str, drain: Drain) -> Check:
    rows = await fetch(
        dsn,
        "SELECT count(*) AS total, count(*) FILTER (WHERE published_at IS NULL) AS unpublished, "
        "count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked, max(attempts) AS max_attempts FROM outbox",
    )
    row = rows[0]
    figures = f"{row['total']} rows: {row['unpublished']} unpublished, {row['parked']} parked; "
    figures += f"{drain.rows_written} written during the drain, which waited for {drain.coming_due} reminders due"
    # Which rows, and how old: rows written after the drain settled mean it did not wait long enough; old rows in one
    # shard (`task_id % 8`, the relay's default) mean no relay published that shard.
    stuck = await fetch(
        dsn,
        "SELECT id, event_type, task_id, created_at, attempts, parked_at IS NOT NULL AS parked, "
        "extract(epoch FROM clock_timestamp() - created_at) AS age_s FROM outbox "
        "WHERE published_at IS NULL ORDER BY id LIMIT 10",
    )
    problems = [
        f"outbox {r['id']} {r['event_type']} task {r['task_id']} (shard {r['task_id'] % 8}): written "
        f"{r['created_at']:%H:%M:%S.%f} ({float(r['age_s']):.1f} s ago, "
        f"{'after' if drain.settled_at and r['created_at'] > drain.settled_at else 'before'} the drain settled), "
        f"attempts {r['attempts']}{', parked' if r['parked'] else ''}"
        for r in stuck
    ]
    return Check(
        "outbox: empty, nothing parked",
        row["unpublished"] == 0 and row["parked"] == 0 and row["total"] > 0,
        figures,
        problems,
    )


async def check_topics(
    dsn: str, pipeline: Pipeline, *, explained: Callable[[asyncpg.Record], bool] | None = None
) -> Check:
    """Every outbox row on each of its topics, each task on one partition in outbox order. Copies of an event (at
    least once) pass; with `explained`, only the copies of rows it explains (say, in flight when a relay was killed)
    do, and any other copy is a problem."""
    rows = await fetch(
        dsn,
        "SELECT id, event_id::text AS event_id, event_type, task_id, topics, created_at, published_at, attempts "
        "FROM outbox ORDER BY id",
    )
    problems: list[str] = []
    expected_total = delivered = duplicates = 0
    copied: set[str] = set()  # event ids seen more than once on a topic
    assert pipeline.broker.running
    read = await asyncio.gather(
        *(read_to_end(pipeline.proxy.bootstrap, pipeline.kafka.topic(topic)) for topic in TOPICS)
    )
    for topic, records in zip(TOPICS, read, strict=True):
        first_seen: dict[str, tuple[int, int]] = {}  # event_id -> (partition, offset) of its first copy
        task_partition: dict[int, set[int]] = defaultdict(set)
        for record in records:
            event = json.loads(record.value)
            if record.key != str(event["task_id"]).encode():
                problems.append(f"{topic}: event {event['event_id']} keyed {record.key!r}, task {event['task_id']}")
            task_partition[event["task_id"]].add(record.partition)
            if event["event_id"] in first_seen:
                duplicates += 1
                copied.add(event["event_id"])
            else:
                first_seen[event["event_id"]] = (record.partition, record.offset)
        expected = [r for r in rows if topic in r["topics"]]
        expected_total += len(expected)
        by_task: dict[int, list[asyncpg.Record]] = defaultdict(list)
        for row in expected:
            if row["event_id"] in first_seen:
                delivered += 1
                by_task[row["task_id"]].append(row)
            else:
                problems.append(
                    f"{topic}: {row['event_type']} {row['event_id']} (outbox {row['id']}, task {row['task_id']}, "
                    f"written {row['created_at']:%H:%M:%S.%f}, marked published {row['published_at']:%H:%M:%S.%f}, "
                    f"attempts {row['attempts']}) is not on the topic"
                )
        for task_id, task_rows in by_task.items():
            if len(task_partition[task_id]) > 1:
                problems.append(f"{topic}: task {task_id} on partitions {sorted(task_partition[task_id])}")
                continue
            offsets = [first_seen[r["event_id"]][1] for r in task_rows]  # in outbox id order
            if offsets != sorted(offsets):
                problems.append(
                    f"{topic}: task {task_id}'s events out of order (outbox ids {[r['id'] for r in task_rows]})"
                )
    figures = f"{expected_total} (event, topic) pairs in the outbox: {delivered} on their topic, "
    figures += f"{expected_total - delivered} lost; {duplicates} redelivered copies (at least once)"
    if explained is not None:
        unexplained = [r for r in rows if r["event_id"] in copied and not explained(r)]
        problems += [
            f"{r['event_type']} {r['event_id']} (outbox {r['id']}, written {r['created_at']:%H:%M:%S.%f}, published "
            f"{r['published_at']:%H:%M:%S.%f}) on its topic more than once, not in flight at a kill"
            for r in unexplained
        ]
        figures += f", {len(copied) - len(unexplained)} of {len(copied)} copied events in flight at a kill"
    return Check("events: every outbox row on its topics, in per-task order", not problems, figures, problems[:10])


async def effect_exists(dsn: str, event: dict[str, Any]) -> bool:
    """A reminder.due's inbox row; a task.completed's successor (or its series ended, or the task is gone)."""
    if event["event_type"] == "reminder.due":
        sql = "SELECT count(*) AS n FROM notifications WHERE task_id = $1 AND remind_at = $2"
        rows = await fetch(dsn, sql, event["task_id"], datetime.fromisoformat(event["data"]["remind_at"]))
        return bool(rows[0]["n"])
    rows = await fetch(
        dsn,
        "SELECT recurrence_rule, series_start, time_zone, due_date, completed_at, "
        "(SELECT count(*) FROM tasks s WHERE s.previous_task_id = t.id) AS successors, deleted_at "
        "FROM tasks t WHERE id = $1",
        event["task_id"],
    )
    if not rows or rows[0]["recurrence_rule"] is None or rows[0]["completed_at"] is None:
        return True
    if rows[0]["deleted_at"] is not None:
        return True  # in the trash: no successor, by design
    row = rows[0]
    expected = next_occurrence(
        row["recurrence_rule"], row["series_start"], row["time_zone"], row["due_date"], row["completed_at"]
    )
    return expected is None or bool(row["successors"])


async def check_dead_letters(pipeline: Pipeline) -> Check:
    """The soak writes no poison event, so anything on a dead-letter topic is an event treated as poison wrongly;
    whether its effect was lost as well (no successor, no inbox row) is said beside it."""
    problems: list[str] = []
    total = lost = 0
    topics = (TOPIC_RECURRENCE, TOPIC_REMINDERS)
    read = await asyncio.gather(
        *(read_to_end(pipeline.proxy.bootstrap, dlq_topic(pipeline.kafka.topic(t))) for t in topics)
    )
    for topic, records in zip(topics, read, strict=True):
        total += len(records)
        errors = Counter(dict(record.headers or ()).get("mcp_todo.error", b"?").decode() for record in records)
        effects_lost = 0
        for record in records:
            event = json.loads(record.value)
            if not await effect_exists(pipeline.dsn, event):
                effects_lost += 1
        lost += effects_lost
        if records:
            problems.append(
                f"{dlq_topic(topic)}: {len(records)} events parked (errors: {dict(errors)}), "
                f"{effects_lost} of them with their effect lost"
            )
    figures = f"{total} events parked on the dead-letter topics, {lost} with their effect lost"
    return Check("dead letters: none (no event of the soak is poison)", total == 0, figures, problems)


def log_figures(pipeline: Pipeline) -> tuple[list[str], dict[str, int]]:
    """Unhandled exceptions (an ERROR line with a traceback) per process, and how many lines each kind logged."""
    crashes: list[str] = []
    volume: Counter[str] = Counter()
    for slot in pipeline.slots:
        kind = slot.name.rsplit("-", 1)[0]
        for proc in slot.incarnations:
            first = ""
            count = 0
            for line in proc.lines:
                volume[kind] += 1
                if "Unable connect to node" in line:
                    volume[f"{kind}: aiokafka 'Unable connect to node'"] += 1
                if "level=error" in line and "Traceback" in line:
                    count += 1
                    first = first or line
            if count:
                msg = first.split(" msg=", 1)[-1][:160]
                last = first.replace("\\n", "\n").split("\\n")
                error = next((part for part in reversed(last) if "Error" in part), "")[:200]
                crashes.append(
                    f"{slot.name} ({proc.log_path.name}): {count} ERROR lines with a traceback, first: {msg} … {error}"
                )
    return crashes, dict(volume)


# The run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load and chaos (default 600)")
    parser.add_argument("--seed", type=int, default=None, help="the chaos RNG's seed (default: random, reported)")
    parser.add_argument("--drain", type=float, default=None, help="the quiet drain's deadline in seconds")
    parser.add_argument("--logs", type=Path, default=None, help="copy every process's log into this directory")
    parser.add_argument(
        "--pooler",
        action="store_true",
        help="run every process's DATABASE_URL through PgBouncer in transaction mode (the direct URL for sessions)",
    )
    return parser.parse_args(argv)


async def soak(
    duration_s: float, seed: int, drain_s: float, logs: Path | None, *, pooler: bool = False
) -> tuple[str, bool]:
    rng = random.Random(seed)
    users = [f"user{i}" for i in range(1, USERS + 1)]
    stats = Stats()
    chaos_log: list[str] = []
    checks: list[Check] = []
    timings: dict[str, float] = {}
    log_volume: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="mcp-todo-chaos-") as tmp:
        pipeline = Pipeline(Path(tmp), rng, pooler=pooler)
        sampler: asyncio.Task[None] | None = None
        try:
            t0 = time.monotonic()
            await pipeline.start(users)
            if pipeline.pooler is not None:
                sampler = asyncio.create_task(pipeline.sample_pooler())
            timings["start-up"] = time.monotonic() - t0
            pipeline.started_at = time.monotonic()
            until = pipeline.started_at + duration_s
            pg_at = pipeline.started_at + duration_s * rng.uniform(0.3, 0.6)
            registry: dict[str, list[int]] = {u: [] for u in users}
            loops = [
                UserLoop(pipeline, stats, user, i, random.Random(rng.random()), registry)
                for user in users
                for i in range(1, SESSIONS_PER_USER + 1)
            ]
            await asyncio.gather(chaos(pipeline, rng, until, pg_at, chaos_log), *(loop.run(until) for loop in loops))
            timings["load and chaos"] = time.monotonic() - pipeline.started_at

            drain_start = time.monotonic()
            drain = Drain(coming_due=await coming_due(pipeline.dsn), last_outbox_id=await outbox_top(pipeline.dsn))
            await pipeline.proxy.restore()
            await pipeline.wait_all_ready(90.0)
            with contextlib.suppress(AssertionError):
                await eventually(lambda: settled(pipeline.dsn, drain), drain_s, "drained", interval_s=0.5)
            timings["quiet drain"] = time.monotonic() - drain_start
            drain.rows_written = await outbox_top(pipeline.dsn) - drain.last_outbox_id
            # Unsettled (the deadline passed): the checks say what is missing as of now.
            drain_ended = drain.settled_at or utc_now()

            checks.append(check_calls(stats))
            checks.append(await check_successors(pipeline.dsn))
            checks.append(await check_reminders(pipeline.dsn, drain_ended))
            checks.append(await check_outbox(pipeline.dsn, drain))
            checks.append(await check_topics(pipeline.dsn, pipeline))
            checks.append(await check_dead_letters(pipeline))
            exits = [f"{s.name}: {e}" for s in pipeline.slots for e in s.unexpected_exits]
            crashes, volume = log_figures(pipeline)
            checks.append(
                Check(
                    "processes: no exit nobody asked for",
                    not exits,
                    f"{len(exits)} exits nobody asked for (kills and start-up refusals apart)",
                    exits[:12],
                )
            )
            checks.append(
                Check(
                    "logs: no ERROR line with a traceback",
                    not crashes,
                    f"{len(crashes)} process logs with ERROR lines carrying a traceback",
                    crashes[:12],
                    gating=False,
                )
            )
            log_volume.update(volume)
            if pipeline.pooler is not None:
                peak = pipeline.pooler_peak
                checks.append(
                    Check(
                        "pooler: server connections shared",
                        0 < peak["servers"] < peak["clients"],
                        f"PgBouncer in transaction mode: at most {peak['clients']} clients at once on at most "
                        f"{peak['servers']} server connections",
                    )
                )
            if sampler is not None:
                sampler.cancel()
        except BaseException as exc:  # the report still says what happened
            checks.append(
                Check("the soak ran to its end", False, describe(exc), traceback.format_exc().splitlines()[-12:])
            )
            if isinstance(exc, KeyboardInterrupt):
                raise
        finally:
            await pipeline.close()
            if logs is not None:
                shutil.copytree(pipeline.logs, logs, dirs_exist_ok=True)
        report = render(seed, duration_s, stats, checks, chaos_log, pipeline, timings, log_volume)
    return report, all(check.passed for check in checks if check.gating)


def verdict(check: Check) -> str:
    if check.passed:
        return "pass"
    return "**FAIL**" if check.gating else "noted"


def render(
    seed: int,
    duration_s: float,
    stats: Stats,
    checks: list[Check],
    chaos_log: list[str],
    pipeline: Pipeline,
    timings: dict[str, float],
    log_volume: dict[str, int],
) -> str:
    ok = all(check.passed for check in checks if check.gating)
    pooler_flag = " --pooler" if pipeline.use_pooler else ""
    pooled = " behind PgBouncer in transaction mode (the direct URL for sessions)" if pipeline.use_pooler else ""
    lines = [
        "# Chaos soak",
        "",
        f"`python -m bench.chaos --duration {duration_s:g} --seed {seed}{pooler_flag}` · "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · "
        f"{platform.python_implementation()} {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs · **{'PASS' if ok else 'FAIL'}**",
        "",
        f"Two servers (streamable HTTP, bearer tokens, each with its relay), two recurrers, two notifiers, tansu "
        f"behind a TCP proxy, an embedded PostgreSQL{pooled}; {USERS} users × {SESSIONS_PER_USER} concurrent MCP "
        "sessions. " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ".",
        "",
        "| check | result | figures |",
        "|---|---|---|",
    ]
    lines += [f"| {c.name} | {verdict(c)} | {c.figures} |" for c in checks]
    for check in checks:
        if check.problems:
            lines += ["", f"**{check.name}**:", ""] + [f"- {p}" for p in check.problems]
    kills = {slot.name: slot.kills for slot in pipeline.slots}
    outage = sum(b - a for a, b in pipeline.pg_down_windows)
    lines += [
        "",
        "## Chaos",
        "",
        f"- kill -9: {sum(kills.values())} ({', '.join(f'{k} {v}' for k, v in kills.items())}); "
        f"restarts {sum(s.starts - 1 for s in pipeline.slots)}",
        "- exits 2 at start-up (an unreachable dependency; restarted): "
        + (", ".join(f"{s.name}: {dict(s.refused_starts)}" for s in pipeline.slots if s.refused_starts) or "none"),
        f"- broker link cut {len(pipeline.cuts)} times, {sum(pipeline.cuts):.0f} s in all",
        f"- PostgreSQL stopped {len(pipeline.pg_down_windows)} time(s), {outage:.1f} s down (stop to ready again)",
        "",
        "## Calls by tool",
        "",
        "| tool | ok | UNAVAILABLE | server down | failed | wrong |",
        "|---|---|---|---|---|---|",
    ]
    for tool in sorted(stats.by_tool):
        c = stats.by_tool[tool]
        lines.append(f"| {tool} | {c['ok']} | {c['unavailable']} | {c['server_down']} | {c['failed']} | {c['wrong']} |")
    lines += ["", "## Log lines", "", *[f"- {k}: {v}" for k, v in sorted(log_volume.items())]]
    lines += [
        "",
        "<details><summary>chaos log</summary>",
        "",
        *[f"    {entry}" for entry in chaos_log],
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    # The last reminders come due LAST_DUE_AFTER_END_S after the load; then time to fire, publish and deliver them.
    drain_s = args.drain if args.drain is not None else min(150.0, LAST_DUE_AFTER_END_S + 30.0 + args.duration / 10)
    report, ok = await soak(args.duration, seed, drain_s, args.logs, pooler=args.pooler)
    write_report("chaos", report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
