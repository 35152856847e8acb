"""Behind PgBouncer in transaction mode (Debian's 1.18, which cannot carry prepared statements): what the engine must
do there, and which URL each part of mcp-todo connects to when MCP_TODO_DIRECT_DATABASE_URL is set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.engine import check_connection, create_engine, resolve_database
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.settings import Settings
from tests.support.broker import free_port
from tests.support.pooler import PgBouncer, pgbouncer


@pytest.fixture(scope="module")
def two_connection_pool(pg_server_dsn: str) -> Iterator[PgBouncer]:
    """Two server connections for the database and user: a client's next transaction may land on the other one."""
    with pgbouncer(pg_server_dsn, pool_size=2) as bouncer:
        yield bouncer


async def alternate(engine: AsyncEngine) -> None:
    """Client A runs a statement, client B then holds the server connection A used, and A runs it again: on the
    other server connection, where a statement A prepared before does not exist."""
    a = await engine.connect()
    b = await engine.connect()
    try:
        for _ in range(3):
            assert (await a.execute(text("SELECT 1"))).scalar() == 1
            await a.commit()
            await b.execute(text("SELECT 2, 3"))
            assert (await a.execute(text("SELECT 1"))).scalar() == 1
            await a.commit()
            await b.commit()
    finally:
        await a.close()
        await b.close()


async def test_an_engine_with_statement_caches_breaks_behind_transaction_pooling(
    two_connection_pool: PgBouncer, database_dsn: str
) -> None:
    """The failure the pooled engine exists for (if this passes one day, PgBouncer learned to carry statements)."""
    engine = create_engine(two_connection_pool.pooled(database_dsn), pool_size=2)
    try:
        with pytest.raises(exc.DBAPIError, match="prepared statement"):
            await alternate(engine)
    finally:
        await engine.dispose()


async def test_a_pooled_engine_works_behind_transaction_pooling(
    two_connection_pool: PgBouncer, database_dsn: str
) -> None:
    # Two engines (two replicas) one after the other: the second's statements meet the server connections the first
    # left, where asyncpg's per-process names would collide.
    for _ in range(2):
        engine = create_engine(two_connection_pool.pooled(database_dsn), pool_size=2, pooled=True)
        try:
            await alternate(engine)
        finally:
            await engine.dispose()


def settings(**env: str) -> Settings:
    return Settings.model_validate({"KAFKA_BOOTSTRAP_SERVERS": "", **env})


async def test_the_direct_url_serves_sessions_and_the_pooled_one_transactions() -> None:
    plain = await resolve_database(settings(DATABASE_URL="postgres://u@pooler:6432/todo"))
    assert (plain.engine, plain.session, plain.pooled) == ("postgresql://u@pooler:6432/todo",) * 2 + (False,)
    both = await resolve_database(
        settings(DATABASE_URL="postgresql://u@pooler:6432/todo", MCP_TODO_DIRECT_DATABASE_URL="postgres://u@db/todo")
    )
    assert (both.engine, both.session, both.pooled) == (
        "postgresql://u@pooler:6432/todo",
        "postgresql://u@db/todo",
        True,
    )
    # A blank direct URL is unset (as .env templates leave a setting for later).
    blank = await resolve_database(settings(DATABASE_URL="postgresql://u@db/todo", MCP_TODO_DIRECT_DATABASE_URL=" "))
    assert not blank.pooled


async def test_a_malformed_direct_url_is_refused_by_its_own_name() -> None:
    with pytest.raises(ConfigurationError, match=r"^MCP_TODO_DIRECT_DATABASE_URL must start with postgresql://"):
        await resolve_database(
            settings(DATABASE_URL="postgresql://u@pooler/todo", MCP_TODO_DIRECT_DATABASE_URL="mysql://u@db/todo")
        )


def test_the_direct_url_is_a_secret() -> None:
    loaded = settings(DATABASE_URL="postgresql://u@pooler/todo", MCP_TODO_DIRECT_DATABASE_URL="postgresql://u:pw@db/t")
    assert isinstance(loaded.direct_database_url, SecretStr)
    assert "pw" not in repr(loaded)


async def test_a_pooler_whose_database_is_down_fails_the_connection_check_as_unreachable() -> None:
    """PgBouncer accepts the client and answers the first query with an error: the check runs one, so a worker or a
    server starting meanwhile waits (or exits 2 and is restarted) instead of crashing on its first statement."""
    from mcp_todo.server.app import is_transient

    with pgbouncer(f"postgresql://postgres@127.0.0.1:{free_port()}/gone") as bouncer:
        with pytest.raises(ConfigurationError, match=r"^cannot reach the database at ") as raised:
            await check_connection(bouncer.pooled("postgresql://postgres@127.0.0.1/gone"), timeout_s=20)
        assert is_transient(raised.value)
        # PgBouncer's own answer, not the check's timeout.
        assert "no answer in time" not in str(raised.value), raised.value
