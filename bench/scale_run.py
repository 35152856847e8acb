"""The load run: two server replicas behind PgBouncer, three workers, many MCP sessions, and one replica and one
worker killed halfway; then the checks that no request a client could not retry failed and no event was lost or
duplicated.

    .venv/bin/python -m bench.scale_run                               # 200 sessions for 60 s; from the repo root
    .venv/bin/python -m bench.scale_run --sessions 20 --duration 10 --rate 0.5   # as CI

Everything runs on loopback and is started here (bench/chaos.py's `Pipeline`): a database on TEST_DATABASE_URL's
server when set (else on an embedded PostgreSQL of the run's own), Debian's PgBouncer in transaction mode in front of
it (`DATABASE_URL`; the relays and LISTEN take `MCP_TODO_DIRECT_DATABASE_URL`), the tansu broker, two
`mcp-todo serve --transport streamable-http` replicas with bearer tokens (each runs its outbox relay), two
`mcp-todo-recurrer` and one `mcp-todo-notifier`.

- Load: `--sessions` sessions, each its own user and token, each pinned to one replica and sending `--rate` calls a
  second (0.1: an agent's tool call every 10 s; raw JSON-RPC POSTs, bench/load.py's `Session`): add tasks (one-off,
  or repeating `FREQ=DAILY`, `FREQ=WEEKLY`, `FREQ=DAILY;COUNT=3`; due within the run, most with a reminder at the
  due time, so reminders fire), complete repeating and one-off ones (and the successors the session finds listed),
  update, list, search, delete, upcoming. An answer showing another user's task, or not what was asked, is a wrong
  answer.
- Halfway, SIGKILL one replica and one recurrer (their process groups); the pipeline restarts them, as a
  Deployment would.
- What a client retries on the other replica: a request refused before it was sent (connection refused) or answered
  503 or UNAVAILABLE; and a request whose connection dropped after it went out while its replica was being killed,
  when the tool is idempotent (every tool here but add_task). An add_task dropped that way is looked up first by
  its unique word (search_tasks) and sent again only when it is not there. Anything else is a failure: a dropped
  connection on a replica that was up, an HTTP 500, a JSON-RPC error, a tool error, a timeout.
- Quiet drain (as the chaos soak's), then the checks: 0 failed requests and 0 wrong answers; every completion of a
  repeating task has exactly one successor; every due reminder exactly one inbox row; the outbox all published,
  nothing parked; every outbox row on its topics, and once only (an event on a topic twice passes only when its row
  was in flight when the relays were killed: written before, published after; the consumers' dedupe absorbs those,
  and the successor and inbox checks prove it); no dead letters; PgBouncer served more clients than it held server
  connections.

Prints a Markdown report (calls/s, p50/p95, connections), writes bench/results/scale_run.md (BENCH_OUTPUT_DIR) and
exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import random
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.chaos import (
    Check,
    Drain,
    Pipeline,
    Slot,
    check_dead_letters,
    check_outbox,
    check_reminders,
    check_successors,
    check_topics,
    coming_due,
    describe,
    fetch,
    outbox_top,
    settled,
    utc_now,
    verdict,
)
from bench.common import percentile, write_report
from bench.load import DroppedRequest, FailedRequest, RetryableError, Session
from tests.support.polling import eventually

WORKERS = (("recurrer", 2), ("notifier", 1))
# PgBouncer's server connections per database and user: every process's pooled connections share these.
POOL_SIZE = 10
MAX_ATTEMPTS = 20
# An MCP client's patience with one call (the official clients wait 60 s and more); no answer by then is a failure.
REQUEST_TIMEOUT_S = 30.0
# Tasks come due between these many seconds after they are added, never later than DUE_AFTER_END_S after the load
# (so the drain has no reminder to wait for).
DUE_IN_S = (5.0, 40.0)
DUE_AFTER_END_S = 0.0
RULES = ("FREQ=DAILY", "FREQ=DAILY", "FREQ=WEEKLY", "FREQ=DAILY;COUNT=3")
# A row written this long after a kill, or published before it, was not in flight when its relay died.
IN_FLIGHT_SLACK_S = 1.0
DROPPED = "dropped"  # request(): the connection dropped after a non-idempotent request went out


@dataclass
class Figures:
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # ok, failed, wrong
    retried: Counter[str] = field(default_factory=Counter)  # why a request was sent again
    by_tool: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    problems: Counter[str] = field(default_factory=Counter)

    def record(self, tool: str, outcome: str, detail: str = "") -> None:
        self.outcomes[outcome] += 1
        self.by_tool[tool][outcome] += 1
        if detail:
            self.problems[f"{outcome}: {tool}: {detail}"[:300]] += 1


@dataclass
class Mine:
    id: int
    word: str
    rule: str | None
    pending: bool = True


class WrongAnswer(Exception):
    pass


def base_url(slot: Slot) -> str:
    return f"http://127.0.0.1:{slot.port}"


class SessionLoop:
    """One MCP session of one user, pinned to a replica until that one refuses it."""

    def __init__(
        self, user: str, token: str, servers: list[Slot], pinned: int, figures: Figures, rng: random.Random
    ) -> None:
        self.user = user
        self.session = Session(token, [])
        self.session.http.timeout = httpx.Timeout(REQUEST_TIMEOUT_S)
        # When each replica last answered this session: a keep-alive connection opened before then may have been
        # the killed process's, though the kill was long before the request went out on it.
        self.last_answer: dict[str, float] = {}
        self.servers = servers
        self.pinned = pinned
        self.figures = figures
        self.rng = rng
        self.ids = itertools.count(1)
        self.mine: dict[int, Mine] = {}
        self.last_due = utc_now()

    async def request(self, tool: str, arguments: dict[str, Any], *, idempotent: bool = True) -> Any:
        """The structured result, or an error result's text; DROPPED (a non-idempotent request whose connection
        dropped while its replica was being killed); None after a failure (recorded)."""
        body = {"jsonrpc": "2.0", "id": next(self.ids), "method": "tools/call"}
        body["params"] = {"name": tool, "arguments": arguments}
        sent = time.perf_counter()
        started = time.monotonic()
        for attempt in range(MAX_ATTEMPTS):
            slot = self.servers[self.pinned]
            try:
                result = await self.session.post(base_url(slot), body)
            except RetryableError as exc:
                self.figures.retried[f"refused ({exc})"] += 1
                self.pinned = (self.pinned + 1) % len(self.servers)
                await asyncio.sleep(0.05 * (attempt // len(self.servers)))
                continue
            except DroppedRequest as exc:
                if not slot.was_down(min(started, self.last_answer.get(slot.name, started)), time.monotonic()):
                    self.figures.record(tool, "failed", f"{slot.name} was up: {exc}")
                    return None
                self.pinned = (self.pinned + 1) % len(self.servers)
                if not idempotent:
                    self.figures.retried["dropped at the kill, looked up"] += 1
                    return DROPPED
                self.figures.retried["dropped at the kill, idempotent"] += 1
                continue
            except FailedRequest as exc:
                self.figures.record(tool, "failed", f"{slot.name}: {exc}")
                return None
            self.last_answer[slot.name] = time.monotonic()
            text = result["content"][0]["text"] if result.get("isError") else None
            if text is not None and text.startswith("UNAVAILABLE"):
                self.figures.retried["UNAVAILABLE"] += 1
                await asyncio.sleep(0.2)
                continue
            self.figures.latencies_ms.append((time.perf_counter() - sent) * 1000)
            return text if text is not None else result.get("structuredContent", {})
        self.figures.record(tool, "failed", f"no replica took it in {MAX_ATTEMPTS} attempts")
        return None

    async def checked(self, tool: str, arguments: dict[str, Any], check: Callable[[Any], None]) -> Any:
        answer = await self.request(tool, arguments)
        if answer is None:
            return None
        try:
            if isinstance(answer, str):
                raise WrongAnswer(f"error result {answer[:200]}")
            check(answer)
        except (WrongAnswer, KeyError, TypeError, ValueError) as exc:
            self.figures.record(tool, "wrong" if not isinstance(answer, str) else "failed", describe(exc))
            return None
        self.figures.record(tool, "ok")
        return answer

    async def run(self, until: float, rate: float) -> None:
        self.last_due = utc_now() + timedelta(seconds=until - time.monotonic() + DUE_AFTER_END_S)
        interval = 1 / rate
        next_send = time.monotonic() + self.rng.uniform(0, interval)
        while True:
            await asyncio.sleep(max(0.0, min(next_send, until) - time.monotonic()))
            next_send = max(next_send + interval, time.monotonic())
            if time.monotonic() >= until:
                return
            await self.one_call()

    async def one_call(self) -> None:
        pending = [t for t in self.mine.values() if t.pending]
        repeating = [t for t in pending if t.rule]
        one_off = [t for t in pending if not t.rule]
        r = self.rng.random()
        if r < 0.30 or not pending:
            await self.add()
        elif r < 0.42 and repeating:
            await self.complete(self.rng.choice(repeating))
        elif r < 0.47 and one_off:
            await self.complete(self.rng.choice(one_off))
        elif r < 0.57:
            await self.update(self.rng.choice(pending))
        elif r < 0.77:
            await self.list()
        elif r < 0.89:
            await self.search(self.rng.choice(list(self.mine.values())))
        elif r < 0.94 and one_off:
            await self.delete(self.rng.choice(one_off))
        else:
            await self.checked("get_upcoming_tasks", {"limit": 50}, self.owned_page)

    def owned_page(self, page: dict[str, Any]) -> None:
        for task in page.get("tasks", []):
            if not str(task["title"]).startswith(f"{self.user} "):
                raise WrongAnswer(f"another user's task {task['id']} ({task['title']!r}) shown to {self.user}")

    async def add(self) -> None:
        word = f"kw{uuid.uuid4().hex[:10]}"
        arguments: dict[str, Any] = {"priority": self.rng.choice(("low", "medium", "high"))}
        rule = self.rng.choice(RULES) if self.rng.random() < 0.35 else None
        if rule is not None or self.rng.random() < 0.8:
            due = min(utc_now() + timedelta(seconds=self.rng.uniform(*DUE_IN_S)), self.last_due)
            arguments["due_date"] = due.isoformat(timespec="seconds")
            if self.rng.random() < 0.7:
                arguments["remind_before_minutes"] = 0
        if rule is not None:
            arguments["recurrence_rule"] = rule
        arguments["title"] = f"{self.user} {'routine' if rule else 'errand'} {word}"
        for _ in range(3):
            answer = await self.request("add_task", arguments, idempotent=False)
            if answer is not DROPPED:
                break
            found = await self.request("search_tasks", {"query": word, "limit": 10})
            if isinstance(found, dict) and found.get("tasks"):
                answer = found["tasks"][0]  # it was added before the connection dropped
                break
        if answer is None or answer is DROPPED:
            if answer is DROPPED:
                self.figures.record("add_task", "failed", "dropped three times")
            return
        if isinstance(answer, str) or answer.get("title") != arguments["title"]:
            self.figures.record("add_task", "wrong", f"answered {str(answer)[:200]}")
            return
        self.figures.record("add_task", "ok")
        self.mine[answer["id"]] = Mine(answer["id"], word, rule)

    async def complete(self, mine: Mine) -> None:
        def check(task: dict[str, Any]) -> None:
            if task["id"] != mine.id or task.get("status") != "completed":
                raise WrongAnswer(f"complete_task({mine.id}) answered task {task['id']} {task.get('status')}")

        mine.pending = False
        await self.checked("complete_task", {"task_id": mine.id}, check)

    async def update(self, mine: Mine) -> None:
        priority = self.rng.choice(("low", "medium", "high", "urgent"))

        def check(task: dict[str, Any]) -> None:
            if task["id"] != mine.id or task.get("priority", "medium") != priority:
                raise WrongAnswer("update_task answered with other values than asked")

        await self.checked("update_task", {"task_id": mine.id, "priority": priority}, check)

    async def list(self) -> None:
        """Pending tasks, newest first; the successors of this session's series (they copy the title) adopted."""
        arguments = {"status": "pending", "sort_by": "created_at", "sort_order": "desc", "limit": 50}
        page = await self.checked("list_tasks", arguments, self.owned_page)
        for task in page["tasks"] if page else []:
            if task["id"] not in self.mine and task.get("recurrence_rule"):
                word = task["title"].rsplit(" ", 1)[-1]
                self.mine[task["id"]] = Mine(task["id"], word, task["recurrence_rule"])

    async def search(self, mine: Mine) -> None:
        def check(page: dict[str, Any]) -> None:
            self.owned_page(page)
            if mine.pending and mine.id not in {t["id"] for t in page.get("tasks", [])}:
                raise WrongAnswer(f"search for {mine.word!r} misses task {mine.id}")

        await self.checked("search_tasks", {"query": mine.word, "limit": 20}, check)

    async def delete(self, mine: Mine) -> None:
        self.mine.pop(mine.id)
        answer = await self.request("delete_task", {"task_id": mine.id})
        if answer is None:
            return
        # A retry after the first attempt's connection dropped finds the task in the trash already: NOT_FOUND.
        deleted = isinstance(answer, dict) and answer.get("deleted_task_id") == mine.id
        if deleted or (isinstance(answer, str) and answer.startswith("NOT_FOUND") and "trash" in answer):
            self.figures.record("delete_task", "ok")
        else:
            self.figures.record("delete_task", "wrong", f"delete_task({mine.id}) answered {str(answer)[:200]}")


