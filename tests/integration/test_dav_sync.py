"""CalDAV sync tokens over the database: a token is a snapshot, and the changes since it are the rows its snapshot
does not see — including a write by a transaction that started before the token was handed out and committed after
(which a sequence number taken at write time would lose), and tasks that left the collection."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_todo.db import dav as dav_db
from mcp_todo.jobs.trash_purge import prune_tombstones
from tests.integration.tool_client import settings_for


async def _token(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            return await dav_db.current_snapshot(conn)


async def _changes(engine: AsyncEngine, category_id: int | None, token: str) -> tuple[list[str], list[str]]:
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            changed, gone = await dav_db.changes_since(conn, "alice", category_id, token)
    return sorted(row["title"] for row in changed), sorted(gone)


async def _insert(conn: AsyncConnection, title: str, category_id: int | None = None) -> int:
    found = await conn.scalar(
        text("INSERT INTO tasks (user_id, title, time_zone, category_id) VALUES ('alice', :t, 'UTC', :c) RETURNING id"),
        {"t": title, "c": category_id},
    )
    return int(found)


async def test_a_write_committed_after_the_token_by_an_earlier_transaction_is_reported(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        first = await _insert(conn, "first")
    start = await _token(db)
    async with db.connect() as slow:
        transaction = await slow.begin()
        await slow.execute(text("UPDATE tasks SET title = 'slow edit' WHERE id = :id"), {"id": first})
        # Another writer starts and commits while the slow one is open, and a client syncs in between.
        async with db.begin() as conn:
            await _insert(conn, "quick")
        between = await _token(db)
        assert await _changes(db, None, start) == (["quick"], [])
        await transaction.commit()
    assert await _changes(db, None, between) == (["slow edit"], [])
    assert await _changes(db, None, await _token(db)) == ([], [])


async def test_tasks_that_leave_a_collection_are_reported_gone_there(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        work = int(
            await conn.scalar(text("INSERT INTO categories (user_id, name) VALUES ('alice', 'Work') RETURNING id"))
        )
        moved = await _insert(conn, "moved", work)
        purged = await _insert(conn, "purged", work)
        await _insert(conn, "stays", work)
        # Created and moved in one transaction: no client saw it in Work, so it leaves no tombstone there.
        unseen = await _insert(conn, "unseen", work)
        await conn.execute(text("UPDATE tasks SET category_id = NULL WHERE id = :id"), {"id": unseen})
        rows = (await conn.execute(text("SELECT title, uid FROM tasks WHERE user_id = 'alice'"))).all()
        uids: dict[str, str] = {row.title: row.uid for row in rows}
    token = await _token(db)
    async with db.begin() as conn:
        await conn.execute(text("UPDATE tasks SET category_id = NULL WHERE id = :id"), {"id": moved})
        await conn.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": purged})
    assert await _changes(db, work, token) == ([], sorted([f"{uids['moved']}.ics", f"{uids['purged']}.ics"]))
    assert await _changes(db, None, token) == (["moved"], [])
    async with db.begin() as conn:
        unseen_stones = text("SELECT count(*) FROM dav_tombstones WHERE uid = :u")
        assert await conn.scalar(unseen_stones, {"u": uids["unseen"]}) == 0


async def _outlived(engine: AsyncEngine, user: str, token: str) -> bool:
    async with engine.connect() as conn:
        return await dav_db.token_outlived(conn, user, token)


async def test_tombstones_past_the_retention_are_pruned_and_tokens_that_missed_them_are_refused(
    db: AsyncEngine, database_dsn: str
) -> None:
    async with db.begin() as conn:
        old = await _insert(conn, "old")
        recent = await _insert(conn, "recent")
        uids = {row.title: row.uid for row in await conn.execute(text("SELECT title, uid FROM tasks"))}
    before_both = await _token(db)
    async with db.begin() as conn:
        await conn.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": old})
        await conn.execute(text("UPDATE dav_tombstones SET made_at = now() - interval '31 days'"))
    between = await _token(db)
    async with db.begin() as conn:
        await conn.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": recent})
    assert not await _outlived(db, "alice", before_both)  # nothing pruned yet

    settings = settings_for(database_dsn)
    assert settings.dav_tombstone_days == 30
    assert await prune_tombstones(db, settings) == 1  # the old one; the recent one is kept
    async with db.connect() as conn:
        kept = [row[0] for row in await conn.execute(text("SELECT href FROM dav_tombstones"))]
    assert kept == [f"{uids['recent']}.ics"]
    # A token from before the pruned deletion could miss it: refused. One that saw it still gets what follows.
    assert await _outlived(db, "alice", before_both)
    assert not await _outlived(db, "alice", between)
    assert await _changes(db, None, between) == ([], [f"{uids['recent']}.ics"])
    assert not await _outlived(db, "bob", before_both)  # another user's horizon did not move
    assert await prune_tombstones(db, settings) == 0
