"""Every statement on a per-user table names its user (so it routes to one shard of a database distributed by
user_id), or is one of the few cross-user statements named in tests/support/routing.py (and docs/scaling.md).

Proved from the outside: a PostgreSQL of the test's own with pg_stat_statements preloaded (the embedded one; the
TEST_DATABASE_URL server when it already preloads it), a representative run through the real code on it — all 17
tools through the MCP client (batches, subtasks, the trash and restoring from it, dependencies, search, labels,
reminders, the resources), CalDAV on a real `mcp-todo serve`, local mode's relay and both workers' handlers, the
reminder scheduler firing, the trash purge, import and export — then every normalized statement pg_stat_statements
recorded is checked."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from caldav.davclient import DAVClient
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.engine import create_engine
from mcp_todo.jobs.trash_purge import purge_trash
from mcp_todo.pipeline.local_mode import run_local_mode
from mcp_todo.porting.files import export_text, import_file
from tests.e2e.test_caldav import principal_of
from tests.e2e.test_http import ServerProcess, create_token, server_env
from tests.integration.tool_client import server_for, settings_for, tools_of
from tests.support.database import DatabaseFactory, EmbeddedPostgres
from tests.support.routing import CROSS_SHARD, check

pytestmark = [pytest.mark.slow]

# On the test's own reads (left out of the check): pg_stat_statements keeps a comment inside a statement.
PROBE_MARK = "/* routing-test probe */"


async def _preloaded(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return "pg_stat_statements" in str(await conn.fetchval("SHOW shared_preload_libraries"))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def stats_server(pg_server_dsn: str) -> AsyncIterator[str]:
    """A server DSN with pg_stat_statements loaded."""
    if await _preloaded(pg_server_dsn):
        yield pg_server_dsn
        return
    # Not under pytest's temporary directory: the embedded server runs as a user of its own, who cannot enter it.
    directory = tempfile.TemporaryDirectory(prefix="mcp-todo-routing-")
    server = await asyncio.to_thread(EmbeddedPostgres, Path(directory.name))
    try:
        await asyncio.to_thread(server.start)
        conn = await asyncpg.connect(server.dsn)
        try:
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            await conn.execute("ALTER SYSTEM SET pg_stat_statements.max = 10000")
        finally:
            await conn.close()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        assert await _preloaded(server.dsn)
        yield server.dsn
    finally:
        await asyncio.to_thread(server.close)
        directory.cleanup()


async def _recorded(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())"
        )
        return [row["query"] for row in rows if PROBE_MARK not in row["query"]]
    finally:
        await conn.close()


async def _wait_until(engine_dsn: str, sql: str, timeout_s: float = 20.0) -> None:
    conn = await asyncpg.connect(engine_dsn)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await conn.fetchval(sql.replace("SELECT", f"SELECT {PROBE_MARK}", 1)):
            assert asyncio.get_running_loop().time() < deadline, f"never true: {sql}"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _exercise(engine: AsyncEngine, dsn: str) -> None:
    """The representative run: every tool, the local mode's relay and handlers, the scheduler, purge, porting."""
    now = datetime.now(UTC)
    async with tools_of(server_for(engine, dsn, "alice")) as tools, tools_of(server_for(engine, dsn, "bob")) as bob:
        work = await tools.add_category(name="Work", color="#336699")
        home = await tools.add_tag(name="home")
        urgent = await tools.add_tag(name="urgent")
        parent = await tools.add_task(
            title="Move house", due_date="2027-02-01T09:00", category_id=work["id"], tag_ids=[home["id"]]
        )
        child = await tools.add_task(title="Book the van", parent_id=parent["id"], priority="high")
        blocker = await tools.add_task(title="Sign the lease", description="with the agent")
        waiting = await tools.add_task(title="Pay the deposit", blocked_by=[blocker["id"]])
        weekly = await tools.add_task(
            title="Water the plants", due_date="2027-01-04T08:00", recurrence_rule="FREQ=WEEKLY", tag_ids=[urgent["id"]]
        )
        await tools.add_task(title="Call mum", due_date=(now - timedelta(days=1)).isoformat())
        soon = await tools.add_task(title="Stand-up", due_date=(now + timedelta(hours=2)).isoformat())
        await tools.set_reminder(task_id=soon["id"], remind_at=(now + timedelta(seconds=1)).isoformat())
        await tools.set_reminder(task_id=parent["id"], remind_before_minutes=30)
        await tools.update_task(task_id=child["id"], title="Book the big van", due_date="2027-01-30")
        await tools.update_task(task_id=waiting["id"], blocked_by=[])
        await tools.add_tag_to_task(task_id=child["id"], tag_id=urgent["id"])
        await tools.add_tag_to_task(task_ids=[blocker["id"], waiting["id"]], tag_id=home["id"])
        await tools.remove_tag_from_task(task_id=blocker["id"], tag_id=home["id"])
        await tools.list_tasks()
        await tools.list_tasks(status="pending", priority="high", category_id=work["id"], sort_by="due_date")
        await tools.list_tasks(tag_ids=[home["id"]], sort_by="next")
        await tools.list_tasks(ready=True)
        await tools.list_tasks(parent_id=parent["id"])
        await tools.search_tasks(query='van -truck "the agent"')
        await tools.search_tasks(query="", tag_ids=[home["id"]])
        await tools.get_overdue_tasks()
        await tools.get_upcoming_tasks(days=30)
        await tools.list_categories()
        await tools.list_tags()
        await tools.complete_task(task_id=weekly["id"])
        await tools.complete_task(task_ids=[blocker["id"], child["id"]])
        await tools.add_task(
            tasks=[{"title": "Batch one", "tag_ids": [home["id"]]}, {"title": "Batch two", "priority": "low"}]
        )
        await tools.delete_task(task_id=parent["id"])  # to the trash with its subtask
        await tools.update_task(task_id=parent["id"], status="pending")  # restored
        gone = await tools.add_task(title="Old junk")
        await tools.delete_task(task_id=gone["id"])
        await tools.delete_tag(tag_id=urgent["id"])
        await tools.delete_category(category_id=work["id"])
        for resource in (await tools.client.list_resources()).resources:
            await tools.client.read_resource(str(resource.uri))
        await bob.add_task(title="bob's own")
        await bob.list_tasks()
    # The workers' handlers (local mode): the next occurrence, the reminder's notification.
    await _wait_until(dsn, "SELECT count(*) > 0 FROM notifications")
    await _wait_until(dsn, "SELECT count(*) = 2 FROM tasks WHERE title = 'Water the plants'")
    await _wait_until(dsn, "SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL")
    settings = settings_for(dsn, "alice")
    exported = await export_text(engine, "alice", "json", now=now)
    await export_text(engine, "alice", "ics", now=now)
    await import_file(engine, settings_for(dsn, "carol"), "carol", exported.encode(), now=now)
    await purge_trash(engine, settings, now=now + timedelta(days=365))
    assert json.loads(exported)["tasks"]