@dataclass
class Connections:
    """What the database and the pooler held at a moment of the load."""

    backends: int = 0  # client backends on the run's database (this process's one left out)
    pooler_servers: int = 0
    pooler_clients: int = 0

    @property
    def direct(self) -> int:
        return self.backends - self.pooler_servers


async def connections(pipeline: Pipeline) -> Connections:
    rows = await fetch(
        pipeline.dsn,
        "SELECT count(*) - 1 AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND backend_type = 'client backend'",
    )
    assert pipeline.pooler is not None
    pools = [p for p in await asyncio.to_thread(pipeline.pooler.show, "POOLS") if p["database"] != "pgbouncer"]
    servers = sum(int(p[k]) for p in pools for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
    clients = sum(int(p["cl_active"]) + int(p["cl_waiting"]) for p in pools)
    return Connections(int(rows[0]["n"]), servers, clients)


@dataclass
class Run:
    sessions: int
    duration_s: float
    rate: float
    seed: int
    pool_size: int
    figures: Figures = field(default_factory=Figures)
    checks: list[Check] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    kills: list[str] = field(default_factory=list)
    killed_at: datetime | None = None
    wall_s: float = 0.0
    mid: Connections = field(default_factory=Connections)
    load_before: str = ""
    load_after: str = ""
    database: str = "TEST_DATABASE_URL's PostgreSQL"

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks if check.gating)


