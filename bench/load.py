"""HTTP load: server CPU per tool call against a no-op tool, and 100 sessions on two replicas through a SIGTERM.

    .venv/bin/python -m bench.load                 # from the repo root; TEST_DATABASE_URL's server, else embedded PG
    .venv/bin/python -m bench.load --duration 10   # a shorter replica run
    .venv/bin/python -m bench.load --cpu-only --base-commit <commit>   # (a) only, beside `mcp-todo serve` of <commit>

The client is raw httpx JSON-RPC POSTs to `/mcp` (what the official client sends, without its per-request task
groups and stream plumbing, so the client's CPU on a two-core machine stays small): each session posts `initialize`
and `notifications/initialized` once, then `tools/call` requests on its own keep-alive connection.

(a) Server CPU per call: the same closed-loop load (`--cpu-sessions` sessions, `--cpu-calls` calls per round) against
    - `mcp-todo serve --transport streamable-http` with `mtd_` tokens, add_task and list_tasks alternating;
    - the same with `--insecure-local` (no token): the difference is what checking a token costs; and with it,
      add_task alone and list_tasks alone (each list has 50 tasks), to show where a call's CPU goes;
    - a no-op tool on the same SDK (MCPServer, stateless streamable HTTP, uvicorn configured alike), answering with
      JSON — the baseline the target is stated against — and, for reference, with SSE framing.
    CPU is the server process's utime + stime from /proc before and after each round; the rounds alternate the
    servers, and each figure is the median over `--rounds` rounds, each ratio the median of the rounds' ratios.
(b) Replicas: `--sessions` sessions (each its own user and `mtd_` token), each pinned to one of two `mcp-todo serve`
    processes sharing one database, each sending `--rate` calls per second (add_task / list_tasks alternating; 0: as
    fast as answered) for `--duration` seconds. At a third of the run replica A gets SIGTERM and, once it has exited,
    is started again on the same port. A request refused before it was sent (connection refused) or answered 503 is
    retried on the other replica and counts as retried; anything else (a connection dropped after the request went
    out, a timeout, another status, a JSON-RPC or tool error) is a failure a client could not safely retry.

Prints a Markdown report and writes bench/results/load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import percentile, write_report
from mcp_todo.auth import create_token
from tests.support.broker import free_port
from tests.support.database import DatabaseFactory, PostgresServer
from tests.support.polling import eventually
from tests.support.processes import REPO_ROOT, WorkerProcess, clean_env, pid_cpu_seconds

ACCEPT = "application/json, text/event-stream"
PROTOCOL_VERSION = "2025-11-25"
REQUEST_TIMEOUT_S = 10.0
# uvicorn closes a connection idle for 5 s (its timeout_keep_alive); a client that keeps one idle as long (httpx's
# default) races it, and a request sent as the server closes the connection fails after it went out. Well-behaved
# clients let idle connections go sooner than the server does.
KEEPALIVE_EXPIRY_S = 4.0


# --- the no-op server ---------------------------------------------------------------------------------------------


def serve_noop(port: int, sse: bool) -> None:
    """A no-op tool on the same SDK and uvicorn settings as `mcp-todo serve`: the floor of a tool call's cost."""
    import uvicorn
    from mcp.server.mcpserver import MCPServer
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    server: MCPServer[Any] = MCPServer("noop")

    @server.tool()
    def noop() -> str:
        """Do nothing."""
        return "ok"

    @server.custom_route("/healthz", methods=["GET"])  # type: ignore[untyped-decorator]  # the SDK's is unannotated
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = server.streamable_http_app(stateless_http=True, json_response=not sse, host="127.0.0.1")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    # As `mcp-todo serve` runs it: uvicorn.Server on the event loop the process's runner made.
    asyncio.run(uvicorn.Server(config).serve())


# --- servers as processes -------------------------------------------------------------------------------------------


