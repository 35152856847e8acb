"""The `outbox` table: the writes (every event is inserted in the same transaction as the change it describes) and the
relay's statements (claim, mark, record failures, prune, and the advisory locks that shard the work).

The relay runs on one raw asyncpg connection (it needs LISTEN), so its statements take that connection."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Final

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mcp_todo.events import Envelope, topics_for

# What the outbox's insert trigger NOTIFYs (once a statement, at commit): the relay's and the live feed's wake-up.
WAKE_CHANNEL: Final = "mcp_todo_outbox"

# One statement for the whole list (the recurrer and the scheduler write hundreds at once): one round trip, and the
# statement-level NOTIFY trigger fires once.
_INSERT = text(
    """INSERT INTO outbox (event_id, event_type, topics, message_key, task_id, user_id, payload)
       SELECT r.event_id, r.event_type, r.topics, r.message_key, r.task_id, r.user_id, r.payload
       FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
           event_id uuid, event_type text, topics text[], message_key text, task_id bigint, user_id text,
           payload jsonb, ord bigint)
       ORDER BY r.ord"""
)


async def write_events(db: AsyncSession | AsyncConnection, events: list[Envelope]) -> None:
    """Insert the events in list order; the caller's transaction commits them with the change."""
    if not events:
        return
    rows = [
        {
            "event_id": str(event.event_id),
            "event_type": event.event_type,
            "topics": topics_for(event.event_type, event.data),
            "message_key": event.key,
            "task_id": event.task_id,
            "user_id": event.user_id,
            "payload": event.to_dict(),
            "ord": ord_,
        }
        for ord_, event in enumerate(events)
    ]
    await db.execute(_INSERT, {"rows": json.dumps(rows, ensure_ascii=False)})


# --- the relay ----------------------------------------------------------------------------------------------------

# Two guards: the shard advisory locks keep each task's events on one relay (per-task order), and
# `FOR UPDATE SKIP LOCKED` makes each claimed row exclusive for its transaction on its own. A shard's lock is a
# session-level lock taken and released only by the relay's `_rebalance`, which shares `_conn_lock` with the claim →
# publish → mark transaction, so a shard never changes hands while one of its batches is open; should the session die,
# the server ends the lock and the transaction together and the next owner sees exactly the rows that were not marked
# (a duplicate at worst, never a loss). The row locks cost a heap write per row, a price paid on purpose: they keep any
# path the shard locks do not cover (a manual relay, a shard count changed during a rolling deploy) from publishing
# one row twice at once. tests/integration/test_relay.py checks order with two relays.
_CLAIM: Final = """
SELECT id, task_id, event_type, topics, message_key, payload::text AS payload, attempts
FROM outbox
WHERE published_at IS NULL AND parked_at IS NULL
  AND (task_id % $1)::int = ANY($2::int[])
  AND NOT (id = ANY($3::bigint[]))
  AND NOT (task_id = ANY($4::bigint[]))
  AND id > $6
ORDER BY id
LIMIT $5
FOR UPDATE SKIP LOCKED
"""
# The rows are this transaction's claim (locked, unpublished, not parked); saying so lets the plan go through the small
# partial index of pending rows instead of reading every published row the retention keeps.
_MARK: Final = """
UPDATE outbox SET published_at = now()
WHERE id = ANY($1::bigint[]) AND published_at IS NULL AND parked_at IS NULL
"""
_FAIL: Final = """
UPDATE outbox AS o
SET attempts = o.attempts + 1,
    last_error = f.error,
    parked_at = CASE WHEN f.permanent OR o.attempts + 1 >= $4 THEN now() END
FROM unnest($1::bigint[], $2::text[], $3::bool[]) AS f(id, error, permanent)
WHERE o.id = f.id AND o.published_at IS NULL AND o.parked_at IS NULL
RETURNING o.id, o.task_id, o.event_type, o.attempts, o.parked_at IS NOT NULL AS parked
"""
_PRUNE: Final = """
DELETE FROM outbox WHERE (user_id, id) IN (
    SELECT user_id, id FROM outbox WHERE published_at < now() - $1::interval ORDER BY published_at LIMIT $2
)
"""
_LOCK_HOLDERS: Final = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid::bigint = $1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


async def use_custom_plans(conn: asyncpg.Connection) -> None:
    """Plan every statement of this session for its arguments (see the relay's `_open` for why)."""
    await conn.execute("SET plan_cache_mode = force_custom_plan")