def uptime_load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def check_requests(figures: Figures) -> Check:
    made = sum(figures.outcomes.values())
    bad = figures.outcomes["failed"] + figures.outcomes["wrong"]
    retried = ", ".join(f"{n} {why}" for why, n in sorted(figures.retried.items())) or "none"
    text = f"{made} calls: {figures.outcomes['ok']} ok, {figures.outcomes['failed']} failed a client could not "
    text += f"retry, {figures.outcomes['wrong']} wrong answers; retried on the other replica: {retried}"
    problems = [f"{p} (×{n})" for p, n in figures.problems.most_common(10)]
    return Check("requests: none failed that a client could not retry", bad == 0 and made > 0, text, problems)


async def load_run(run: Run, drain_s: float) -> None:
    rng = random.Random(run.seed)
    users = [f"u{i:03d}" for i in range(run.sessions)]
    with tempfile.TemporaryDirectory(prefix="mcp-todo-scale-") as tmp:
        # TEST_DATABASE_URL's server when set (never stopped here), else an embedded one of the run's own.
        server_dsn = os.environ.get("TEST_DATABASE_URL") or None
        if server_dsn is None:
            run.database = "an embedded PostgreSQL of the run's own"
        pipeline = Pipeline(
            Path(tmp), rng, pooler=True, pool_size=run.pool_size, workers=WORKERS, server_dsn=server_dsn
        )
        sampler: asyncio.Task[None] | None = None
        try:
            t0 = time.monotonic()
            await pipeline.start(users)
            sampler = asyncio.create_task(pipeline.sample_pooler())
            run.timings["start-up"] = time.monotonic() - t0
            servers = [slot for slot in pipeline.slots if slot.is_server]
            loops = [
                SessionLoop(u, pipeline.tokens[u], servers, i % len(servers), run.figures, random.Random(rng.random()))
                for i, u in enumerate(users)
            ]
            await asyncio.gather(*(loop.session.initialize(base_url(servers[loop.pinned])) for loop in loops))
            run.load_before = uptime_load()
            pipeline.started_at = time.monotonic()
            until = pipeline.started_at + run.duration_s

            async def kill_halfway() -> None:
                await asyncio.sleep(run.duration_s * 0.45)
                run.mid = await connections(pipeline)
                await asyncio.sleep(max(0.0, pipeline.started_at + run.duration_s / 2 - time.monotonic()))
                run.killed_at = utc_now()
                for name in ("server-1", "recurrer-1"):
                    slot = next(s for s in pipeline.slots if s.name == name)
                    run.kills.append(f"+{pipeline.elapsed():.1f} s kill -9 {name}")
                    await pipeline.kill(slot)

            await asyncio.gather(kill_halfway(), *(loop.run(until, run.rate) for loop in loops))
            run.wall_s = time.monotonic() - pipeline.started_at
            run.load_after = uptime_load()
            for loop in loops:
                await loop.session.close()

            drain_start = time.monotonic()
            drain = Drain(coming_due=await coming_due(pipeline.dsn), last_outbox_id=await outbox_top(pipeline.dsn))
            await pipeline.wait_all_ready(90.0)
            with contextlib.suppress(AssertionError):
                await eventually(lambda: settled(pipeline.dsn, drain), drain_s, "drained", interval_s=0.5)
            run.timings["quiet drain"] = time.monotonic() - drain_start
            drain.rows_written = await outbox_top(pipeline.dsn) - drain.last_outbox_id
            killed_at = run.killed_at
            assert killed_at is not None

            def in_flight(row: asyncpg.Record) -> bool:
                slack = timedelta(seconds=IN_FLIGHT_SLACK_S)
                published = row["published_at"]
                return bool(row["created_at"] <= killed_at + slack and published and published >= killed_at - slack)

            run.checks.append(check_requests(run.figures))
            run.checks.append(await check_successors(pipeline.dsn))
            run.checks.append(await check_reminders(pipeline.dsn, drain.settled_at or utc_now()))
            run.checks.append(await check_outbox(pipeline.dsn, drain))
            run.checks += await asyncio.gather(
                check_topics(pipeline.dsn, pipeline, explained=in_flight), check_dead_letters(pipeline)
            )
            exits = [f"{s.name}: {e}" for s in pipeline.slots for e in s.unexpected_exits]
            run.checks.append(Check("processes: no exit nobody asked for", not exits, f"{len(exits)} exits", exits))
            peak = pipeline.pooler_peak
            run.checks.append(
                Check(
                    "pooler: server connections shared",
                    0 < peak["servers"] < peak["clients"],
                    f"SHOW POOLS, twice a second: at most {peak['clients']} clients at once on at most "
                    f"{peak['servers']} server connections (pool size {run.pool_size})",
                )
            )
        except BaseException as exc:  # the report still says what happened
            problems = traceback.format_exc().splitlines()[-12:]
            run.checks.append(Check("the run ran to its end", False, describe(exc), problems))
            if isinstance(exc, KeyboardInterrupt):
                raise
        finally:
            if sampler is not None:
                sampler.cancel()
            await pipeline.close()


