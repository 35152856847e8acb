"""How many statements each tool sends to PostgreSQL for a representative call, held to a committed budget so round
trips cannot creep back (each is a network round trip; on a fast LAN most of a tool call's time).

Counted on the engine: every statement the code executes, plus BEGIN and COMMIT (asyncpg sends each as a statement of
its own, outside the cursor, so they are counted from the transaction events). A call that opens no transaction is
counted the same way. The pool sends nothing on checkout (no pre-ping), so these are all the round trips of a call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db import engine as engine_module
from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.engine import create_engine
from tests.integration.tool_client import Tools, server_for, tools_of
from tests.support.polling import eventually

# tool → the most statements (BEGIN and COMMIT included) its representative call below may send.
BUDGETS: Final[dict[str, int]] = {
    "add_task": 4,  # BEGIN, INSERT … RETURNING the task, the outbox INSERT, COMMIT
    "update_task": 5,  # + the locking read of the task as it was
    # BEGIN, lock the task (before its subtasks are read: one added concurrently is taken along), the statement,
    # the outbox, COMMIT
    "complete_task": 5,
    "delete_task": 5,
    "set_reminder": 5,
    "add_category": 5,  # BEGIN, the per-user lock, the count, INSERT, COMMIT
    "list_categories": 3,
    "delete_category": 7,  # BEGIN, lock it, lock its tasks, DELETE, touch the tasks, outbox, COMMIT
    "add_tag": 5,
    "list_tags": 3,
    "delete_tag": 7,
    "add_tag_to_task": 6,  # BEGIN, lock the task, link, touch, outbox, COMMIT
    "remove_tag_from_task": 6,
    "list_tasks": 3,  # BEGIN, the page of tasks, COMMIT
    "search_tasks": 4,  # + the choice of text-search configuration
    "get_overdue_tasks": 3,
    "get_upcoming_tasks": 3,
}


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def reset(self) -> None:
        self.statements.clear()

    @property
    def count(self) -> int:
        return len(self.statements)


@contextmanager
def counting(engine: AsyncEngine) -> Iterator[StatementCounter]:
    counter = StatementCounter()
    sync = engine.sync_engine

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        counter.statements.append(statement)

    def on_begin(_conn: Any) -> None:
        counter.statements.append("BEGIN")

    def on_commit(_conn: Any) -> None:
        counter.statements.append("COMMIT")

    def on_rollback(_conn: Any) -> None:
        counter.statements.append("ROLLBACK")

    listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", on_execute),
        ("begin", on_begin),
        ("commit", on_commit),
        ("rollback", on_rollback),
    ]
    for name, fn in listeners:
        event.listen(sync, name, fn)
    try:
        yield counter
    finally:
        for name, fn in listeners:
            event.remove(sync, name, fn)


async def representative_calls(tools: Tools) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(tool, arguments) for each of the 17 tools, on a user with a few tasks, a category and tags."""
    category = await tools.add_category(name="work")
    doomed_category = await tools.add_category(name="old")
    tag = await tools.add_tag(name="urgent")
    other_tag = await tools.add_tag(name="home")
    doomed_tag = await tools.add_tag(name="later")
    task = await tools.add_task(title="write report", due_date="2027-03-10T09:00", category_id=category["id"])
    in_doomed = await tools.add_task(
        title="file papers", category_id=doomed_category["id"], tag_ids=[doomed_tag["id"], tag["id"]]
    )
    await tools.add_task(title="renew passport", due_date="2026-01-05T09:00")  # overdue
    yield "add_task", {"title": "bench-like task", "due_date": "2027-03-10T09:00", "priority": "high"}
    yield "update_task", {"task_id": task["id"], "title": "write the report"}
    yield "set_reminder", {"task_id": task["id"], "remind_before_minutes": 30}
    yield "add_tag_to_task", {"task_id": task["id"], "tag_id": tag["id"]}
    yield "remove_tag_from_task", {"task_id": task["id"], "tag_id": tag["id"]}
    yield "add_category", {"name": "home"}
    yield "list_categories", {}
    yield "add_tag", {"name": "someday"}
    yield "list_tags", {}
    yield "list_tasks", {"status": "pending", "sort_by": "due_date", "sort_order": "asc"}
    yield "search_tasks", {"query": "report"}
    yield "get_overdue_tasks", {}
    yield "get_upcoming_tasks", {"days": 365}
    yield "delete_category", {"category_id": doomed_category["id"]}
    yield "delete_tag", {"tag_id": doomed_tag["id"]}
    yield "complete_task", {"task_id": task["id"]}
    yield "delete_task", {"task_id": in_doomed["id"]}
    assert other_tag  # a tag no task carries, so list_tags counts a zero too


