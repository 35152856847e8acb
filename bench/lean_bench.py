"""What the model reads and how long a host waits for it, before and after, in the same run on the same database:

    .venv/bin/python -m bench.lean_bench            # TEST_DATABASE_URL's server, else an embedded PostgreSQL

Seeds 100 users × 10 000 tasks (as bench/core_bench.py does), checks out the baseline (BENCH_BASE_COMMIT, default
94e3f57: the tree before tasks were shaped from rows) in a temporary git worktree, and runs bench/lean_measure.py
against each tree in turn (alternating, two rounds each, so both see the same machine load): the sizes of tools/list,
a 50-task list_tasks of seeded tasks and of 50 realistic ones (text and structured) and a plain add_task's text;
p50/p95 of list_tasks and search_tasks through the official MCP client in process; and add_task, list_tasks,
search_tasks and complete_task as a host calls them, over stdio to a server process, with the server's own share
(its log) and the client's validation of the results. Also the server's cold start (`import mcp_todo.server.app`,
median of 7 fresh processes) of each tree and the first time phrase's cost (dateparser is imported then). Every p95
is also given as after ÷ before of the same run, the figure to read on a shared machine. Writes bench/results/lean.md
and prints it.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema

from bench.common import percentile, write_report
from bench.core_bench import TASKS_PER_USER, USER, USERS, ZONE, seed
from tests.support.database import DatabaseFactory, PostgresServer

ROOT = Path(__file__).resolve().parent.parent
BASE_COMMIT = os.environ.get("BENCH_BASE_COMMIT", "94e3f57")
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "300"))
ROUNDS = 2


def run_in(tree: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, *args], cwd=tree, env=env, check=True, capture_output=True, text=True)
    return done.stdout


def cold_start_ms(tree: Path, code: str = "import mcp_todo.server.app") -> float:
    times = []
    for _ in range(7):
        started = time.perf_counter()
        run_in(tree, "-c", code)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def p(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} / {percentile(samples, 0.95):.2f}"


async def seed_and_measure(base: Path) -> tuple[dict[str, list[dict[str, Any]]], float, bool]:
    """Each side's measurements (ROUNDS runs), the seeding time, and whether PostgreSQL was the embedded one."""
    postgres = await asyncio.to_thread(PostgresServer, "mcp-todo-bench-")
    databases = DatabaseFactory(postgres.dsn, prefix="mcp_todo_bench")
    results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    try:
        dsn = await databases.create()
        started = time.perf_counter()
        await seed(dsn)
        seed_s = time.perf_counter() - started
        # The stdio servers run local mode's reminder scheduler: with the reminders already due marked sent, the first
        # side's server does not deliver them (its CPU in its timings, their `reminder_sent` in the other side's lists).
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("UPDATE tasks SET reminder_sent = true WHERE remind_at < now() + interval '1 day'")
            await conn.execute("VACUUM ANALYZE tasks")
        finally:
            await conn.close()
        measure = str(ROOT / "bench" / "lean_measure.py")
        for round_ in range(ROUNDS):
            for side, tree in (("before", base), ("after", ROOT)):
                # Each side and round lists its own user's 50 realistic tasks.
                sizes_user = f"bench-sizes-{side}-{round_}"
                args = (measure, dsn, USER, ZONE, str(SAMPLES // ROUNDS), sizes_user)
                out = await asyncio.to_thread(run_in, tree, *args)
                results[side].append(json.loads(out))
    finally:
        await databases.drop_all()
        await asyncio.to_thread(postgres.close)
    return results, seed_s, postgres.embedded


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="mcp-todo-base-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(base), BASE_COMMIT], cwd=ROOT, check=True)
    try:
        results, seed_s, embedded = asyncio.run(seed_and_measure(base))
        cold = {side: cold_start_ms(tree) for side, tree in (("before", base), ("after", ROOT))}
        phrase = (
            "from datetime import datetime, UTC; from zoneinfo import ZoneInfo; "
            "from mcp_todo.domain.phrases import read_phrase; "
            "read_phrase('tomorrow 9am', datetime.now(UTC), ZoneInfo('Europe/Paris'), field='due_date')"
        )
        first_phrase = cold_start_ms(ROOT, phrase) - cold_start_ms(ROOT, "import mcp_todo.domain.phrases")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)

    def pooled(side: str, key: str, tool: str | None = None) -> list[float]:
        return [sample for run in results[side] for sample in (run[key] if tool is None else run[key][tool])]

    def row(label: str, key: str, tool: str | None = None) -> str:
        before_ms, after_ms = pooled("before", key, tool), pooled("after", key, tool)
        ratio = percentile(after_ms, 0.95) / percentile(before_ms, 0.95)
        return f"| {label} | {p(before_ms)} | {p(after_ms)} | {ratio:.2f} |"

    def size(label: str, key: str) -> str:
        return f"| {label} | {before[key]:,} | {after[key]:,} | {after[key] / before[key]:.2f} |"

    before, after = results["before"][0], results["after"][0]
    pg = "embedded PostgreSQL 18" if embedded else "TEST_DATABASE_URL's PostgreSQL"
    loads = ", ".join(f"{load:.1f}" for load in os.getloadavg())
    host = [
        row(f"over stdio, {tool}: host p50 / p95 ms", "host_ms", tool)
        for tool in ("add_task", "list_tasks", "search_tasks", "complete_task")
    ]
    server = [
        row(f"over stdio, {tool}: the server's own p50 / p95 ms", "server_ms", tool)
        for tool in ("add_task", "list_tasks", "search_tasks", "complete_task")
    ]

    def cpu(label: str, key: str, tool: str | None = None, who: str = "server") -> str:
        def mean(side: str) -> float:
            runs = results[side]
            return statistics.mean(float(run[key] if tool is None else run[key][tool][who]) for run in runs)

        return f"| {label} | {mean('before'):.2f} | {mean('after'):.2f} | {mean('after') / mean('before'):.2f} |"

    cpu_rows = [
        cpu("in process, list_tasks: CPU ms per call (server and client)", "list_cpu_ms"),
        cpu("in process, search_tasks: CPU ms per call (server and client)", "search_cpu_ms"),
        *(
            cpu(f"over stdio, {tool}: CPU ms per call of the {who}", "cpu_ms", tool, who)
            for tool in ("add_task", "list_tasks", "search_tasks", "complete_task")
            for who in ("server", "client")
        ),
    ]
    # Each side's realistic list against its own published schema, validated in turns in this one process, so both
    # see the same moment of a shared machine (each side's own figure above was timed minutes apart).
    checks = {side: (results[side][0]["list_schema"], results[side][0]["realistic_list"]) for side in results}
    validators = {side: jsonschema.validators.validator_for(schema)(schema) for side, (schema, _) in checks.items()}
    interleaved: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(SAMPLES):
        for side, validator in validators.items():
            started = time.perf_counter()
            errors = list(validator.iter_errors(checks[side][1]))
            interleaved[side].append((time.perf_counter() - started) * 1000)
            assert not errors, errors[0]
    ratio = percentile(interleaved["after"], 0.5) / percentile(interleaved["before"], 0.5)
    validation = [
        f"| the client's validation of the realistic 50-task list, in turns in one process, p50 / p95 ms (ratio of "
        f"p50) | {p(interleaved['before'])} | {p(interleaved['after'])} | {ratio:.2f} |",
        row("the client's validation of the realistic 50-task list, p50 / p95 ms", "realistic_validate_ms"),
        *(
            row(f"over stdio, {tool}: the client's validation p50 / p95 ms", "validate_ms", tool)
            for tool in ("list_tasks", "search_tasks")
        ),
    ]
    lines = [
        "# What the model reads and how long a host waits, before and after",
        "",
        f"`.venv/bin/python -m bench.lean_bench` on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {pg}; {USERS} users × {TASKS_PER_USER:,} tasks (seeding took {seed_s:.0f} s); "
        f"before = commit {BASE_COMMIT}, after = this tree; {SAMPLES} calls of each tool per side after warm-up, "
        f"in {ROUNDS} alternating rounds. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average at the end "
        f"{loads} (`uptime`: the machine is shared, so read the same-run ratios rather than the absolute times).",
        "",
        "| measure | before | after | after ÷ before |",
        "|---|---|---|---|",
        size("tools/list, bytes of the tools' JSON", "tools_list_bytes"),
        size("list_tasks of 50 (seeded), text bytes", "list_text_bytes"),
        size("list_tasks of 50 (seeded), structured bytes", "list_structured_bytes"),
        size("list_tasks of 50 realistic tasks, text bytes", "realistic_text_bytes"),
        size("list_tasks of 50 realistic tasks, structured bytes", "realistic_structured_bytes"),
        size("plain add_task, text bytes", "add_text_bytes"),
        row("in process, list_tasks (50 of 10,000) p50 / p95 ms", "list_ms"),
        row("in process, search_tasks p50 / p95 ms", "search_ms"),
        *host,
        *server,
        *validation,
        *cpu_rows,
        f"| cold start, `import mcp_todo.server.app`, ms | {cold['before']:.0f} | {cold['after']:.0f} | "
        f"{cold['after'] / cold['before']:.2f} |",
        "",
        "In process, the client calls the server on its own event loop, with no transport: the server's work and the "
        "client's validation of each result against the tool's output schema. Over stdio, the official client talks to "
        "a `python -m mcp_todo` process of each tree, as a host does; the server's own share is the `duration_ms` its "
        "log gives each call (from the arguments to the result), and the client's validation is timed apart, on the "
        "results it received, with a compiled jsonschema validator as the SDK's client uses. CPU per call is the "
        "process's user + system time over the timed calls (and their warm-up) divided by their number: it depends "
        "less on how busy the machine is than a call's time does, though still by ±30 % here (the client's CPU, the "
        "same code on both sides, shows how much). The realistic tasks are "
        "those of tests/e2e/test_lean_sizes.py (half with due dates, a quarter repeating, tags and categories); the "
        "seeded ones have no tags, categories or rules.",
        "",
        f"The first time phrase in a process costs {first_phrase:.0f} ms more (dateparser's import and its English "
        "data); later phrases ~1 ms.",
        "",
    ]
    write_report("lean", "\n".join(lines))


if __name__ == "__main__":
    main()
