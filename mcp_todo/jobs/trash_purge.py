"""The trash's purge: tasks trashed longer than `MCP_TODO_TRASH_DAYS` ago are deleted for good, each with its
`task.deleted` (reason "purged") in the same transaction; then the CalDAV tombstones older than
`MCP_TODO_DAV_TOMBSTONE_DAYS` go (db/dav.py says what that does to old sync tokens).

It runs once at start-up and then daily, in the recurrer worker (with Kafka) or inside the server (local mode).
Several replicas may run it at once: a transaction-level advisory lock lets one purge at a time (the others skip
that round), and the statement itself (`FOR UPDATE SKIP LOCKED`, a DELETE that re-checks each row) deletes and
reports every row exactly once even without it. The cutoff is measured from the database's clock unless a caller
(a test) gives `now`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Final

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db import dav as dav_db
from mcp_todo.db import purge as purge_db
from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.outbox import write_events
from mcp_todo.runtime.waits import sleep_unless_stopped
from mcp_todo.service.changes import task_deleted
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

PURGE_INTERVAL_S: Final = 24 * 60 * 60.0
PURGE_BATCH: Final = 500


async def purge_trash(
    engine: AsyncEngine, settings: Settings, *, now: datetime | None = None, batch: int = PURGE_BATCH
) -> int:
    """Delete for good every task trashed more than `settings.trash_days` days before `now` (the database's clock
    when None); returns how many were deleted (0 when another process holds the purge)."""
    total = 0
    while True:
        async with engine.begin() as conn:
            if not await purge_db.try_lock(conn):
                log.info("trash purge skipped: another process is purging")
                return total
            clock = now if now is not None else await purge_db.database_clock(conn)
            cutoff = clock - timedelta(days=settings.trash_days)
            rows = await tasks_db.purge(conn, cutoff, batch)
            await write_events(conn, [task_deleted(row.user_id, row, "purged", clock) for row in rows])
        total += len(rows)
        if len(rows) < batch:
            break
    if total:
        log.info("trash purged", extra={"tasks": total, "trash_days": settings.trash_days})
    await prune_tombstones(engine, settings, now=now)
    return total


async def prune_tombstones(engine: AsyncEngine, settings: Settings, *, now: datetime | None = None) -> int:
    """Delete the CalDAV tombstones older than `settings.dav_tombstone_days` (the database's clock when `now` is
    None); how many went."""
    async with engine.begin() as conn:
        clock = now if now is not None else await purge_db.database_clock(conn)
        pruned = await dav_db.prune_tombstones(conn, clock - timedelta(days=settings.dav_tombstone_days))
    if pruned:
        log.info("dav tombstones pruned", extra={"tombstones": pruned, "days": settings.dav_tombstone_days})
    return pruned


async def run_purge_forever(
    engine: AsyncEngine, settings: Settings, stop: asyncio.Event, *, interval_s: float = PURGE_INTERVAL_S
) -> None:
    """Purge at start and then every `interval_s` until `stop`; a failed round is logged and retried next round."""
    while not stop.is_set():
        try:
            await purge_trash(engine, settings)
        except (SQLAlchemyError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("trash purge failed; next round retries", extra={"error": exc.__class__.__name__})
        if not await sleep_unless_stopped(stop, interval_s):
            return
