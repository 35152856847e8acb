"""What the model reads, before and after lean results, in the same run on the same database:

    .venv/bin/python -m bench.lean_bench            # TEST_DATABASE_URL's server, else an embedded PostgreSQL

Seeds 100 users × 10 000 tasks (as bench/core_bench.py does), checks out the commit before lean results
(BENCH_BASE_COMMIT, default 58cb256) in a temporary git worktree, and runs bench/lean_measure.py against each tree in
turn (alternating, two rounds each, so both see the same machine load): the sizes of tools/list, a 50-task list_tasks
(text and structured) and a plain add_task's text, and p50/p95 of list_tasks and search_tasks through the official
MCP client. Also the server's cold start (`import mcp_todo.server.app`, median of 7 fresh processes) of each tree and
the first time phrase's cost (dateparser is imported then). Writes bench/results/lean.md and prints it.
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

from bench.common import percentile, write_report
from bench.core_bench import TASKS_PER_USER, USER, USERS, ZONE, seed
from tests.support.database import DatabaseFactory, PostgresServer

ROOT = Path(__file__).resolve().parent.parent
BASE_COMMIT = os.environ.get("BENCH_BASE_COMMIT", "58cb256")
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
        measure = str(ROOT / "bench" / "lean_measure.py")
        for _ in range(ROUNDS):
            for side, tree in (("before", base), ("after", ROOT)):
                out = await asyncio.to_thread(run_in, tree, measure, dsn, USER, ZONE, str(SAMPLES // ROUNDS))
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

    def pooled(side: str, key: str) -> list[float]:
        return [sample for run in results[side] for sample in run[key]]

    before, after = results["before"][0], results["after"][0]
    pg = "embedded PostgreSQL 18" if embedded else "TEST_DATABASE_URL's PostgreSQL"
    lines = [
        "# What the model reads, before and after lean results",
        "",
        f"`.venv/bin/python -m bench.lean_bench` on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {pg}; {USERS} users × {TASKS_PER_USER:,} tasks (seeding took {seed_s:.0f} s); "
        f"before = commit {BASE_COMMIT}, after = this tree; {SAMPLES} calls of each tool per side after warm-up, "
        f"in {ROUNDS} alternating rounds. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| measure | before | after |",
        "|---|---|---|",
        f"| tools/list, bytes of the tools' JSON | {before['tools_list_bytes']:,} | {after['tools_list_bytes']:,} |",
        f"| list_tasks of 50 (seeded), text bytes | {before['list_text_bytes']:,} | {after['list_text_bytes']:,} |",
        f"| list_tasks of 50 (seeded), structured bytes | {before['list_structured_bytes']:,} | "
        f"{after['list_structured_bytes']:,} |",
        f"| plain add_task, text bytes | {before['add_text_bytes']:,} | {after['add_text_bytes']:,} |",
        f"| list_tasks p50 / p95 ms | {p(pooled('before', 'list_ms'))} | {p(pooled('after', 'list_ms'))} |",
        f"| search_tasks p50 / p95 ms | {p(pooled('before', 'search_ms'))} | {p(pooled('after', 'search_ms'))} |",
        f"| cold start, `import mcp_todo.server.app`, ms | {cold['before']:.0f} | {cold['after']:.0f} |",
        "",
        f"The first time phrase in a process costs {first_phrase:.0f} ms more (dateparser's import and its English "
        "data); later phrases ~1 ms. The seeded tasks have no tags, categories or rules: tests/e2e/test_lean_sizes.py "
        "measures the realistic 50-task list over stdio.",
        "",
    ]
    write_report("lean", "\n".join(lines))


if __name__ == "__main__":
    main()
