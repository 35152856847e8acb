"""Migration 0008 (user_id in every per-user key) on a copy with data: a database at 0007 filled with 20,000 tasks of
1,000 users and their categories, tags, subtasks, dependencies, reminders, notifications, outbox and CalDAV rows
(bench/migration_locks.py's fill, which the benchmark runs with a million), upgraded while writers keep writing. Every
row survives, every foreign key is validated and holds, no writer waits long, and the service reads and writes the
migrated data as before."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.migration_locks import fingerprint, migrate_under_probes, prepared_copy
from mcp_todo.db.engine import create_engine
from mcp_todo.db.migrate import head_revision, migrate
from tests.integration.tool_client import server_for, tools_of
from tests.support.database import DatabaseFactory

TASKS = 20_000


@pytest.fixture(scope="module")
async def migrated_copy(db_factory: DatabaseFactory) -> AsyncIterator[tuple[str, dict[str, tuple[int, int]], float]]:
    dsn = await prepared_copy(db_factory, TASKS)
    before = await fingerprint(dsn)
    figures = await migrate_under_probes(dsn)
    yield dsn, before, max(figures.probe_wait_s.values())


@pytest.fixture(scope="module")
async def copy_engine(migrated_copy: tuple[str, object, float]) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_copy[0], pool_size=2)
    yield engine
    await engine.dispose()


async def test_every_row_survives_and_every_foreign_key_is_validated(
    migrated_copy: tuple[str, dict[str, tuple[int, int]], float],
) -> None:
    dsn, before, longest_wait = migrated_copy
    assert before["tasks"][0] == TASKS
    assert await fingerprint(dsn) == before
    # Writers went on: none waited anywhere near a table scan's time (the constraint swaps take milliseconds).
    assert longest_wait < 2.0, longest_wait
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == head_revision()
        assert await conn.fetch("SELECT conname FROM pg_constraint WHERE NOT convalidated") == []
        assert await conn.fetch("SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid") == []
        leading = await conn.fetch(
            "SELECT c.conrelid::regclass::text AS t, c.conname, a.attname FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.contype IN ('p', 'u', 'f') AND c.connamespace = 'public'::regnamespace "
            "AND c.conrelid::regclass::text NOT IN ('api_tokens', 'alembic_version')"
        )
        assert leading and all(row["attname"] == "user_id" for row in leading), leading
        # The keys hold: a tag link across users is refused, as is a subtask under another user's task.
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("INSERT INTO task_tags (task_id, tag_id, user_id) VALUES (3, 1, 'u3')")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("UPDATE tasks SET parent_id = 4 WHERE user_id = 'u3' AND id = 3")
    finally:
        await conn.close()


async def test_the_service_reads_and_writes_the_migrated_data(
    copy_engine: AsyncEngine, migrated_copy: tuple[str, object, float]
) -> None:
    dsn = migrated_copy[0]
    # u3: subtasks (task 1003 under 3, 2003 under 1003, …) and a tag on each (odd ids).
    async with tools_of(server_for(copy_engine, dsn, "u3")) as tools:
        listed = await tools.list_tasks(status="all", limit=100)
        assert listed["total"] == TASKS // 1000
        by_id = {task["id"]: task for task in listed["tasks"]}
        assert by_id[1003]["parent_id"] == 3 and by_id[2003]["parent_id"] == 1003
        assert all(len(task["tags"]) == 1 for task in listed["tasks"])
        done = await tools.complete_task(task_id=1003)
        assert done["status"] == "completed"
        assert (await tools.search_tasks(query="task 3003"))["tasks"][0]["id"] == 3003
    # u57: 2057 waits on 57.
    async with tools_of(server_for(copy_engine, dsn, "u57")) as tools:
        listed = await tools.list_tasks(status="all", limit=100)
        assert {task["id"]: task.get("blocked_by") for task in listed["tasks"]}[2057] == [57]
        await tools.delete_task(task_id=57)
    # u1: reminders; u2: categories, which a delete takes off their tasks first.
    async with tools_of(server_for(copy_engine, dsn, "u1")) as tools:
        upcoming = await tools.get_upcoming_tasks(days=30, limit=100)
        assert any(task["remind_at"] for task in upcoming["tasks"])
    async with tools_of(server_for(copy_engine, dsn, "u2")) as tools:
        categories = await tools.list_categories()
        first = categories["categories"][0]
        assert first["task_count"] > 0
        deleted = await tools.delete_category(category_id=first["id"])
        assert deleted["tasks_affected"] == first["task_count"]
        assert all(
            task["category"] is None or task["category"]["id"] != first["id"]
            for task in (await tools.list_tasks(status="all", limit=100))["tasks"]
        )


async def test_a_run_stopped_half_way_is_finished_by_the_next(db_factory: DatabaseFactory) -> None:
    dsn = await prepared_copy(db_factory, 1000)
    before = await fingerprint(dsn)
    conn = await asyncpg.connect(dsn)
    engine = create_engine(dsn, pool_size=1)
    try:
        # What a stopped run leaves: one index built, one concurrent build that failed (invalid, and not unique).
        await conn.execute("CREATE UNIQUE INDEX tasks_pkey_user ON tasks (user_id, id)")
        await conn.execute("CREATE INDEX outbox_pkey_user ON outbox (user_id, id)")
        await conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'outbox_pkey_user'::regclass")
        await migrate(engine)
        assert await conn.fetchval("SELECT pg_get_indexdef('outbox_pkey'::regclass)") == (
            "CREATE UNIQUE INDEX outbox_pkey ON public.outbox USING btree (user_id, id)"
        )
        # Run again over a finished one: nothing left to do, nothing changed.
        await conn.execute("UPDATE alembic_version SET version_num = '0007'")
        await migrate(engine, "0008")
        assert await conn.fetch("SELECT indexrelid FROM pg_index WHERE NOT indisvalid") == []
        assert await fingerprint(dsn) == before
    finally:
        await conn.close()
        await engine.dispose()