async def statements_per_tool(tools: Tools, engine: AsyncEngine) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    with counting(engine) as counter:
        async for tool, arguments in representative_calls(tools):
            counter.reset()
            await tools.call(tool, **arguments)
            seen[tool] = list(counter.statements)
    return seen


def over_budget(seen: dict[str, list[str]]) -> dict[str, list[str]]:
    return {tool: statements for tool, statements in seen.items() if len(statements) > BUDGETS[tool]}


async def test_every_tool_stays_within_its_statement_budget(tools: Tools, db: AsyncEngine) -> None:
    seen = await statements_per_tool(tools, db)
    assert set(seen) == set(BUDGETS), "every tool has a budget and a representative call"
    assert over_budget(seen) == {}


async def test_an_added_statement_breaks_the_budget(
    tools: Tools, db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget can fail: one more round trip in complete_task is caught."""
    original = tasks_db.complete

    async def complete_with_an_extra_read(conn: Any, *args: Any) -> Any:
        await conn.execute(text("SELECT 1"))
        return await original(conn, *args)

    monkeypatch.setattr(tasks_db, "complete", complete_with_an_extra_read)
    seen = await statements_per_tool(tools, db)
    assert list(over_budget(seen)) == ["complete_task"]


async def test_a_pooled_connection_the_server_closed_is_replaced_without_a_ping(
    db: AsyncEngine, database_dsn: str
) -> None:
    """Without pre-ping, a connection the server ended while it sat in the pool (restart, idle timeout) is still never
    handed to a call: asyncpg has seen it close, and the checkout check swaps it for a fresh one."""
    import asyncpg

    # An engine of this test's own, so that the pool holds exactly the connections this test watches.
    engine = create_engine(database_dsn, pool_size=2)
    pooled: list[Any] = []
    event.listen(engine.sync_engine.pool, "connect", lambda dbapi_connection, _record: pooled.append(dbapi_connection))
    try:
        async with tools_of(server_for(engine, database_dsn, "alice")) as tools:
            await tools.list_tags()
            assert pooled
            admin = await asyncpg.connect(database_dsn)
            try:
                ended = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                assert ended >= 1
            finally:
                await admin.close()
            await eventually(
                lambda: all(c.driver_connection.is_closed() for c in pooled),
                timeout_s=10,
                what="asyncpg saw the server close the pooled connections",
            )
            for _ in range(3):
                await tools.add_task(title="after the server closed the pool's connections")
    finally:
        await engine.dispose()


async def test_an_idle_pooled_connection_is_pinged_before_use(
    tools: Tools, db: AsyncEngine, database_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that sat idle is pinged at checkout, so one the server ended before this process read the news
    (asyncpg does not know it is closed yet) is still never handed to a call."""
    import asyncpg

    await tools.list_tags()
    monkeypatch.setattr(engine_module, "IDLE_PING_AFTER_S", 0.0)  # every checkout counts as after a pause
    # As if the server's goodbye had not been read yet: the pool's first check sees every connection open.
    monkeypatch.setattr(engine_module, "_known_closed", lambda _driver: False)
    admin = await asyncpg.connect(database_dsn)
    try:
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    for _ in range(3):
        await tools.add_task(title="after the server ended the idle connections")