async def _caldav(dsn: str, tmp_path: Path) -> None:
    """CalDAV on a real `mcp-todo serve`: discovery, a collection made, to-dos added, listed, completed, synced by
    token, moved and deleted (the caldav library, as tests/e2e/test_caldav.py drives it)."""
    env = server_env(dsn)
    token = create_token(env, "alice")
    server = ServerProcess("streamable-http", dsn, tmp_path, insecure_local=False)
    client = DAVClient(url=f"{server.base}/.well-known/caldav", username="alice", password=token, require_tls=False)
    try:
        await server.wait_healthy()

        def run() -> None:
            principal = principal_of(client)
            work = principal.make_calendar(name="Errands", cal_id="errands", supported_calendar_component_set=["VTODO"])
            inbox = next(c for c in principal.calendars() if c.get_display_name() == "Tasks")
            first = work.add_todo(summary="post the letter", due=datetime.now(UTC) + timedelta(days=1))
            inbox.add_todo(summary="fix the bike", categories=["home"])
            synced = inbox.objects_by_sync_token(load_objects=True)
            work.todos()
            first.complete()
            work.todos(include_completed=True)
            inbox.objects_by_sync_token(sync_token=synced.sync_token, load_objects=True)
            first.delete()
            work.objects_by_sync_token(load_objects=False)

        await asyncio.to_thread(run)
    finally:
        client.close()
        server.stop()


async def test_every_statement_on_a_per_user_table_names_its_user_or_is_listed(
    stats_server: str, tmp_path: Path
) -> None:
    factory = DatabaseFactory(stats_server, prefix="mcp_todo_routing")
    try:
        dsn = await factory.create()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
        finally:
            await conn.close()
        engine = create_engine(dsn, pool_size=4)
        stop = asyncio.Event()
        local = asyncio.create_task(run_local_mode(engine, dsn, settings_for(dsn, "alice"), stop))
        try:
            await _exercise(engine, dsn)
            await _caldav(dsn, tmp_path)
        finally:
            stop.set()
            await asyncio.wait_for(local, 30)
            await engine.dispose()
        queries = await _recorded(dsn)
    finally:
        await factory.drop_all()

    violations, listed = check(queries)
    report = "\n\n".join(f"{sorted(v.tables)}: {' '.join(v.query.split())}" for v in violations)
    assert not violations, f"{len(violations)} statement(s) on a per-user table without user_id:\n\n{report}"
    # The run really went through the cross-user paths the list names (so the list is checked, not just kept).
    seen = set(listed)
    for name in ("reminder due scan", "trash purge", "relay claim", "relay mark / fail"):
        assert name in seen, (name, sorted(seen))
    assert {entry.name for entry in CROSS_SHARD} >= seen
    assert len(queries) > 60, len(queries)
    assert any("dav_collection_names" in query for query in queries), "the CalDAV requests reached the database"
