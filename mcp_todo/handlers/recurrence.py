"""The recurrer's handler: a completed occurrence N of a recurring task creates occurrence N+1, exactly once.

The next due date comes from the stored series (rule, zone, first due date) and the completion time recorded in the
event, never from this process's clock, so a replay an hour or a week later computes the same N+1. Exactly once is
enforced by the database: `uq_tasks_previous` (one successor per occurrence) and `uq_tasks_series_due` (one occurrence
per series and due date). A duplicate event, a replay after a crash, or a second recurrer racing this one all end in
`ON CONFLICT DO NOTHING` and return quietly.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_todo.db.queries import load_task
from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.recurrence import next_occurrence
from mcp_todo.domain.reminders import remind_at_for
from mcp_todo.domain.times import resolve_zone
from mcp_todo.events import TASK_COMPLETED, TASK_CREATED, Envelope
from mcp_todo.outbox import write_events
from mcp_todo.settings import Settings, get_settings

log = logging.getLogger(__name__)

# FOR SHARE: a concurrent edit of the completed occurrence (reopen, rule removed) waits for us or we for it, so we
# never copy a rule the user has just removed.
_LOAD_COMPLETED = text(
    """
    SELECT id, user_id, status, due_date, time_zone, recurrence_rule, series_id, series_start,
           remind_before_minutes, completed_at
    FROM tasks
    WHERE id = :task_id AND user_id = :user_id
    FOR SHARE
    """
)

# Without a conflict target DO NOTHING covers both partial unique indexes (series + due date, previous task). The
# tags are copied in the same statement, and only when the occurrence was inserted.
_INSERT_NEXT = text(
    """
    WITH inserted AS (
        INSERT INTO tasks (user_id, title, description, status, priority, due_date, time_zone, category_id,
                           recurrence_rule, series_id, series_start, previous_task_id, remind_before_minutes,
                           remind_at, reminder_sent)
        SELECT user_id, title, description, 'pending', priority, :due_date, time_zone, category_id,
               recurrence_rule, :series_id, :series_start, id, remind_before_minutes,
               :remind_at, false
        FROM tasks
        WHERE id = :previous_id
        ON CONFLICT DO NOTHING
        RETURNING id
    ), tagged AS (
        INSERT INTO task_tags (task_id, tag_id, user_id)
        SELECT inserted.id, tt.tag_id, tt.user_id FROM inserted JOIN task_tags tt ON tt.task_id = :previous_id
    )
    SELECT id FROM inserted
    """
)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else None


async def handle_task_completed(
    engine: AsyncEngine, envelope: Envelope, *, settings: Settings | None = None
) -> int | None:
    """Create the occurrence that follows the completed one; returns its id, or None when nothing was created."""
    if envelope.event_type != TASK_COMPLETED:
        return None
    settings = settings or get_settings()
    started = time.perf_counter()
    async with engine.begin() as conn:
        new_id, outcome, next_due = await _create_next(conn, envelope, settings)
    log.info(
        "recurrence handled",
        extra={
            "event_id": str(envelope.event_id),
            "task_id": envelope.task_id,
            "user_id": envelope.user_id,
            "outcome": outcome,
            "new_task_id": new_id,
            "next_due": next_due.isoformat() if next_due else None,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return new_id


async def _create_next(
    conn: AsyncConnection, envelope: Envelope, settings: Settings
) -> tuple[int | None, str, datetime | None]:
    row = (
        await conn.execute(_LOAD_COMPLETED, {"task_id": envelope.task_id, "user_id": envelope.user_id})
    ).one_or_none()
    if row is None:
        return None, "task_gone", None
    if row.recurrence_rule is None:
        return None, "rule_removed", None
    if row.status != "completed":
        return None, "not_completed", None

    due = row.due_date or _parse_time(envelope.data.get("due_date"))
    # The completion time the event recorded, so a late replay computes what a prompt one would have.
    completed_at = _parse_time(envelope.data.get("completed_at")) or row.completed_at
    if due is None or completed_at is None:
        return None, "no_due_date", None
    series_id = row.series_id if row.series_id is not None else row.id
    series_start = row.series_start or due
    try:
        next_due = next_occurrence(row.recurrence_rule, series_start, resolve_zone(row.time_zone), due, completed_at)
    except InvalidRecurrenceRuleError:
        # A stored rule is validated on write; one the domain rejects now cannot be retried into validity.
        log.warning("stored recurrence rule rejected", extra={"task_id": row.id, "user_id": row.user_id})
        return None, "invalid_rule", None
    if next_due is None:
        return None, "series_ended", None

    lead = row.remind_before_minutes if row.remind_before_minutes is not None else settings.reminder_lead_minutes
    inserted = (
        await conn.execute(
            _INSERT_NEXT,
            {
                "due_date": next_due,
                "series_id": series_id,
                "series_start": series_start,
                "previous_id": row.id,
                "remind_at": remind_at_for(next_due, lead),
            },
        )
    ).scalar_one_or_none()
    if inserted is None:
        return None, "already_created", next_due
    new_id = int(inserted)
    task = await load_task(conn, envelope.user_id, new_id)
    await write_events(
        conn,
        [
            Envelope(
                event_type=TASK_CREATED, user_id=envelope.user_id, task_id=new_id, data=task.model_dump(mode="json")
            )
        ],
    )
    return new_id, "created", next_due
