"""Tool latency through the official MCP client, beside two ceilings measured in the same run: a no-op tool through
the same client (the SDK's own cost) and the raw asyncpg statement (the database's own cost).

    .venv/bin/python -m bench.core_bench            # TEST_DATABASE_URL's server, else an embedded PostgreSQL

Seeds 10 000 tasks for the measured user and 99 other users × 10 000 tasks (1 000 000 rows) with COPY, then times
add_task, complete_task, list_tasks and search_tasks; then add_task and complete_task again with local mode's relay and
handlers running in the process. Also reports the size of tools/list. Writes bench/results/core.md and prints it.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from mcp.client import Client

from bench.common import percentile, write_report
from mcp_todo.db.engine import create_engine
from mcp_todo.server.app import build_server, default_background, open_app_state
from mcp_todo.server.state import AppState
from mcp_todo.settings import Settings
from tests.support.database import DatabaseFactory, PostgresServer

USERS = int(os.environ.get("BENCH_USERS", "100"))
TASKS_PER_USER = int(os.environ.get("BENCH_TASKS_PER_USER", "10000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "300"))
USER = "bench-user-0"
ZONE = "Europe/London"
WORDS = [
    "report",
    "budget",
    "meeting",
    "invoice",
    "dentist",
    "groceries",
    "review",
    "deploy",
    "release",
    "migrate",
    "garden",
    "paint",
    "call",
    "email",
    "plan",
    "draft",
    "slides",
    "taxes",
    "insurance",
    "renew",
    "passport",
    "book",
    "flight",
    "hotel",
    "train",
    "school",
    "homework",
    "laundry",
    "clean",
    "garage",
    "fix",
    "bike",
    "car",
    "service",
    "doctor",
    "gym",
    "run",
    "swim",
    "read",
    "write",
    "code",
    "test",
    "debug",
    "refactor",
    "design",
    "interview",
    "hire",
    "onboard",
]


Row = tuple[str, list[float], list[float], list[float]]


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    return result.structured_content or {}


async def write_rows(
    client: Client, raw: asyncpg.Connection, noop_ms: list[float], suffix: str = "", *, first_raw_id: int = 1
) -> list[Row]:
    """add_task, then complete_task on the tasks it added, each beside its raw asyncpg statement (the raw UPDATE
    completes seeded tasks from `first_raw_id` on)."""
    added: list[int] = []

    async def add(i: int) -> None:
        task = await call(
            client, "add_task", {"title": f"bench task {i}", "due_date": "2027-03-10T09:00", "priority": "high"}
        )
        added.append(task["id"])

    add_ms = await timed(SAMPLES, add)
    raw_add_ms = await timed(
        SAMPLES,
        lambda i: raw.execute(
            "INSERT INTO tasks (user_id, title, priority, due_date, time_zone, remind_at) "
            "VALUES ($1, $2, 'high', $3::timestamptz, $4, $3::timestamptz - interval '60 minutes')",
            USER,
            f"raw {i}",
            datetime(2027, 3, 10, 9, tzinfo=UTC),
            ZONE,
        ),
    )
    to_complete = iter(added)
    complete_ms = await timed(SAMPLES - 20, lambda i: call(client, "complete_task", {"task_id": next(to_complete)}))
    raw_complete_ms = await timed(
        SAMPLES,
        lambda i: raw.execute(
            "UPDATE tasks SET status='completed', completed_at=now(), updated_at=now() "
            "WHERE user_id=$1 AND id=$2 AND status='pending'",
            USER,
            first_raw_id + i,
        ),
    )
    return [
        ("add_task" + suffix, add_ms, noop_ms, raw_add_ms),
        ("complete_task" + suffix, complete_ms, noop_ms, raw_complete_ms),
    ]


def summary(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), percentile(samples, 0.95)


async def timed(n: int, action: Callable[[int], Awaitable[Any]]) -> list[float]:
    for i in range(min(20, n)):  # warm-up: pools, prepared statements, caches
        await action(i)
    out = []
    for i in range(n):
        start = time.perf_counter()
        await action(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


async def seed(dsn: str) -> None:
    rng = random.Random(7)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        for u in range(USERS):
            records = []
            for i in range(TASKS_PER_USER):
                title = " ".join(rng.choices(WORDS, k=4))
                description = " ".join(rng.choices(WORDS, k=12))
                due = now + timedelta(hours=rng.randint(-500, 2000)) if i % 3 else None
                records.append(
                    (
                        f"bench-user-{u}",
                        title,
                        description,
                        rng.choice(("low", "medium", "high", "urgent")),
                        due,
                        ZONE,
                        due - timedelta(minutes=60) if due else None,
                        now - timedelta(minutes=TASKS_PER_USER - i),
                    )
                )
            await conn.copy_records_to_table(
                "tasks",
                records=records,
                columns=[
                    "user_id",
                    "title",
                    "description",
                    "priority",
                    "due_date",
                    "time_zone",
                    "remind_at",
                    "created_at",
                ],
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
        state = AppState(settings=settings, engine=engine, dsn=dsn, embedded=False)
        server = build_server(settings, state=state)

        async def noop() -> str:
            """Do nothing (benchmark ceiling)."""
            return "ok"

        server.add_tool(noop, name="noop")
        rows: list[Row] = []
        raw = await asyncpg.connect(dsn)
        async with Client(server) as client:
            listed = await client.list_tools()
            tools_json = json.dumps(
                [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools if t.name != "noop"]
            )
            noop_ms = await timed(SAMPLES, lambda i: client.call_tool("noop", {}))

            rows += await write_rows(client, raw, noop_ms)
            list_ms = await timed(
                SAMPLES,
                lambda i: call(
                    client, "list_tasks", {"status": "pending", "sort_by": "due_date", "sort_order": "asc", "limit": 50}
                ),
            )
            raw_list_ms = await timed(
                SAMPLES,
                lambda i: raw.fetch(
                    "SELECT * FROM tasks WHERE user_id=$1 AND status='pending' "
                    "ORDER BY due_date ASC NULLS LAST, id LIMIT 50",
                    USER,
                ),
            )
            rows.append((f"list_tasks ({TASKS_PER_USER} tasks)", list_ms, noop_ms, raw_list_ms))

            queries = [" ".join(random.Random(i).choices(WORDS, k=2)) for i in range(SAMPLES + 20)]
            search_ms = await timed(SAMPLES, lambda i: call(client, "search_tasks", {"query": queries[i], "limit": 20}))
            raw_search_ms = await timed(
                SAMPLES,
                lambda i: raw.fetch(
                    "SELECT id, ts_rank(search_vector, websearch_to_tsquery('english', $2)) AS rank FROM tasks "
                    "WHERE user_id=$1 AND search_vector @@ websearch_to_tsquery('english', $2) "
                    "ORDER BY rank DESC, id DESC LIMIT 20",
                    USER,
                    queries[i],
                ),
            )
            rows.append((f"search_tasks ({USERS} users × {TASKS_PER_USER} tasks)", search_ms, noop_ms, raw_search_ms))

        # The same writes with local mode's background jobs in this process, as `mcp-todo serve` runs them: the relay
        # wakes on each commit's NOTIFY and publishes that call's event (to the in-process handlers) on the same event
        # loop while the next call runs, so its work shows in the latency of the calls that follow.
        async with open_app_state(settings, background=default_background(settings)) as live:
            served = build_server(settings, state=live)
            served.add_tool(noop, name="noop")
            async with Client(served) as client:
                noop_live_ms = await timed(SAMPLES, lambda i: client.call_tool("noop", {}))
                rows[2:2] = await write_rows(
                    client, raw, noop_live_ms, " (relay + local handlers running)", first_raw_id=SAMPLES + 21
                )
        await raw.close()
    finally:
        await engine.dispose()
        await databases.drop_all()
        await asyncio.to_thread(postgres.close)

    pg = "embedded PostgreSQL 18" if postgres.embedded else "TEST_DATABASE_URL's PostgreSQL"
    lines = [
        "# Core tool latency",
        "",
        f"`.venv/bin/python -m bench.core_bench` on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {pg}; {SAMPLES} calls each after 20 warm-up calls; seeding "
        f"{USERS * TASKS_PER_USER:,} rows with COPY took {seed_s:.1f} s. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| tool | p50 ms | p95 ms | no-op tool p50 / p95 ms | raw asyncpg p50 / p95 ms | p95 ÷ (no-op + raw) p95 |",
        "|---|---|---|---|---|---|",
    ]
    for label, tool_ms, noop_ms, raw_ms in rows:
        t50, t95 = summary(tool_ms)
        n50, n95 = summary(noop_ms)
        r50, r95 = summary(raw_ms)
        lines.append(
            f"| {label} | {t50:.2f} | {t95:.2f} | {n50:.2f} / {n95:.2f} | {r50:.2f} / {r95:.2f} | "
            f"{t95 / (n95 + r95):.2f} |"
        )
    size = len(tools_json.encode())
    lines += [
        "",
        "The first rows run with no background jobs (the tool path alone). The rows marked *relay + local handlers "
        "running* repeat the writes on a server opened as `mcp-todo serve` opens it in local mode: the outbox relay "
        "and the in-process handlers share the event loop with the tools, and publish each call's event while the "
        "next call runs (the benchmark does not wait for them).",
        "",
        f"`tools/list` for the 17 tools: {size:,} bytes ≈ {size // 4:,} tokens (bytes ÷ 4).",
        "",
    ]
    write_report("core", "\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