class Server:
    """One server process on a fixed port (a restart reuses it), its log in `log_dir`."""

    def __init__(self, label: str, args: Sequence[str], env: dict[str, str], log_dir: Path, *, python: bool) -> None:
        self.label = label
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._name = "python" if python else "mcp-todo"
        self._args = [a.replace("{port}", str(self.port)) for a in args]
        self._env = env
        self._log_dir = log_dir
        self.process: WorkerProcess | None = None

    async def start(self) -> None:
        self.process = await WorkerProcess(self._name, self._env, self._log_dir, args=self._args).start()
        async with httpx.AsyncClient() as http:

            async def healthy() -> bool:
                assert self.process is not None and self.process.running, self.process and self.process.tail()
                try:
                    return (await http.get(f"{self.base}/healthz", timeout=1)).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, 60, f"{self.label} is healthy", interval_s=0.05)

    def cpu_seconds(self) -> float:
        assert self.process is not None and self.process.proc is not None
        return pid_cpu_seconds(self.process.proc.pid) or 0.0

    async def close(self) -> None:
        if self.process is not None:
            await self.process.close()


def real_server(label: str, dsn: str, log_dir: Path, *, insecure: bool = False, tree: Path | None = None) -> Server:
    """`mcp-todo serve` over streamable HTTP; with `tree`, the code of that checkout (another commit) instead."""
    args = ["serve", "--transport", "streamable-http", "--host", "127.0.0.1", "--port", "{port}"]
    env = clean_env(DATABASE_URL=dsn, MCP_TODO_USER="load-user-0", MCP_TODO_TIMEZONE="Europe/Berlin")
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return Server(label, [*args, "--insecure-local"] if insecure else args, env, log_dir, python=False)


def noop_server(label: str, log_dir: Path, *, sse: bool) -> Server:
    args = ["-m", "bench.load", "--serve-noop", "{port}", *(["--sse"] if sse else [])]
    env = clean_env(PYTHONPATH=str(REPO_ROOT))
    return Server(label, args, env, log_dir, python=True)


# --- the client ----------------------------------------------------------------------------------------------------


class RetryableError(Exception):
    """The request was refused before the server took it: connection refused, or 503."""


class FailedRequest(Exception):
    """The request may have been taken and then lost, or was answered wrongly: not safe to retry."""


class DroppedRequest(FailedRequest):
    """The connection failed after the request went out: whether the server acted on it is unknown."""


@dataclass
class Session:
    """One MCP session over raw JSON-RPC POSTs on its own keep-alive connection."""

    token: str | None
    tools: list[tuple[str, dict[str, Any]]]
    http: httpx.AsyncClient = field(init=False)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    calls: int = 0

    def __post_init__(self) -> None:
        headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        limits = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S)
        self.http = httpx.AsyncClient(headers=headers, timeout=REQUEST_TIMEOUT_S, limits=limits)

    async def post(self, base: str, body: dict[str, Any]) -> Any:
        try:
            response = await self.http.post(f"{base}/mcp", content=json.dumps(body))
        except httpx.ConnectError as exc:
            raise RetryableError(f"connect: {exc.__class__.__name__}") from None
        except httpx.HTTPError as exc:
            raise DroppedRequest(f"{exc.__class__.__name__} after sending") from None
        if response.status_code == 503:
            raise RetryableError("503")
        if response.status_code not in (200, 202):
            raise FailedRequest(f"HTTP {response.status_code}")
        if response.status_code == 202 or "id" not in body:
            return None
        text = response.text
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
        message = json.loads(text)
        if "error" in message:
            raise FailedRequest(f"JSON-RPC error {message['error'].get('code')}")
        return message["result"]

    async def initialize(self, base: str) -> None:
        params = {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        }
        await self.post(base, {"jsonrpc": "2.0", "id": next(self.ids), "method": "initialize", "params": params})
        self.http.headers["mcp-protocol-version"] = PROTOCOL_VERSION
        await self.post(base, {"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def call(self, base: str) -> None:
        name, arguments = self.tools[self.calls % len(self.tools)]
        self.calls += 1
        body = {
            "jsonrpc": "2.0",
            "id": next(self.ids),
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }
        result = await self.post(base, body)
        if result.get("isError"):
            raise FailedRequest(f"tool error: {result['content'][0]['text'][:80]}")

    async def close(self) -> None:
        await self.http.aclose()


REAL_TOOLS = [("add_task", {"title": "Write the load report", "priority": "high"}), ("list_tasks", {})]
NOOP_TOOLS: list[tuple[str, dict[str, Any]]] = [("noop", {})]


async def closed_loop(sessions: list[Session], base: str, calls: int) -> float:
    """`calls` calls spread over the sessions, each sending its next as soon as answered; returns the wall time."""
    remaining = calls

    async def run(session: Session) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await session.call(base)

    started = time.perf_counter()
    await asyncio.gather(*(run(s) for s in sessions))
    return time.perf_counter() - started


# --- (a) CPU per call ------------------------------------------------------------------------------------------------


@dataclass
class CpuTarget:
    label: str
    server: Server
    sessions: list[Session]
    per_call_ms: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)


async def measure_cpu(targets: list[CpuTarget], calls: int, rounds: int) -> None:
    for target in targets:
        for session in target.sessions:
            await session.initialize(target.server.base)
        # Warm-up, which also gives each user enough tasks that every list_tasks of the rounds lists 50.
        await closed_loop(target.sessions, target.server.base, calls)
    for _ in range(rounds):
        for target in targets:
            before = target.server.cpu_seconds()
            wall_s = await closed_loop(target.sessions, target.server.base, calls)
            target.per_call_ms.append((target.server.cpu_seconds() - before) / calls * 1000)
            target.rates.append(calls / wall_s)


# --- (b) two replicas through a SIGTERM -----------------------------------------------------------------------------


@dataclass
class ReplicaRun:
    latencies_ms: list[float] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)  # perf_counter() of each answer, beside latencies_ms
    sigterm_at: float = 0.0
    back_at: float = 0.0  # replica A answers /healthz again
    retried: int = 0
    failures: list[str] = field(default_factory=list)
    started: float = 0.0
    wall_s: float = 0.0
    sigterm_exit: int | None = None
    sigterm_exit_s: float = 0.0
    restart_s: float = 0.0