def render(run: Run) -> str:
    f = run.figures
    lat = f.latencies_ms or [0.0]
    answered = len(f.latencies_ms)
    lines = [
        "# Load run: two replicas behind PgBouncer, three workers, a replica and a worker killed halfway",
        "",
        f"`.venv/bin/python -m bench.scale_run --sessions {run.sessions} --duration {run.duration_s:g} "
        f"--rate {run.rate:g} --pool-size {run.pool_size} --seed {run.seed}` · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        f" · {platform.machine()}, {os.cpu_count()} CPUs shared with other work, Python {platform.python_version()}"
        f" · **{'PASS' if run.passed else 'FAIL'}**",
        "",
        f"Load average (1 / 5 / 15 min, `uptime`) {run.load_before} before the load, {run.load_after} after it. "
        f"Everything on loopback: {run.database}, PgBouncer (transaction mode), "
        "tansu, two `mcp-todo serve` "
        "replicas, two recurrers and a notifier; the client is this process (raw JSON-RPC POSTs). "
        + ", ".join(f"{k} {v:.0f} s" for k, v in run.timings.items())
        + ".",
        "",
        "| measure | result |",
        "|---|---|",
        f"| sessions (one user each) × offered rate | {run.sessions} × {run.rate:g} calls/s |",
        f"| tool calls answered; per second | {answered:,}; {answered / max(run.wall_s, 1e-9):.1f} calls/s |",
        f"| latency p50 / p95 / p99 / max (first attempt to answer, retries included) | "
        f"{percentile(lat, 0.5):.1f} / {percentile(lat, 0.95):.1f} / {percentile(lat, 0.99):.1f} / {max(lat):.0f} ms |",
        f"| at {run.duration_s * 0.45:.0f} s: PostgreSQL client backends on the database; of them PgBouncer's "
        f"server connections; direct (relays, LISTEN) | {run.mid.backends}; {run.mid.pooler_servers}; "
        f"{run.mid.direct} |",
        f"| … PgBouncer's clients then (SHOW POOLS cl_active + cl_waiting) | {run.mid.pooler_clients} |",
        f"| kills | {'; '.join(run.kills) or 'none'} |",
        "",
        "| check | result | figures |",
        "|---|---|---|",
        *[f"| {c.name} | {verdict(c)} | {c.figures} |" for c in run.checks],
    ]
    for check in run.checks:
        if check.problems:
            lines += ["", f"**{check.name}**:", "", *[f"- {p}" for p in check.problems]]
    lines += ["", "| tool | ok | failed | wrong |", "|---|---|---|---|"]
    for tool in sorted(f.by_tool):
        c = f.by_tool[tool]
        lines.append(f"| {tool} | {c['ok']} | {c['failed']} | {c['wrong']} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200, help="MCP sessions, one user each (200)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (60); the kills at half")
    parser.add_argument(
        "--rate", type=float, default=0.1, help="calls/s each session offers (0.1: an agent's call every 10 s)"
    )
    parser.add_argument("--pool-size", type=int, default=POOL_SIZE, help=f"PgBouncer's default_pool_size ({POOL_SIZE})")
    parser.add_argument("--seed", type=int, default=None, help="the RNG's seed (default: random, reported)")
    parser.add_argument("--drain", type=float, default=60.0, help="the quiet drain's deadline in seconds (60)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    run = Run(args.sessions, args.duration, args.rate, seed, args.pool_size)
    asyncio.run(load_run(run, args.drain))
    write_report("scale_run", render(run))
    return 0 if run.passed else 1


if __name__ == "__main__":
    sys.exit(main())
