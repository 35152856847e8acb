"""Rows and events as the server writes them, for tests and benchmarks that play the server."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

from sqlalchemy import ScalarResult, text
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.events import TASK_COMPLETED, Envelope


async def insert_completed_recurring(
    conn: AsyncConnection,
    *,
    user: str,
    due: datetime,
    completed_at: datetime,
    rule: str,
    zone: str,
    count: int = 1,
    title: str = "Stand-up",
) -> list[Envelope]:
    """Insert `count` completed recurring tasks; returns, for each, the `task.completed` event that complete_task
    writes beside it, not yet written (the caller writes it, once or replayed). Titles are numbered when count > 1."""
    label = ":title || ' ' || n" if count > 1 else ":title"
    ids: ScalarResult[int] = (
        await conn.execute(
            text(
                "INSERT INTO tasks (user_id, title, status, time_zone, due_date, recurrence_rule, completed_at) "
                f"SELECT :user, {label}, 'completed', :zone, :due, :rule, :done FROM generate_series(1, :count) AS n "
                "RETURNING id"
            ),
            {
                "user": user,
                "title": title,
                "zone": zone,
                "rule": rule,
                "due": due,
                "done": completed_at,
                "count": count,
            },
        )
    ).scalars()
    data = {
        "completed_at": completed_at.isoformat(),
        "due_date": due.isoformat(),
        "recurrence_rule": rule,
        "series_id": None,
        "time_zone": zone,
    }
    return [Envelope(TASK_COMPLETED, user, int(task_id), data) for task_id in ids]


def replayed(event: Envelope, times: int) -> list[Envelope]:
    """`event` and `times - 1` copies of it, each with an event id of its own (the outbox keeps event ids unique): the
    same completion written again, as a retried request would write it."""
    return [event] + [dataclasses.replace(event, event_id=uuid.uuid4()) for _ in range(times - 1)]


async def tag_task(conn: AsyncConnection, user: str, task_id: int, name: str) -> int:
    """A new tag of `user` named `name`, put on the task; returns the tag's id."""
    tag_id: int = (
        await conn.execute(
            text("INSERT INTO tags (user_id, name) VALUES (:u, :n) RETURNING id"), {"u": user, "n": name}
        )
    ).scalar_one()
    await conn.execute(
        text("INSERT INTO task_tags (task_id, tag_id, user_id) VALUES (:t, :g, :u)"),
        {"t": task_id, "g": tag_id, "u": user},
    )
    return tag_id
