"""CalDAV writes through the service (mcp_todo.service.dav_tasks) where two requests race."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db import labels as labels_db
from mcp_todo.db.labels import TAG
from mcp_todo.service.context import Ctx
from mcp_todo.service.dav_tasks import ClientTask, create_task
from tests.integration.tool_client import settings_for


async def test_a_put_naming_a_tag_another_request_creates_meanwhile_uses_that_tag(
    db: AsyncEngine, database_dsn: str
) -> None:
    ctx = Ctx(engine=db, user_id="alice", settings=settings_for(database_dsn, "alice"))
    async with db.connect() as other:
        # Another request has checked the user's tags and inserted "errands", not committed yet.
        transaction = await other.begin()
        await labels_db.lock_user_scope(other, TAG, "alice")
        tag_id = await labels_db.insert_label(other, TAG, "alice", "errands", None, ctx.now)
        put = asyncio.create_task(
            create_task(ctx, ClientTask(uid="u-1", title="buy milk", tags=["Errands"]), None, None)
        )
        # The PUT reads no such tag yet, then waits on the lock to create it.
        await _waiting_on_an_advisory_lock(db)
        assert not put.done()
        await transaction.commit()
    task_id = await put
    async with db.connect() as conn:
        tagged = await conn.scalar(
            text("SELECT array_agg(tag_id) FROM task_tags WHERE user_id = 'alice' AND task_id = :id"), {"id": task_id}
        )
    assert tagged == [tag_id]


async def _waiting_on_an_advisory_lock(engine: AsyncEngine) -> None:
    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    async with asyncio.timeout(10):
        while True:
            async with engine.connect() as conn:
                if await conn.scalar(waiting):
                    return
            await asyncio.sleep(0.02)
