"""Reminder times (docs/architecture.md, "Exactly-once effects").

A task's reminder is one of three kinds, told apart by the stored columns:
- lead-based: `remind_before_minutes` set (the default lead is stored when a task first gets a due date), and
  `remind_at` = due - lead (for a date without a time, the all-day reminder time of that morning: `remind_at_for`),
  recomputed whenever the due date moves;
- absolute: `remind_before_minutes` null, `remind_at` set by `set_reminder(remind_at=…)`; a moved due date keeps it;
- cleared: both null after `set_reminder(remind_at=null)`; it stays cleared.
A changed `remind_at` re-arms the reminder (`reminder_sent` = false).
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.outbox import write_events
from mcp_todo.db.tasks import TaskRow
from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.reminder_times import remind_at_for, validate_lead
from mcp_todo.domain.times import format_in_zone, parse_user_time
from mcp_todo.events import Envelope
from mcp_todo.schemas import ReminderOut
from mcp_todo.service.context import UNSET, Ctx, Unset, transaction
from mcp_todo.service.edits import change_task
from mcp_todo.service.inputs import entity_id


def reminder_for_due(
    row: TaskRow, new_due: datetime | None, default_lead: int, all_day_at: time | None
) -> tuple[int | None, datetime | None]:
    """(remind_before_minutes, remind_at) once the task's due date becomes `new_due` (an all-day one is reminded
    of at `all_day_at`)."""
    if row.remind_before_minutes is not None:
        lead = row.remind_before_minutes
        return lead, remind_at_for(new_due, lead, zone=row.time_zone, all_day_at=all_day_at)
    if row.remind_at is not None:
        return None, row.remind_at
    if row.due_date is None and new_due is not None:
        # The task never had a due date, so it never had a reminder to clear: it gets the default one.
        return default_lead, remind_at_for(new_due, default_lead, zone=row.time_zone, all_day_at=all_day_at)
    return None, None


def reminder_columns(row: TaskRow, lead: int | None, remind_at: datetime | None) -> dict[str, Any]:
    """The columns to write for a new reminder (only those that change; re-armed when `remind_at` moves)."""
    changes: dict[str, Any] = {}
    if lead != row.remind_before_minutes:
        changes["remind_before_minutes"] = lead
    if remind_at != row.remind_at:
        changes["remind_at"] = remind_at
        if row.reminder_sent:
            changes["reminder_sent"] = False
    return changes


async def set_reminder(
    ctx: Ctx,
    task_id: int,
    *,
    remind_before_minutes: int | None = None,
    remind_at: str | Unset | None = UNSET,
) -> ReminderOut:
    """Set the task's reminder from a lead time before its due date, or at an absolute time (null clears it)."""
    entity_id(task_id, "task")
    if (remind_before_minutes is None) == isinstance(remind_at, Unset):
        raise ValidationError(
            "give exactly one of remind_before_minutes (minutes before the due date) or remind_at "
            "(an ISO 8601 time, or null to clear the reminder)"
        )
    async with transaction(ctx) as conn:
        events: list[Envelope] = []
        row, final = await reminder_in(
            conn, ctx, task_id, events, remind_before_minutes=remind_before_minutes, remind_at=remind_at
        )
        await write_events(conn, events)
    return ReminderOut(task_id=task_id, remind_at=format_in_zone(final, row.time_zone))


async def reminder_in(
    conn: AsyncConnection,
    ctx: Ctx,
    task_id: int,
    events: list[Envelope],
    *,
    remind_before_minutes: int | None = None,
    remind_at: str | Unset | None = UNSET,
) -> tuple[TaskRow, datetime | None]:
    """`set_reminder` (its arguments checked) inside the caller's transaction, its `task.updated` added to `events`:
    (the task before, the reminder time after)."""
    row = await tasks_db.fetch(conn, ctx.user_id, task_id, for_update=True)
    if remind_before_minutes is not None:
        lead = validate_lead(remind_before_minutes)
        if row.due_date is None:
            raise ValidationError(
                f"task {task_id} has no due date, so remind_before_minutes has nothing to count back from — "
                "give it a due_date with update_task, or use remind_at"
            )
        remind = remind_at_for(row.due_date, lead, zone=row.time_zone, all_day_at=ctx.settings.all_day_reminder_time)
        changes = reminder_columns(row, lead, remind)
    elif remind_at is None:
        changes = reminder_columns(row, None, None)
    else:
        assert isinstance(remind_at, str)
        changes = reminder_columns(row, None, parse_user_time(remind_at, ctx.time_zone, field="remind_at"))
    if changes:
        _, updated = await change_task(conn, ctx, row, changes)
        events.extend(updated)
    final: datetime | None = changes.get("remind_at", row.remind_at)
    return row, final
