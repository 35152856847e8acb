"""Start-up as a host sees it: from starting `python -m mcp_todo` (stdio, the default command) to the answer to its
first `tools/list`, before and after, in the same run on the same database:

    .venv/bin/python -m bench.startup_bench            # TEST_DATABASE_URL's server, else an embedded PostgreSQL
    BENCH_BASE_COMMIT=<commit> BENCH_RUNS=10 .venv/bin/python -m bench.startup_bench

The host's side is raw JSON-RPC lines on the pipes (`initialize`, `notifications/initialized`, `tools/list`, all
written at once, as a host does not wait between them), so nothing of a client's own start is counted. The server
runs as a desktop user runs it: DATABASE_URL set (a fresh migrated database), no Kafka (local mode, so the relay and
the local handlers start beside the tools), the loop watchdog on.

- cold: the first start after the tree's own bytecode caches (`__pycache__` under mcp_todo/ and workers/) are
  deleted, as after an install or an upgrade that did not compile them; the installed libraries keep theirs, and the
  files are in the page cache (emptying it needs root and would slow every other process on a shared machine).
- warm: the starts right after, with the caches written.

Each round runs one cold and BENCH_WARM warm starts of each tree, the trees alternating, so both see the same machine
load; medians and p95 over BENCH_RUNS rounds, and the ratio after ÷ before of the medians (BENCH_BASE_COMMIT="":
this tree alone). Also the time to the
`initialize` answer, and the loop watchdog's complaints (`event=loop_blocked`, 100 ms) of each side.
Writes bench/results/startup.md and prints it.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.common import percentile, write_report
from tests.support.database import DatabaseFactory, PostgresServer
from tests.support.processes import LOOP_BLOCKED, clean_env

ROOT = Path(__file__).resolve().parent.parent
BASE_COMMIT = os.environ.get("BENCH_BASE_COMMIT", "94e3f57")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
WARM = int(os.environ.get("BENCH_WARM", "2"))
ANSWER_TIMEOUT_S = 60.0
HOST_LINES = b"".join(
    json.dumps(message).encode() + b"\n"
    for message in (
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "startup-bench", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    )
)


@dataclass
class Side:
    tree: Path
    cold_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)
    initialize_ms: list[float] = field(default_factory=list)
    loop_blocked: int = 0
    tools: int = 0


def drop_bytecode(tree: Path) -> None:
    for package in ("mcp_todo", "workers"):
        for cache in (tree / package).rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)


def start_once(tree: Path, dsn: str) -> tuple[float, float, int, str]:
    """Milliseconds to the `initialize` answer and to the `tools/list` answer, the number of tools, and the log."""
    env = clean_env(
        PYTHONPATH=str(tree),
        DATABASE_URL=dsn,
        MCP_TODO_USER="bench",
        MCP_TODO_TIMEZONE="Europe/Paris",
        MCP_TODO_LOOP_WATCHDOG_MS="100",
    )
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "mcp_todo"],
            cwd=tree,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(HOST_LINES)
            process.stdin.flush()
            answered: dict[int, float] = {}
            tools = 0
            while 2 not in answered:
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError("the server closed stdout before answering tools/list")
                message = json.loads(line)
                answered[message.get("id")] = (time.perf_counter() - started) * 1000
                if message.get("id") == 2:
                    tools = len(message["result"]["tools"])
                if time.perf_counter() - started > ANSWER_TIMEOUT_S:
                    raise RuntimeError("no tools/list answer in time")
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.seek(0)
        text = log.read().decode(errors="replace")
    return answered[1], answered[2], tools, text


def measure(sides: dict[str, Side], dsn: str) -> None:
    for _ in range(RUNS):
        for side in sides.values():
            drop_bytecode(side.tree)
            for attempt in range(1 + WARM):
                initialize_ms, tools_ms, tools, text = start_once(side.tree, dsn)
                (side.cold_ms if attempt == 0 else side.warm_ms).append(tools_ms)
                side.initialize_ms.append(initialize_ms)
                side.loop_blocked += text.count(LOOP_BLOCKED)
                side.tools = tools


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def p(samples: list[float]) -> str:
    return f"{statistics.median(samples):.0f} / {percentile(samples, 0.95):.0f}"


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="mcp-todo-base-")) / "tree" if BASE_COMMIT else None
    if base is not None:
        subprocess.run(["git", "worktree", "add", "--detach", str(base), BASE_COMMIT], cwd=ROOT, check=True)
    postgres = PostgresServer("mcp-todo-bench-")
    databases = DatabaseFactory(postgres.dsn, prefix="mcp_todo_bench")
    sides = {"before": Side(base)} if base is not None else {}
    sides["after"] = Side(ROOT)
    load_before = load_average()
    try:
        dsn = asyncio.run(databases.create())
        measure(sides, dsn)
    finally:
        asyncio.run(databases.drop_all())
        postgres.close()
        if base is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    load_after = load_average()

    def row(label: str, key: str) -> str:
        cells = [p(getattr(side, key)) for side in sides.values()]
        if "before" in sides:
            before, after = (statistics.median(getattr(sides[s], key)) for s in ("before", "after"))
            cells.append(f"{after / before:.2f}")
        return f"| {label} | {' | '.join(cells)} |"

    def plain_row(label: str, key: str) -> str:
        cells = [str(getattr(side, key)) for side in sides.values()]
        return f"| {label} | {' | '.join(cells)} |" + (" |" if "before" in sides else "")

    columns = ["before", "after", "after ÷ before"] if "before" in sides else ["this tree"]
    what = f"before = commit {BASE_COMMIT}, after = this tree" if base is not None else "this tree only"
    pg = "embedded PostgreSQL" if postgres.embedded else "TEST_DATABASE_URL's PostgreSQL"
    lines = [
        "# Start-up: process start to the first tools/list answer, over stdio",
        "",
        f"`.venv/bin/python -m bench.startup_bench` on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {pg}; {what}; {RUNS} rounds, each one cold and {WARM} warm starts of each "
        f"tree, alternating. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average (1 / 5 / 15 min) "
        f"{load_before} before the run, {load_after} after.",
        "",
        "Cold: the first start after deleting the tree's `__pycache__` (mcp_todo/, workers/); the libraries keep "
        "their bytecode and the page cache stays warm. Warm: the starts after it. Local mode (no Kafka), DATABASE_URL "
        "set to a migrated database.",
        "",
        f"| measure (ms, median / p95) | {' | '.join(columns)} |",
        f"|---|{'---|' * len(columns)}",
        row("cold: start → tools/list answered", "cold_ms"),
        row("warm: start → tools/list answered", "warm_ms"),
        row("start → initialize answered (all starts)", "initialize_ms"),
        plain_row("tools listed", "tools"),
        plain_row("loop watchdog complaints (100 ms), all starts", "loop_blocked"),
        "",
    ]
    write_report("startup", "\n".join(lines))


if __name__ == "__main__":
    main()
