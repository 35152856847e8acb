"""What the CalDAV server costs: a calendar-query of 1,000 to-dos, a sync-collection finding 1 change among 10,000,
and what 100 clients polling sync-collection every 30 s cost the server process.

    TEST_DATABASE_URL=postgresql://… .venv/bin/python -m bench.caldav_bench     # from the repository root

Server time is the time the CalDAV ASGI app takes (called in-process through httpx's ASGI transport, so no socket
or HTTP parsing): authentication is off (the app acts for one user) so the figures are the DAV work alone. Each row
is the median and p95 of BENCH_CALDAV_RUNS runs (30), beside a baseline measured in the same run: the same REPORT
asking for ETags only (no VTODO rendered), and a sync-collection with nothing changed. Writes
bench/results/caldav.md (BENCH_OUTPUT_DIR).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy import text

from bench.common import percentile, write_report
from mcp_todo.caldav import vtodo as vtodo_module
from mcp_todo.caldav.dav_methods import CalDav
from mcp_todo.db.engine import create_engine
from mcp_todo.server.state import AppState
from mcp_todo.settings import Settings
from tests.support.database import DatabaseFactory

RUNS = int(os.environ.get("BENCH_CALDAV_RUNS", "30"))
USER = "bench"
QUERY = (
    '<?xml version="1.0"?><c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
    '<d:prop><d:getetag/>{data}</d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VTODO">'
    '<c:prop-filter name="COMPLETED"><c:is-not-defined/></c:prop-filter></c:comp-filter></c:comp-filter>'
    "</c:filter></c:calendar-query>"
)
SYNC = (
    '<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token>'
    "<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"
)
# The tasks of the benchmark, written straight into the table: 1,000 in a category, 10,000 without one.
FILL = (
    "INSERT INTO categories (user_id, name) VALUES (:u, 'Work');"
    "INSERT INTO tasks (user_id, title, time_zone, due_date, category_id, priority) "
    "SELECT :u, 'task ' || g, 'Europe/Berlin', now() + g * interval '1 hour', "
    "(SELECT id FROM categories WHERE user_id = :u), 'medium' FROM generate_series(1, 1000) g;"
    "INSERT INTO tasks (user_id, title, time_zone, due_date) "
    "SELECT :u, 'chore ' || g, 'UTC', now() + g * interval '1 minute' FROM generate_series(1, 10000) g;"
)


async def timed(call: Callable[[], Awaitable[None]]) -> tuple[float, float, float]:
    """(median ms, p95 ms, median ms of this process's CPU): the CPU is what the server spends whatever else the
    machine runs, which a shared machine's wall times hide."""
    await call()  # warm-up
    samples = []
    cpu = []
    for _ in range(RUNS):
        started, cpu_started = time.perf_counter(), time.process_time()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    return percentile(samples, 0.5), percentile(samples, 0.95), percentile(cpu, 0.5)


def token_of(body: str) -> str:
    return body.split("<d:sync-token>")[1].split("</d:sync-token>")[0]


async def main() -> None:
    server_dsn = os.environ["TEST_DATABASE_URL"]
    databases = DatabaseFactory(server_dsn, prefix="mcp_todo_bench")
    dsn = await databases.create()
    engine = create_engine(dsn)
    settings = Settings(_env_file=None, MCP_TODO_USER=USER, MCP_TODO_TIMEZONE="UTC")  # type: ignore[call-arg]
    state = AppState(settings=settings, engine=engine, dsn=dsn, embedded=False)
    app = CalDav(state, None, None, [])
    rows: list[tuple[str, float, float, float]] = []
    try:
        async with engine.begin() as conn:
            for statement in FILL.split(";"):
                if statement.strip():
                    await conn.execute(text(statement), {"u": USER})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
            home = await http.request("PROPFIND", f"/dav/{USER}/", headers={"Depth": "1"})
            work = f"/dav/{USER}/cat-" + home.text.split(f"/dav/{USER}/cat-")[1].split("/")[0] + "/"

            async def query(data: str) -> None:
                answer = await http.request("REPORT", work, content=QUERY.format(data=data), headers={"Depth": "1"})
                assert answer.status_code == 207 and answer.text.count("<d:response>") == 1000, answer.text[:300]

            rows.append(("calendar-query, 1,000 open to-dos, ETags only", *await timed(lambda: query(""))))

            async def cold_query() -> None:
                vtodo_module._rendered.clear()
                await query("<c:calendar-data/>")

            rows.append(
                ("calendar-query, 1,000 open to-dos, with calendar-data, none rendered yet", *await timed(cold_query))
            )
            rows.append(
                (
                    "calendar-query, 1,000 open to-dos, with calendar-data, rendered before",
                    *await timed(lambda: query("<c:calendar-data/>")),
                )
            )

            tasks = f"/dav/{USER}/tasks/"
            first = await http.request("REPORT", tasks, content=SYNC.format(token=""))
            latest = [token_of(first.text)]

            async def unchanged() -> None:
                answer = await http.request("REPORT", tasks, content=SYNC.format(token=latest[0]))
                assert answer.status_code == 207 and "<d:response>" not in answer.text

            rows.append(("sync-collection, nothing changed among 10,000", *await timed(unchanged)))

            samples: list[float] = []
            cpu: list[float] = []
            for run in range(RUNS + 1):
                before = token_of((await http.request("REPORT", tasks, content=SYNC.format(token=latest[0]))).text)
                async with engine.begin() as conn:
                    await conn.execute(
                        text(
                            "UPDATE tasks SET title = :t WHERE id = (SELECT min(id) FROM tasks WHERE user_id = :u "
                            "AND category_id IS NULL)"
                        ),
                        {"t": f"changed {run}", "u": USER},
                    )
                started, cpu_started = time.perf_counter(), time.process_time()
                answer = await http.request("REPORT", tasks, content=SYNC.format(token=before))
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.text.count("<d:response>") == 1
                if run:
                    samples.append(elapsed)
                    cpu.append((time.process_time() - cpu_started) * 1000)
            rows.append(
                (
                    "sync-collection, 1 change among 10,000",
                    percentile(samples, 0.5),
                    percentile(samples, 0.95),
                    percentile(cpu, 0.5),
                )
            )

            latest[0] = token_of((await http.request("REPORT", tasks, content=SYNC.format(token=latest[0]))).text)
            polls = 300
            cpu_started = time.process_time()
            for _ in range(polls):
                await unchanged()
            cpu_per_poll_s = (time.process_time() - cpu_started) / polls
    finally:
        await engine.dispose()
        await databases.drop_all()

    load = "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg()) + f" on {os.cpu_count()} cores"
    share = cpu_per_poll_s * 100 / 30 * 100  # 100 clients, one poll each per 30 s, as % of one core
    report = "\n".join(
        [
            "# CalDAV",
            "",
            "`TEST_DATABASE_URL=… .venv/bin/python -m bench.caldav_bench` — server time of the CalDAV ASGI app, "
            f"in-process, {RUNS} runs per row; the machine while it ran: `{load}`.",
            "",
            "| request | median ms | p95 ms | server-process CPU, median ms |",
            "| --- | ---: | ---: | ---: |",
            *(f"| {name} | {median:.1f} | {p95:.1f} | {cpu_ms:.1f} |" for name, median, p95, cpu_ms in rows),
            "",
            f"Ratios in this run: calendar-data costs {rows[1][1] / rows[0][1]:.1f}× the ETags-only query when none "
            f"was rendered before, {rows[2][1] / rows[0][1]:.1f}× once they were; a sync with 1 change costs "
            f"{rows[4][1] / rows[3][1]:.1f}× one with none.",
            "",
            f"100 clients polling sync-collection every 30 s (nothing changed): {cpu_per_poll_s * 1000:.2f} ms of "
            f"server-process CPU per poll, {share:.2f}% of one core (PostgreSQL's own CPU not counted).",
            "",
        ]
    )
    write_report("caldav", report)


if __name__ == "__main__":
    asyncio.run(main())