async def replica_run(
    servers: list[Server], sessions: list[Session], duration_s: float, rate: float, run: ReplicaRun
) -> None:
    stop_at = time.perf_counter() + duration_s

    async def session_loop(index: int, session: Session) -> None:
        pinned = index % len(servers)
        interval = 1 / rate if rate > 0 else 0.0
        next_send = time.perf_counter() + random.uniform(0, interval)
        while True:
            if interval:
                await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
                next_send = max(next_send + interval, time.perf_counter())
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            for attempt in range(20):
                target = servers[(pinned + attempt) % len(servers)]
                try:
                    await session.call(target.base)
                except RetryableError:
                    run.retried += 1
                    await asyncio.sleep(0.01 * (attempt // len(servers)))
                    continue
                except FailedRequest as exc:
                    run.failures.append(f"{target.label}: {exc}")
                    break
                run.answered_at.append(time.perf_counter())
                run.latencies_ms.append((run.answered_at[-1] - sent) * 1000)
                break
            else:
                run.failures.append("no replica took the request after 20 attempts")

    async def restart_one() -> None:
        await asyncio.sleep(duration_s / 3)
        victim = servers[0]
        assert victim.process is not None
        run.sigterm_at = time.perf_counter()
        run.sigterm_exit, run.sigterm_exit_s = await victim.process.stop()
        restarting = time.perf_counter()
        await victim.start()
        run.back_at = time.perf_counter()
        run.restart_s = run.back_at - restarting

    run.started = time.perf_counter()
    await asyncio.gather(restart_one(), *(session_loop(i, s) for i, s in enumerate(sessions)))
    run.wall_s = time.perf_counter() - run.started


# --- the report ------------------------------------------------------------------------------------------------------


def http_stack() -> str:
    try:
        import httptools  # noqa: F401  # uvicorn's choice of parser follows whether it imports
    except ImportError:
        return "uvicorn with h11 (httptools not installed), asyncio event loop"
    return "uvicorn with httptools, asyncio event loop"


def cpu_section(targets: list[CpuTarget], args: argparse.Namespace) -> list[str]:
    baseline = next(t for t in targets if t.label.startswith("no-op tool, JSON"))
    lines = [
        "## Server CPU per call",
        "",
        f"Closed loop, {args.cpu_sessions} sessions, {args.cpu_calls} calls per round, {args.rounds} rounds "
        "alternating the servers (median per server; ratio = median of the rounds' ratios to the no-op with JSON "
        "responses). "
        "`mcp-todo serve` runs add_task and list_tasks (no arguments: up to 50 tasks) alternating; the no-op server "
        "one tool returning a string.",
        "",
        "| server | CPU ms per call (median) | rounds | calls/s (median) | ÷ no-op JSON |",
        "|---|---|---|---|---|",
    ]
    for target in targets:
        ratios = [a / b for a, b in zip(target.per_call_ms, baseline.per_call_ms, strict=True)]
        rounds = ", ".join(f"{ms:.2f}" for ms in target.per_call_ms)
        lines.append(
            f"| {target.label} | {statistics.median(target.per_call_ms):.2f} | {rounds} | "
            f"{statistics.median(target.rates):,.0f} | {statistics.median(ratios):.2f} |"
        )
    return lines


def replica_section(run: ReplicaRun, args: argparse.Namespace) -> list[str]:
    lat = run.latencies_ms
    offered = f"{args.rate:g} calls/s each" if args.rate > 0 else "closed loop"
    lines = [
        "## 100 sessions, two replicas, one SIGTERM and restart",
        "",
        f"{args.sessions} sessions ({offered}), each its own user and `mtd_` token, pinned alternately to two "
        f"`mcp-todo serve` processes sharing one database, {args.duration:g} s; replica A got SIGTERM at "
        f"{args.duration / 3:.0f} s and was started again once it had exited. Each session's first two calls "
        "(before the clock starts) are not counted. Latency is from the first attempt to the answer (a retry's time "
        "included).",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| requests answered | {len(lat):,} | |",
        f"| requests/s | {len(lat) / run.wall_s:,.1f} | |",
    ]
    if lat:
        lines += [
            f"| p50 / p95 / p99 ms | {percentile(lat, 0.5):.1f} / {percentile(lat, 0.95):.1f} / "
            f"{percentile(lat, 0.99):.1f} | p95 ≤ 50 ms |",
            f"| max ms | {max(lat):.1f} | |",
        ]
    phases = [
        ("before the SIGTERM", run.started, run.sigterm_at),
        ("from the SIGTERM until replica A is back", run.sigterm_at, run.back_at),
        ("after replica A is back", run.back_at, run.started + run.wall_s),
    ]
    for name, start, end in phases:
        part = [ms for ms, at in zip(lat, run.answered_at, strict=True) if start <= at < end]
        if part:
            lines.append(
                f"| … {name} ({end - start:.0f} s): requests/s; p50 / p95 ms | {len(part) / (end - start):,.1f}; "
                f"{percentile(part, 0.5):.1f} / {percentile(part, 0.95):.1f} | |"
            )
    lines += [
        f"| failed requests a client could not retry | {len(run.failures)} | 0 |",
        f"| requests retried on the other replica (refused before sent, or 503) | {run.retried} | |",
        f"| replica A's exit code after SIGTERM; seconds to exit | {run.sigterm_exit}; {run.sigterm_exit_s:.2f} s "
        "| 0 |",
        f"| seconds to start replica A again (until /healthz answers) | {run.restart_s:.2f} s | |",
    ]
    if run.failures:
        kinds: dict[str, int] = {}
        for failure in run.failures:
            kinds[failure] = kinds.get(failure, 0) + 1
        lines += ["", "Failures: " + "; ".join(f"{kind} × {n}" for kind, n in sorted(kinds.items()))]
    return lines


# --- main ----------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    postgres = await asyncio.to_thread(PostgresServer, "mcp-todo-bench-")
    databases = DatabaseFactory(postgres.dsn, prefix="mcp_todo_bench")
    try:
        yield await databases.create()
    finally:
        await databases.drop_all()
        await asyncio.to_thread(postgres.close)


async def make_tokens(dsn: str, count: int) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [(await create_token(conn, f"load-user-{i}", None))[1] for i in range(count)]
    finally:
        await conn.close()


async def bench(args: argparse.Namespace) -> str:
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="mcp-todo-load-") as tmp:
        log_dir = Path(tmp)
        async with database() as dsn:
            tokens = await make_tokens(dsn, max(args.sessions, args.cpu_sessions))
            servers: list[Server] = []
            sessions: list[Session] = []
            try:
                insecure = real_server("real", dsn, log_dir, insecure=True)
                cpu_servers = [
                    ("mcp-todo serve, mtd_ tokens", real_server("real", dsn, log_dir), REAL_TOOLS, True),
                    ("mcp-todo serve, --insecure-local", insecure, REAL_TOOLS, False),
                    ("… add_task only", insecure, REAL_TOOLS[:1], False),
                    ("… list_tasks only (50 tasks)", insecure, REAL_TOOLS[1:], False),
                    ("no-op tool, JSON responses", noop_server("noop-json", log_dir, sse=False), NOOP_TOOLS, False),
                    ("no-op tool, SSE responses", noop_server("noop-sse", log_dir, sse=True), NOOP_TOOLS, False),
                ]
                if args.base_tree is not None:
                    cpu_servers.insert(
                        1,
                        (
                            f"mcp-todo serve at {args.base_commit}, mtd_ tokens",
                            real_server("base", dsn, log_dir, tree=args.base_tree),
                            REAL_TOOLS,
                            True,
                        ),
                    )
                targets = []
                for label, server, tools, with_tokens in cpu_servers:
                    if server not in servers:
                        servers.append(server)
                        await server.start()
                    own = [Session(tokens[i] if with_tokens else None, tools) for i in range(args.cpu_sessions)]
                    sessions += own
                    targets.append(CpuTarget(label, server, own))
                await measure_cpu(targets, args.cpu_calls, args.rounds)
                for server in servers:
                    await server.close()
                if args.cpu_only:
                    return "\n".join([*header(args, started_at), *cpu_section(targets, args), ""])

                replicas = [real_server("A", dsn, log_dir), real_server("B", dsn, log_dir)]
                servers += replicas
                await asyncio.gather(*(r.start() for r in replicas))
                replica_sessions = [Session(tokens[i], REAL_TOOLS) for i in range(args.sessions)]
                sessions += replica_sessions
                for i, session in enumerate(replica_sessions):
                    await session.initialize(replicas[i % 2].base)
                # Not timed: each session's first add_task and list_tasks (the servers' pools open their connections).
                await asyncio.gather(*(s.call(replicas[i % 2].base) for i, s in enumerate(replica_sessions)))
                await asyncio.gather(*(s.call(replicas[i % 2].base) for i, s in enumerate(replica_sessions)))
                run = ReplicaRun()
                await replica_run(replicas, replica_sessions, args.duration, args.rate, run)
            finally:
                for session in sessions:
                    await session.close()
                for server in servers:
                    await server.close()
    return "\n".join([*header(args, started_at), *cpu_section(targets, args), "", *replica_section(run, args), ""])


def header(args: argparse.Namespace, started_at: str) -> list[str]:
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        "# HTTP load",
        "",
        f"`.venv/bin/python -m bench.load {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        f"on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"TEST_DATABASE_URL's PostgreSQL (else embedded), everything on loopback; {http_stack()}; run {started_at}; "
        f"load average (1 / 5 / 15 min) at the end {load}. "
        "Client: raw httpx JSON-RPC POSTs (see the module docstring), in the benchmark process, on the same cores.",
        "",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the replica run (60)")
    parser.add_argument("--sessions", type=int, default=100, help="sessions of the replica run (100)")
    parser.add_argument(
        "--rate", type=float, default=0.5, help="calls/s per session in the replica run (0.5); 0: closed loop"
    )
    parser.add_argument("--cpu-sessions", type=int, default=10, help="sessions of the CPU rounds (10)")
    parser.add_argument("--cpu-calls", type=int, default=1000, help="calls per CPU round (1000)")
    parser.add_argument("--rounds", type=int, default=5, help="CPU rounds per server (5)")
    parser.add_argument(
        "--base-commit", help="also measure `mcp-todo serve` of this commit (checked out apart), in the same rounds"
    )
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU rounds; the report is load_cpu.md")
    parser.add_argument("--serve-noop", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--sse", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_noop is not None:
        serve_noop(args.serve_noop, args.sse)
        return
    args.base_tree = None
    if args.base_commit is None:
        write_report("load_cpu" if args.cpu_only else "load", asyncio.run(bench(args)))
        return
    args.base_tree = Path(tempfile.mkdtemp(prefix="mcp-todo-base-")) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(args.base_tree), args.base_commit], cwd=REPO_ROOT, check=True
    )
    try:
        write_report("load_cpu" if args.cpu_only else "load", asyncio.run(bench(args)))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(args.base_tree)], cwd=REPO_ROOT, check=False)


if __name__ == "__main__":
    main()
