"""The HTTP request path alone: server CPU per request through the ASGI app, without sockets or uvicorn, for this
tree and a base commit in the same run:

    .venv/bin/python -m bench.http_path                 # TEST_DATABASE_URL's server, else an embedded PostgreSQL
    BENCH_BASE_COMMIT=<commit> BENCH_REQUESTS=500 BENCH_ROUNDS=7 .venv/bin/python -m bench.http_path

A JSON-RPC `ping` (answered by the SDK without touching the database) is sent BENCH_REQUESTS times per round through
(a) `http_app` as `mcp-todo serve` builds it, with an `mtd_` token (its middlewares, the SDK's authentication and
Host/Origin checks, the stateless transport) and (b) the SDK's bare streamable-HTTP app of the same server (no token,
no middlewares of ours). The difference is what this project adds to every request; a tool call adds its own work on
top (bench/load.py measures whole calls). CPU is the process's (time.process_time), logging configured as the server
configures it. Each tree runs in its own process, alternating, BENCH_ROUNDS rounds; medians, and the median of the
rounds' ratios (a) ÷ (b). Writes bench/results/http_path.md and prints it.
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

ROOT = Path(__file__).resolve().parent.parent
BASE_COMMIT = os.environ.get("BENCH_BASE_COMMIT", "94e3f57")
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "500"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
PING = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()


async def cpu_per_request_us(app: Any, requests: int, extra_headers: list[tuple[bytes, bytes]]) -> float:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
        (b"content-length", str(len(PING)).encode()),
        (b"mcp-protocol-version", b"2025-11-25"),
        *extra_headers,
    ]
    statuses: list[int] = []

    async def one() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/mcp",
            "raw_path": b"/mcp",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": PING, "more_body": False}
            await asyncio.Event().wait()  # no disconnect while the request runs
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)

    started = time.process_time()
    for _ in range(requests):
        await one()
    elapsed = time.process_time() - started
    assert set(statuses) == {200}, statuses[:5]
    return elapsed / requests * 1e6


async def measure_here(dsn: str) -> dict[str, float]:
    """In a process whose mcp_todo is the tree to measure: (a) and (b) once each."""
    import asyncpg
    from pydantic import SecretStr

    from mcp_todo.auth import create_token
    from mcp_todo.runtime.logs import configure_logging
    from mcp_todo.server import app as app_module
    from mcp_todo.settings import Settings

    try:
        from mcp_todo.server.http_server import http_app  # type: ignore[attr-defined, unused-ignore]
    except ImportError:  # a tree from before the HTTP serving had its own module
        http_app = app_module.http_app  # type: ignore[attr-defined, unused-ignore]
    configure_logging()
    conn = await asyncpg.connect(dsn)
    try:
        _, token = await create_token(conn, "bench-path", None)
    finally:
        await conn.close()
    settings = Settings(database_url=SecretStr(dsn), timezone="UTC")
    public_url = "http://127.0.0.1:8000"
    async with app_module.open_app_state(settings) as state:
        state.token_auth = True
        ours = http_app(
            app_module.build_server(settings, state=state, public_url=public_url),
            "streamable-http",
            "127.0.0.1",
            settings,
            public_url=public_url,
            draining=asyncio.Event(),
        )
        bare = app_module.build_server(settings, state=state).streamable_http_app(
            stateless_http=True, json_response=True, host="127.0.0.1"
        )
        async with ours.router.lifespan_context(ours), bare.router.lifespan_context(bare):
            await cpu_per_request_us(ours, 50, [(b"authorization", f"Bearer {token}".encode())])  # warm-up
            await cpu_per_request_us(bare, 50, [])
            return {
                "ours": await cpu_per_request_us(ours, REQUESTS, [(b"authorization", f"Bearer {token}".encode())]),
                "bare": await cpu_per_request_us(bare, REQUESTS, []),
            }


def run_tree(tree: Path, dsn: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", dsn],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.common import write_report
    from tests.support.database import DatabaseFactory, PostgresServer

    base = Path(tempfile.mkdtemp(prefix="mcp-todo-base-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(base), BASE_COMMIT], cwd=ROOT, check=True)
    postgres = PostgresServer("mcp-todo-bench-")
    databases = DatabaseFactory(postgres.dsn, prefix="mcp_todo_bench")
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    load_before = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    try:
        dsn = asyncio.run(databases.create())
        for _ in range(ROUNDS):
            for side, tree in (("before", base), ("after", ROOT)):
                runs[side].append(run_tree(tree, dsn))
    finally:
        asyncio.run(databases.drop_all())
        postgres.close()
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    load_after = " / ".join(f"{value:.2f}" for value in os.getloadavg())

    def med(side: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[side])

    def ratio(side: str) -> float:
        return statistics.median(run["ours"] / run["bare"] for run in runs[side])

    lines = [
        "# The HTTP request path: CPU per request through the ASGI app",
        "",
        f"`.venv/bin/python -m bench.http_path` on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; before = commit {BASE_COMMIT}, after = this tree; {ROUNDS} rounds of "
        f"{REQUESTS} `ping` requests per app, each tree in its own process, alternating. Run "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average (1 / 5 / 15 min) {load_before} before, {load_after} "
        "after.",
        "",
        "| µs of CPU per request (median) | before | after |",
        "|---|---|---|",
        f"| `http_app` with an `mtd_` token | {med('before', 'ours'):.0f} | {med('after', 'ours'):.0f} |",
        f"| the SDK's bare app, same process | {med('before', 'bare'):.0f} | {med('after', 'bare'):.0f} |",
        f"| ratio (median of the rounds') | {ratio('before'):.3f} | {ratio('after'):.3f} |",
        "",
        "Both apps of a side run in one process with the logging the server configures, so what `http_app` changes "
        "for the process (the SDK's per-request INFO line no longer logged, in the after tree) shows in both rows; "
        "the difference between the rows is the token check and the middlewares of ours.",
        "",
    ]
    write_report("http_path", "\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(asyncio.run(measure_here(sys.argv[2]))))
    else:
        main()
