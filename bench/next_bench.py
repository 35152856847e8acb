"""What the "next" ranking costs over a plain sort, in the same run on the same database:

    .venv/bin/python -m bench.next_bench            # TEST_DATABASE_URL's server, else an embedded PostgreSQL

Seeds one user with 10,000 tasks (BENCH_NEXT_TASKS): two thirds with a due date from 20 days ago to 80 days ahead,
every priority, ages up to a year, a tenth completed, and 1,000 dependencies (BENCH_NEXT_EDGES) between random pairs
(earlier waits on later, so no cycle). Then calls the service's list_tasks for a page of 50 — sort_by="due_date"
(status all, the default, and status pending) and sort_by="next" — alternating call by call so all three see the same
machine load, BENCH_SAMPLES (300) each after warm-up. The target: next at most 2 ms more than due_date (medians).
Writes bench/results/next.md and prints it.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.common import percentile, write_report
from mcp_todo.db.engine import create_engine
from mcp_todo.service import listing
from mcp_todo.service.context import Ctx
from mcp_todo.settings import Settings
from tests.support.database import DatabaseFactory, PostgresServer

USER = "bench-next"
ZONE = "Europe/Paris"
TASKS = int(os.environ.get("BENCH_NEXT_TASKS", "10000"))
EDGES = int(os.environ.get("BENCH_NEXT_EDGES", "1000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "300"))


async def seed(dsn: str) -> None:
    rng = random.Random(17)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        records = []
        for i in range(TASKS):
            due = now + timedelta(hours=rng.randint(-480, 1920)) if i % 3 else None
            done = i % 10 == 0
            records.append(
                (
                    USER,
                    f"task {i}",
                    rng.choice(("low", "medium", "high", "urgent")),
                    due,
                    ZONE,
                    "completed" if done else "pending",
                    now if done else None,
                    now - timedelta(hours=rng.randint(0, 24 * 365)),
                )
            )
        await conn.copy_records_to_table(
            "tasks",
            records=records,
            columns=["user_id", "title", "priority", "due_date", "time_zone", "status", "completed_at", "created_at"],
        )
        ids = [row["id"] for row in await conn.fetch("SELECT id FROM tasks WHERE user_id = $1 ORDER BY id", USER)]
        pairs: set[tuple[int, int]] = set()
        while len(pairs) < EDGES:
            a, b = sorted(rng.sample(range(len(ids)), 2))
            pairs.add((ids[a], ids[b]))  # the earlier task waits on the later: no cycle
        await conn.copy_records_to_table(
            "task_dependencies",
            records=[(USER, task, blocker) for task, blocker in sorted(pairs)],
            columns=["user_id", "task_id", "blocker_id"],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def main() -> None:
    postgres = await asyncio.to_thread(PostgresServer, "mcp-todo-bench-")
    databases = DatabaseFactory(postgres.dsn, prefix="mcp_todo_bench")
    dsn = await databases.create()
    engine = create_engine(dsn)
    try:
        started = time.perf_counter()
        await seed(dsn)
        seed_s = time.perf_counter() - started
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, DATABASE_URL=dsn, MCP_TODO_USER=USER, MCP_TODO_TIMEZONE=ZONE, KAFKA_BOOTSTRAP_SERVERS=""
        )
        ctx = Ctx(engine=engine, user_id=USER, settings=settings, time_zone=ZONE)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "due_date": lambda: listing.list_tasks(ctx, sort_by="due_date", sort_order="asc", limit=50),
            "due_date, pending": lambda: listing.list_tasks(
                ctx, status="pending", sort_by="due_date", sort_order="asc", limit=50
            ),
            "next": lambda: listing.list_tasks(ctx, sort_by="next", limit=50),
        }
        for _ in range(20):  # warm-up: pool, caches, compiled statements
            for call in calls.values():
                await call()
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(SAMPLES):
            for name, call in calls.items():
                began = time.perf_counter()
                await call()
                samples[name].append((time.perf_counter() - began) * 1000)
        load = "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"
    finally:
        await engine.dispose()
        await databases.drop_all()
        await asyncio.to_thread(postgres.close)

    base = statistics.median(samples["due_date"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append(
            f"| {name} | {median:.2f} | {percentile(values, 0.95):.2f} | {median - base:+.2f} | {median / base:.2f} |"
        )
    extra = statistics.median(samples["next"]) - base
    report = "\n".join(
        [
            '# What sort_by="next" costs',
            "",
            f"`.venv/bin/python -m bench.next_bench`: one user, {TASKS:,} tasks (a tenth completed), {EDGES:,} "
            f"dependencies; list_tasks of 50 through the service, {SAMPLES} calls of each, alternating, after "
            f"warm-up; seeding took {seed_s:.0f} s. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load at the end: "
            f"`{load}`.",
            "",
            "| sort | p50 ms | p95 ms | p50 − due_date | ratio |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"next costs {extra:+.2f} ms over due_date at the median (target: at most +2 ms): "
            f"{'met' if extra <= 2.0 else 'NOT met'}.",
            "",
            "",
        ]
    )
    write_report("next", report)


if __name__ == "__main__":
    asyncio.run(main())
