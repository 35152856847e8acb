"""What the CalDAV server reads and writes beside the task tables: the rows it renders as VTODOs, the collections
(one per category, plus the tasks without one), their change tags, sync-collection's changes since a token, and the
properties and resource names clients wrote that mcp-todo does not model.

A sync token is a PostgreSQL snapshot (`pg_current_snapshot()` as text). Every write of a task stamps the row with
its transaction's id (`change_xid`, a trigger); the rows changed since a token are those whose stamp the token's
snapshot does not see, which holds whatever order the writers committed in, on every replica and after a restart.
Tasks that left a collection (purged, moved to another category, uid changed) leave a tombstone, stamped the same way.
Tombstones older than a retention are pruned (`prune_tombstones`, by the daily purge), which moves the user's sync
horizon to the newest one pruned: a token that does not see it may have missed a deletion and is refused
(`token_outlived`), so the client syncs afresh (RFC 6578 valid-sync-token).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

SNAPSHOT: Final = re.compile(r"^[0-9]{1,20}:[0-9]{1,20}:(?:[0-9]{1,20}(?:,[0-9]{1,20}){0,9999})?$")

# The columns a VTODO is rendered from, with the category, parent uid, tag names and what the client kept.
_ITEM_SELECT: Final = (
    "SELECT t.id, t.uid, t.title, t.description, t.status, t.priority, t.due_date, t.time_zone, t.category_id, "
    "t.recurrence_rule, t.series_id, t.series_start, t.series_start_wall, t.recurrence_from, "
    "t.remind_before_minutes, t.remind_at, t.reminder_sent, t.completed_at, t.created_at, t.updated_at, "
    "t.deleted_at, t.parent_id, t.change_xid, c.name AS category_name, p.uid AS parent_uid, g.tag_names, "
    "d.href, d.kept, dep.depends_on "
    "FROM tasks t "
    "LEFT JOIN categories c ON c.id = t.category_id AND c.user_id = t.user_id "
    "LEFT JOIN tasks p ON p.id = t.parent_id AND p.user_id = t.user_id AND p.deleted_at IS NULL "
    "LEFT JOIN LATERAL (SELECT array_agg(tg.name ORDER BY lower(tg.name), tg.id) AS tag_names "
    "FROM task_tags tt JOIN tags tg ON tg.user_id = tt.user_id AND tg.id = tt.tag_id "
    "WHERE tt.task_id = t.id AND tt.user_id = t.user_id) g "
    "ON true "
    "LEFT JOIN dav_task_properties d ON d.task_id = t.id AND d.user_id = t.user_id "
    # The uids of the tasks it waits on (out of the trash), in id order.
    "LEFT JOIN LATERAL (SELECT array_agg(b.uid ORDER BY b.id) AS depends_on FROM task_dependencies w "
    "JOIN tasks b ON b.user_id = w.user_id AND b.id = w.blocker_id AND b.deleted_at IS NULL "
    "WHERE w.user_id = t.user_id AND w.task_id = t.id) dep ON true "
)
_IN_CATEGORY: Final = "t.category_id = :category_id"
_UNCATEGORISED: Final = "t.category_id IS NULL"

_ITEMS: Final = {
    uncategorised: text(
        _ITEM_SELECT
        + f"WHERE t.user_id = :user_id AND {_UNCATEGORISED if uncategorised else _IN_CATEGORY} "
        + "AND t.deleted_at IS NULL ORDER BY t.id"
    )
    for uncategorised in (False, True)
}
_ITEM_BY_ID: Final = text(_ITEM_SELECT + "WHERE t.user_id = :user_id AND t.id = :task_id")
_TASK_BY_NAME: Final = text(
    "SELECT coalesce("
    "(SELECT task_id FROM dav_task_properties WHERE user_id = :user_id AND href = :name), "
    "(SELECT id FROM tasks WHERE user_id = :user_id AND uid = :uid))"
)
_TASK_BY_UID: Final = text("SELECT id FROM tasks WHERE user_id = :user_id AND uid = :uid")
_IDS_BY_UID: Final = text(
    "SELECT uid, id FROM tasks WHERE user_id = :user_id AND uid = ANY(:uids) AND deleted_at IS NULL"
)

_CATEGORIES: Final = text(
    "SELECT c.id, c.name, c.color, "
    "(SELECT min(n.segment) FROM dav_collection_names n WHERE n.user_id = c.user_id AND n.category_id = c.id) "
    "AS segment FROM categories c WHERE c.user_id = :user_id ORDER BY c.id"
)
_CATEGORY_BY_ID: Final = text("SELECT id FROM categories WHERE user_id = :user_id AND id = :category_id")
_CATEGORY_BY_SEGMENT: Final = text(
    "SELECT category_id FROM dav_collection_names WHERE user_id = :user_id AND segment = :segment"
)
_NAME_COLLECTION: Final = text(
    "INSERT INTO dav_collection_names (user_id, segment, category_id) VALUES (:user_id, :segment, :category_id) "
    "ON CONFLICT (user_id, segment) DO UPDATE SET category_id = excluded.category_id"
)
# A collection's change tag: it moves whenever a task in it is written (its stamp changes the sum), one leaves it
# (a tombstone) or one arrives (the count).
_CTAGS: Final = text(
    "SELECT category_id, count(*) AS n, coalesce(sum(change_xid), 0) AS stamps, 0 AS gone, 0 AS last_gone "
    "FROM tasks WHERE user_id = :user_id GROUP BY category_id "
    "UNION ALL SELECT category_id, 0, 0, count(*), max(id) FROM dav_tombstones WHERE user_id = :user_id "
    "GROUP BY category_id"
)

_CURRENT_SNAPSHOT: Final = text("SELECT pg_current_snapshot()::text")
_CHANGED: Final = {
    uncategorised: text(
        _ITEM_SELECT + f"WHERE t.user_id = :user_id AND {_UNCATEGORISED if uncategorised else _IN_CATEGORY} "
        "AND t.change_xid >= pg_snapshot_xmin(CAST(CAST(:token AS text) AS pg_snapshot))::text::bigint "
        "AND NOT pg_visible_in_snapshot(t.change_xid::text::xid8, CAST(CAST(:token AS text) AS pg_snapshot)) "
        "ORDER BY t.id"
    )
    for uncategorised in (False, True)
}
_GONE: Final = {
    uncategorised: text(
        "SELECT DISTINCT z.href FROM dav_tombstones z WHERE z.user_id = :user_id AND "
        + ("z.category_id IS NULL" if uncategorised else "z.category_id = :category_id")
        + " AND z.change_xid >= pg_snapshot_xmin(CAST(CAST(:token AS text) AS pg_snapshot))::text::bigint "
        "AND NOT pg_visible_in_snapshot(z.change_xid::text::xid8, CAST(CAST(:token AS text) AS pg_snapshot)) "
        "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.user_id = z.user_id AND t.uid = z.uid AND "
        + (_UNCATEGORISED if uncategorised else _IN_CATEGORY)
        + ")"
    )
    for uncategorised in (False, True)
}

# One statement: the tombstones made before the cutoff go, and each user's horizon moves to the newest of theirs.
_PRUNE: Final = text(
    "WITH gone AS (DELETE FROM dav_tombstones WHERE made_at < :cutoff RETURNING user_id, change_xid) "
    "INSERT INTO dav_sync_horizons AS h (user_id, pruned_xid) "
    "SELECT user_id, max(change_xid) FROM gone GROUP BY user_id "
    "ON CONFLICT (user_id) DO UPDATE SET pruned_xid = greatest(h.pruned_xid, excluded.pruned_xid) "
    "RETURNING (SELECT count(*) FROM gone)"
)
_OUTLIVED: Final = text(
    "SELECT NOT pg_visible_in_snapshot(pruned_xid::text::xid8, CAST(CAST(:token AS text) AS pg_snapshot)) "
    "FROM dav_sync_horizons WHERE user_id = :user_id"
)

_SET_UID: Final = text("UPDATE tasks SET uid = :uid WHERE user_id = :user_id AND id = :task_id")
_SAVE_PROPERTIES: Final = text(
    "INSERT INTO dav_task_properties (user_id, task_id, href, kept) VALUES (:user_id, :task_id, :href, :kept) "
    "ON CONFLICT (user_id, task_id) DO UPDATE SET href = excluded.href, kept = excluded.kept"
)
_PROPERTIES: Final = text("SELECT href, kept FROM dav_task_properties WHERE user_id = :user_id AND task_id = :task_id")
# A change of what a client kept is a change of the task's rendering: its stamp (ETag, sync) moves with it.
_TOUCH: Final = text("UPDATE tasks SET updated_at = :now WHERE user_id = :user_id AND id = :task_id")


@dataclass(frozen=True)
class CollectionRow:
    """A category (or None: the tasks without one) as a collection: its id, name, colour and the path segment a
    client gave it when it created it."""

    category_id: int | None
    name: str
    color: str | None
    segment: str | None


def _where(category_id: int | None) -> dict[str, Any]:
    return {} if category_id is None else {"category_id": category_id}


async def categories(conn: AsyncConnection, user_id: str) -> list[CollectionRow]:
    rows = (await conn.execute(_CATEGORIES, {"user_id": user_id})).all()
    return [CollectionRow(row.id, row.name, row.color, row.segment) for row in rows]


async def category_exists(conn: AsyncConnection, user_id: str, category_id: int) -> bool:
    return await conn.scalar(_CATEGORY_BY_ID, {"user_id": user_id, "category_id": category_id}) is not None


async def category_by_segment(conn: AsyncConnection, user_id: str, segment: str) -> int | None:
    found = await conn.scalar(_CATEGORY_BY_SEGMENT, {"user_id": user_id, "segment": segment})
    return None if found is None else int(found)


async def name_collection(conn: AsyncConnection, user_id: str, segment: str, category_id: int) -> None:
    await conn.execute(_NAME_COLLECTION, {"user_id": user_id, "segment": segment, "category_id": category_id})


async def ctags(conn: AsyncConnection, user_id: str) -> dict[int | None, str]:
    """Each collection's change tag, by category id (None: the tasks without one); a collection never written has
    none here (its tag is the empty one)."""
    parts: dict[int | None, list[int]] = {}
    for row in (await conn.execute(_CTAGS, {"user_id": user_id})).all():
        totals = parts.setdefault(row.category_id, [0, 0, 0, 0])
        totals[0] += int(row.n)
        totals[1] += int(row.stamps)
        totals[2] += int(row.gone)
        totals[3] = max(totals[3], int(row.last_gone or 0))
    return {category: "-".join(map(str, totals)) for category, totals in parts.items()}


async def items(conn: AsyncConnection, user_id: str, category_id: int | None) -> list[Any]:
    """The collection's tasks outside the trash, in id order (mappings of `_ITEM_SELECT`'s columns)."""
    result = await conn.execute(_ITEMS[category_id is None], {"user_id": user_id, **_where(category_id)})
    return list(result.mappings().all())


async def item(conn: AsyncConnection, user_id: str, task_id: int) -> Any | None:
    return (await conn.execute(_ITEM_BY_ID, {"user_id": user_id, "task_id": task_id})).mappings().first()


async def task_by_name(conn: AsyncConnection, user_id: str, name: str) -> int | None:
    """The task a resource name stands for: the name a client PUT it under, else `<uid>.ics`."""
    uid = name[: -len(".ics")] if name.endswith(".ics") else name
    found = await conn.scalar(_TASK_BY_NAME, {"user_id": user_id, "name": name, "uid": uid})
    return None if found is None else int(found)


async def task_by_uid(conn: AsyncConnection, user_id: str, uid: str) -> int | None:
    found = await conn.scalar(_TASK_BY_UID, {"user_id": user_id, "uid": uid})
    return None if found is None else int(found)


async def ids_by_uid(conn: AsyncConnection, user_id: str, uids: list[str]) -> dict[str, int]:
    """The ids of the tasks with these uids, outside the trash."""
    rows = (await conn.execute(_IDS_BY_UID, {"user_id": user_id, "uids": uids})).all()
    return {row.uid: int(row.id) for row in rows}


async def current_snapshot(conn: AsyncConnection) -> str:
    return str(await conn.scalar(_CURRENT_SNAPSHOT))


async def changes_since(
    conn: AsyncConnection, user_id: str, category_id: int | None, token: str
) -> tuple[list[Any], list[str]]:
    """(the collection's tasks written since the snapshot `token`, trashed ones included; the uids of tasks that
    left it since and are not in it now). Run it in the transaction whose `current_snapshot` is the next token."""
    if not SNAPSHOT.match(token):
        raise ValueError("not a snapshot")
    params = {"user_id": user_id, "token": token, **_where(category_id)}
    changed = list((await conn.execute(_CHANGED[category_id is None], params)).mappings().all())
    gone = [str(row[0]) for row in (await conn.execute(_GONE[category_id is None], params)).all()]
    return changed, gone


async def token_outlived(conn: AsyncConnection, user_id: str, token: str) -> bool:
    """Whether tombstones the snapshot `token` does not see were pruned since (the token may miss deletions)."""
    if not SNAPSHOT.match(token):
        raise ValueError("not a snapshot")
    return bool(await conn.scalar(_OUTLIVED, {"user_id": user_id, "token": token}))


async def prune_tombstones(conn: AsyncConnection, cutoff: datetime) -> int:
    """Delete the tombstones made before `cutoff`, moving their users' sync horizons; how many went."""
    rows = (await conn.execute(_PRUNE, {"cutoff": cutoff})).all()
    return int(rows[0][0]) if rows else 0


async def set_uid(conn: AsyncConnection, user_id: str, task_id: int, uid: str) -> None:
    await conn.execute(_SET_UID, {"user_id": user_id, "task_id": task_id, "uid": uid})


async def properties(conn: AsyncConnection, user_id: str, task_id: int) -> tuple[str | None, str | None]:
    row = (await conn.execute(_PROPERTIES, {"user_id": user_id, "task_id": task_id})).first()
    return (None, None) if row is None else (row.href, row.kept)


async def save_properties(
    conn: AsyncConnection, user_id: str, task_id: int, href: str | None, kept: str | None, now: Any
) -> bool:
    """Store the resource name and kept properties of a task; True when they changed (the task is touched)."""
    if await properties(conn, user_id, task_id) == (href, kept):
        return False
    await conn.execute(_SAVE_PROPERTIES, {"user_id": user_id, "task_id": task_id, "href": href, "kept": kept})
    await conn.execute(_TOUCH, {"user_id": user_id, "task_id": task_id, "now": now})
    return True
