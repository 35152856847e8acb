"""The `notifications` table: the user's inbox, one row per delivered reminder (unique per task and remind_at)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.models import Notification, table_of

_notifications = table_of(Notification)

# In task id order, so two notifiers inserting overlapping batches wait for each other rather than deadlock.
_INSERT_MANY: Final = text(
    """
    INSERT INTO notifications (user_id, task_id, remind_at, title, due_date, message, delivered_at)
    SELECT n.user_id, n.task_id, n.remind_at, n.title, n.due_date, n.message, CASE WHEN :no_targets THEN now() END
    FROM unnest(CAST(:user_ids AS text[]), CAST(:task_ids AS bigint[]), CAST(:remind_ats AS timestamptz[]),
                CAST(:titles AS text[]), CAST(:due_dates AS timestamptz[]), CAST(:messages AS text[]))
         WITH ORDINALITY AS n(user_id, task_id, remind_at, title, due_date, message, ord)
    ORDER BY n.ord
    ON CONFLICT ON CONSTRAINT uq_notifications_task_remind DO NOTHING
    RETURNING id, task_id, remind_at
    """
)

_EXISTING: Final = text(
    """
    SELECT n.id, n.task_id, n.remind_at, n.delivered_at, n.title, n.message
    FROM notifications n
    JOIN unnest(CAST(:user_ids AS text[]), CAST(:task_ids AS bigint[]), CAST(:remind_ats AS timestamptz[]))
      AS k(user_id, task_id, remind_at)
      ON n.user_id = k.user_id AND n.task_id = k.task_id AND n.remind_at = k.remind_at
    """
)

_UNDELIVERED: Final = text(
    """
    SELECT id, user_id, title, message FROM notifications
    WHERE delivered_at IS NULL AND created_at > now() - make_interval(hours => :hours)
    ORDER BY id
    """
)

_RECENT: Final = text(
    """
    SELECT n.id, n.task_id, n.title, n.message, n.due_date, n.remind_at, n.created_at, n.delivered_at, t.time_zone
    FROM notifications n
    LEFT JOIN tasks t ON t.id = n.task_id AND t.user_id = n.user_id
    WHERE n.user_id = :user_id
    ORDER BY n.created_at DESC, n.id DESC
    LIMIT :limit
    """
)


async def insert_many(
    conn: AsyncConnection,
    *,
    user_ids: Sequence[str],
    task_ids: Sequence[int],
    remind_ats: Sequence[datetime],
    titles: Sequence[str],
    due_dates: Sequence[datetime | None],
    messages: Sequence[str],
    delivered: bool,
) -> dict[tuple[int, datetime], int]:
    """Insert the inbox rows (marked delivered at once when `delivered`); {(task id, remind_at): id} of the rows
    inserted (one that exists already is skipped)."""
    inserted = await conn.execute(
        _INSERT_MANY,
        {
            "user_ids": list(user_ids),
            "task_ids": list(task_ids),
            "remind_ats": list(remind_ats),
            "titles": list(titles),
            "due_dates": list(due_dates),
            "messages": list(messages),
            "no_targets": delivered,
        },
    )
    return {(int(row.task_id), row.remind_at): int(row.id) for row in inserted}


async def existing(
    conn: AsyncConnection, user_ids: Sequence[str], task_ids: Sequence[int], remind_ats: Sequence[datetime]
) -> dict[tuple[int, datetime], Any]:
    """The inbox rows of these (user id, task id, remind_at) triples, by (task id, remind_at)."""
    keys = {"user_ids": list(user_ids), "task_ids": list(task_ids), "remind_ats": list(remind_ats)}
    rows = await conn.execute(_EXISTING, keys)
    return {(int(row.task_id), row.remind_at): row for row in rows}


async def mark_delivered(conn: AsyncConnection, user_id: str, notification_id: int) -> None:
    c = _notifications.c
    await conn.execute(
        update(_notifications)
        .where(c.user_id == user_id, c.id == notification_id, c.delivered_at.is_(None))
        .values(delivered_at=func.now())
    )


async def undelivered(conn: AsyncConnection, max_age_hours: int) -> list[Any]:
    """Rows created in the last `max_age_hours` whose targets were never finished, oldest first."""
    return list((await conn.execute(_UNDELIVERED, {"hours": max_age_hours})).all())


async def recent(conn: AsyncConnection, user_id: str, limit: int) -> list[Any]:
    """The user's most recent rows, newest first, each with its task's zone (None once the task is gone)."""
    return list((await conn.execute(_RECENT, {"user_id": user_id, "limit": limit})).all())


# Who got new inbox rows, said to every server replica that LISTENs (pipeline/live.py): sent when the transaction
# commits, so a host told of it re-reads the inbox with the rows there. One notification per user, its payload
# `{"user": …, "tasks": […]}` (PostgreSQL's limit is 8000 bytes: the task list is left out of a longer one).
INBOX_CHANNEL: Final = "mcp_todo_inbox"
_ANNOUNCE: Final = text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p")


async def announce(conn: AsyncConnection, payloads: Sequence[str]) -> None:
    """Tell the live feeds (at commit) of new inbox rows: one JSON payload per user."""
    if payloads:
        await conn.execute(_ANNOUNCE, {"channel": INBOX_CHANNEL, "payloads": list(payloads)})
