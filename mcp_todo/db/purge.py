"""The trash purge's own statements: the lock that lets one process purge at a time, and the clock it measures the
cutoff by. The DELETE itself is `tasks.purge`, beside the other statements that return task rows."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_LOCK: Final = text("SELECT pg_try_advisory_xact_lock(hashtextextended('mcp-todo:trash-purge', 0))")
_CLOCK: Final = text("SELECT clock_timestamp()")


async def try_lock(conn: AsyncConnection) -> bool:
    """Take the purge's transaction-level advisory lock unless another transaction holds it (then False, at once)."""
    return bool(await conn.scalar(_LOCK))


async def database_clock(conn: AsyncConnection) -> datetime:
    """The database's clock now (not the transaction's start)."""
    now: datetime = await conn.scalar(_CLOCK)
    return now