async def claim(
    conn: asyncpg.Connection,
    *,
    shard_count: int,
    shards: list[int],
    skip_ids: list[int],
    skip_tasks: list[int],
    limit: int,
    after_id: int,
    timeout_s: float,
) -> list[asyncpg.Record]:
    """Lock up to `limit` pending rows of these shards with ids above `after_id`, in id order (rows others hold,
    and the rows and tasks waiting for a retry, are skipped)."""
    records: list[asyncpg.Record] = await conn.fetch(
        _CLAIM, shard_count, shards, skip_ids, skip_tasks, limit, after_id, timeout=timeout_s
    )
    return records


async def mark_published(conn: asyncpg.Connection, ids: list[int], *, timeout_s: float) -> None:
    await conn.execute(_MARK, ids, timeout=timeout_s)


async def record_failures(
    conn: asyncpg.Connection,
    ids: Sequence[int],
    errors: Sequence[str],
    permanent: Sequence[bool],
    *,
    max_attempts: int,
    timeout_s: float,
) -> list[asyncpg.Record]:
    """Count a failed attempt of each row (parked when permanent or out of attempts); the rows as updated."""
    records: list[asyncpg.Record] = await conn.fetch(
        _FAIL, list(ids), list(errors), list(permanent), max_attempts, timeout=timeout_s
    )
    return records


async def prune(conn: asyncpg.Connection, retention: timedelta, chunk: int, *, timeout_s: float) -> int:
    """Delete up to `chunk` rows published longer than `retention` ago; how many were deleted."""
    status = await conn.execute(_PRUNE, retention, chunk, timeout=timeout_s)
    return int(status.split()[-1])


async def try_advisory_lock(conn: asyncpg.Connection, lock_class: int, key: int) -> bool:
    """Take the session-level advisory lock (class, key) if it is free."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", lock_class, key))


async def advisory_unlock(conn: asyncpg.Connection, lock_class: int, key: int) -> None:
    await conn.fetchval("SELECT pg_advisory_unlock($1, $2)", lock_class, key)


async def count_lock_holders(conn: asyncpg.Connection, lock_class: int, *, timeout_s: float) -> int:
    """How many sessions of this database hold an advisory lock of this class (the relay's members)."""
    return int(await conn.fetchval(_LOCK_HOLDERS, lock_class, timeout=timeout_s))


# Both through ix_outbox_pending: the count reads only the index of pending rows, the oldest is its first entry (ids
# grow with commit order, so the lowest pending id is the oldest row waiting).
_PENDING_STATS: Final = """
SELECT count(*) AS pending,
       COALESCE(EXTRACT(EPOCH FROM now() - (
           SELECT created_at FROM outbox WHERE published_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT 1
       )), 0)::float8 AS oldest_age_s
FROM outbox
WHERE published_at IS NULL AND parked_at IS NULL
"""


async def pending_stats(conn: asyncpg.Connection, *, timeout_s: float) -> tuple[int, float]:
    """How many rows wait to be published (not parked), and the age in seconds of the oldest (0 when none waits)."""
    row = await conn.fetchrow(_PENDING_STATS, timeout=timeout_s)
    assert row is not None  # an aggregate always returns its row
    return int(row["pending"]), float(row["oldest_age_s"])


# The live feed of local mode (pipeline/live.py): the rows committed since it last looked, read by id. Ids are taken
# at insert and rows commit in any order, so the ids it skipped (`$2`, a short list) are asked for again for a while.
_NEWER: Final = """
SELECT id, payload FROM outbox WHERE id > $1 OR id = ANY($2::bigint[]) ORDER BY id LIMIT $3
"""
_LAST_ID: Final = "SELECT coalesce(max(id), 0) FROM outbox"


async def last_id(conn: asyncpg.Connection, *, timeout_s: float) -> int:
    """The newest row's id (0 when the outbox is empty): where the live feed starts."""
    return int(await conn.fetchval(_LAST_ID, timeout=timeout_s))


async def newer_rows(
    conn: asyncpg.Connection, after_id: int, again: list[int], limit: int, *, timeout_s: float
) -> list[asyncpg.Record]:
    """Up to `limit` rows with ids above `after_id` or in `again`, in id order (published or not)."""
    records: list[asyncpg.Record] = await conn.fetch(_NEWER, after_id, again, limit, timeout=timeout_s)
    return records
