"""The largest tested tenant: one user with 10 000, 100 000 and then 1 000 000 tasks; list_tasks and search_tasks
latency at each size, through the tool path.

    .venv/bin/python -m bench.tenant_bench     # TEST_DATABASE_URL's server, else an embedded PostgreSQL
    BENCH_TENANT_SIZES=10000,100000 BENCH_SAMPLES=50 .venv/bin/python -m bench.tenant_bench

The tasks are written by one `INSERT … SELECT … FROM generate_series` per 100 000 rows, with every index and trigger
of the schema in place (as a big import would write them): titles of four words from a list of 48, a description of
eight, two thirds with a due date (from a month ago to a year ahead) and a reminder an hour before it, a third
completed, one in a thousand carrying the word `ticketN` (N < 1000, so each such word matches ~1 000 tasks at 1M).
After each fill, ANALYZE, then each query BENCH_SAMPLES times (after 10 warm-up calls) through the official MCP client
on the server `mcp-todo` builds (in-process transport: the tool's arguments parsing, service, SQL, result shaping
and serialization; no HTTP, which bench/load.py measures). Writes bench/results/tenant.md and prints it.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from mcp.client import Client

from bench.common import percentile, write_report
from bench.core_bench import WORDS
from mcp_todo.db.engine import create_engine
from mcp_todo.runtime.logs import configure_logging
from mcp_todo.server.app import build_server
from mcp_todo.server.state import AppState
from mcp_todo.settings import Settings
from tests.support.database import DatabaseFactory, PostgresServer

SIZES = [int(n) for n in os.environ.get("BENCH_TENANT_SIZES", "10000,100000,1000000").split(",")]
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "50"))
CHUNK = 100_000
USER = "tenant"
ZONE = "Europe/London"

QUERIES: Sequence[tuple[str, str, dict[str, Any]]] = (
    ("list_tasks, no arguments (all, newest first, 50)", "list_tasks", {}),
    (
        "list_tasks pending by due date (50)",
        "list_tasks",
        {"status": "pending", "sort_by": "due_date", "sort_order": "asc", "limit": 50},
    ),
    ("list_tasks pending, priority urgent (50)", "list_tasks", {"status": "pending", "priority": "urgent"}),
    ("list_tasks page 20 (offset 1000)", "list_tasks", {"limit": 50, "offset": 1000}),
    ("list_tasks sort_by=next (20)", "list_tasks", {"sort_by": "next", "limit": 20}),
    ("search_tasks, a common word (20)", "search_tasks", {"query": "invoice", "limit": 20}),
    ("search_tasks, two words (20)", "search_tasks", {"query": "invoice dentist", "limit": 20}),
    ("search_tasks, a rare word (~0.1 %, 20)", "search_tasks", {"query": "ticket7", "limit": 20}),
)


async def fill(conn: asyncpg.Connection, first: int, last: int) -> None:
    """Tasks `first`..`last` of the user (1-based), one INSERT per CHUNK rows."""
    words = "ARRAY[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    for start in range(first, last + 1, CHUNK):
        end = min(last, start + CHUNK - 1)
        await conn.execute(
            f"""
            WITH w AS (SELECT {words} AS a)
            INSERT INTO tasks (user_id, title, description, status, priority, due_date, time_zone, remind_at,
                               reminder_sent, completed_at, created_at)
            SELECT $1,
                   a[1 + (n * 7) % 48] || ' ' || a[1 + (n * 13) % 48] || ' ' || a[1 + (n * 29) % 48] || ' '
                       || CASE WHEN n % 1000 = 0 THEN 'ticket' || (n / 1000) % 1000 ELSE a[1 + (n * 31) % 48] END,
                   a[1 + (n * 3) % 48] || ' ' || a[1 + (n * 5) % 48] || ' ' || a[1 + (n * 11) % 48] || ' '
                       || a[1 + (n * 17) % 48] || ' ' || a[1 + (n * 19) % 48] || ' ' || a[1 + (n * 23) % 48] || ' '
                       || a[1 + (n * 37) % 48] || ' ' || a[1 + (n * 41) % 48],
                   CASE WHEN n % 3 = 0 THEN 'completed' ELSE 'pending' END,
                   (ARRAY['low', 'medium', 'high', 'urgent'])[1 + n % 4],
                   due,
                   $2,
                   due - interval '1 hour',
                   due IS NOT NULL AND due < now(),
                   CASE WHEN n % 3 = 0 THEN now() - (n % 1000) * interval '1 minute' END,
                   now() - ($3 - n) * interval '1 second'
            FROM w, generate_series($4::bigint, $5::bigint) AS n,
                 LATERAL (SELECT CASE WHEN n % 3 <> 1
                                      THEN now() + ((n * 7919) % 395 - 30) * interval '1 day' END AS due) AS d
            """,
            USER,
            ZONE,
            last,
            start,
            end,
        )


async def measure(client: Client, tool: str, arguments: dict[str, Any], samples: int) -> list[float]:
    for _ in range(10):
        result = await client.call_tool(tool, arguments)
        assert not result.is_error, result.content
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        await client.call_tool(tool, arguments)
        out.append((time.perf_counter() - started) * 1000)
    return out


def uptime_load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


async def main() -> None:
    configure_logging()  # as the server logs: one line per call to stderr
    postgres = await asyncio.to_thread(PostgresServer, "mcp-todo-bench-")
    databases = DatabaseFactory(postgres.dsn, prefix="mcp_todo_bench")
    dsn = await databases.create()
    engine = create_engine(dsn)
    results: dict[int, dict[str, list[float]]] = {}
    notes: dict[int, str] = {}
    try:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, DATABASE_URL=dsn, MCP_TODO_USER=USER, MCP_TODO_TIMEZONE=ZONE, KAFKA_BOOTSTRAP_SERVERS=""
        )
        server = build_server(settings, state=AppState(settings=settings, engine=engine, dsn=dsn, embedded=False))
        conn = await asyncpg.connect(dsn)
        try:
            filled = 0
            for size in SIZES:
                started = time.perf_counter()
                await fill(conn, filled + 1, size)
                fill_s = time.perf_counter() - started
                started = time.perf_counter()
                await conn.execute("ANALYZE tasks")
                analyze_s = time.perf_counter() - started
                filled = size
                table = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('tasks'))")
                load_before = uptime_load()
                async with Client(server) as client:
                    results[size] = {
                        label: await measure(client, tool, arguments, SAMPLES) for label, tool, arguments in QUERIES
                    }
                notes[size] = (
                    f"{size:,} tasks: filled in {fill_s:.1f} s (this step's rows), ANALYZE {analyze_s:.1f} s, "
                    f"table with indexes {table}; load average (1 / 5 / 15 min) {load_before} before the "
                    f"measurements, {uptime_load()} after"
                )
        finally:
            await conn.close()
    finally:
        await engine.dispose()
        await databases.drop_all()
        await asyncio.to_thread(postgres.close)

    pg = "embedded PostgreSQL" if postgres.embedded else "TEST_DATABASE_URL's PostgreSQL"
    header = " | ".join(f"{size:,} tasks p50 / p95 ms" for size in SIZES)
    lines = [
        "# The largest tested tenant: one user's list and search",
        "",
        f"`.venv/bin/python -m bench.tenant_bench` on {platform.machine()}, {os.cpu_count()} cores shared with other "
        f"work, Python {platform.python_version()}, {pg}; one user, {SAMPLES} calls per query and size after 10 "
        f"warm-up calls, through the official MCP client in-process. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"| query | {header} |",
        "|---|" + "---|" * len(SIZES),
    ]
    for label, _, _ in QUERIES:
        cells = [
            f"{statistics.median(results[s][label]):.1f} / {percentile(results[s][label], 0.95):.1f}" for s in SIZES
        ]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += ["", *[f"- {notes[size]}" for size in SIZES], ""]
    write_report("tenant", "\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
