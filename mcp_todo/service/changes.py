"""The events a task change emits, built from the task's rows before and after.

A task's event form is `shapes.snapshot` (the fields of `events.TaskSnapshot`, read from the row), not the tool
result: a field added to or reshaped in a tool's result does not reach an event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mcp_todo.db.tasks import TaskRow
from mcp_todo.domain.times import format_in_zone
from mcp_todo.events import (
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_DELETED,
    TASK_RESTORED,
    TASK_UPDATED,
    DeleteReason,
    Envelope,
    TaskCompleted,
    TaskUpdated,
)
from mcp_todo.service.context import Ctx
from mcp_todo.service.shapes import snapshot

_CHANGEABLE = TaskUpdated.__optional_keys__


def changed_fields(before: TaskRow, after: TaskRow) -> dict[str, Any]:
    """`{field: new value}` (JSON form) for every field `task.updated` can name whose value differs."""
    old = snapshot(before)
    new = snapshot(after)
    return {name: value for name, value in new.items() if name in _CHANGEABLE and old[name] != value}


def task_created(ctx: Ctx, task: TaskRow) -> Envelope:
    return Envelope.of(TASK_CREATED, snapshot(task), user_id=ctx.user_id, task_id=task.id, occurred_at=ctx.now)


def task_updated(ctx: Ctx, before: TaskRow, after: TaskRow) -> list[Envelope]:
    """One `task.updated` with the changed fields, or none when nothing the user can see changed."""
    changed = changed_fields(before, after)
    if not changed:
        return []
    return [Envelope.of(TASK_UPDATED, changed, user_id=ctx.user_id, task_id=after.id, occurred_at=ctx.now)]


def task_completed(ctx: Ctx, row: TaskRow) -> Envelope:
    """`row` is the task as completed; the recurrer computes the next occurrence from exactly these values."""
    payload = TaskCompleted.model_validate(
        {
            "completed_at": format_in_zone(row.completed_at, row.time_zone),
            "due_date": format_in_zone(row.due_date, row.time_zone),
            "recurrence_rule": row.recurrence_rule,
            "series_id": row.series_id,
            "time_zone": row.time_zone,
            "recurrence_from": row.recurrence_from,
        }
    )
    return Envelope.of(TASK_COMPLETED, payload, user_id=ctx.user_id, task_id=row.id, occurred_at=ctx.now)


def task_deleted(user_id: str, task: TaskRow, reason: DeleteReason, now: datetime) -> Envelope:
    """Carries the task as it was, so an audit consumer sees what disappeared, and whether it went to the trash or
    out of it for good."""
    return Envelope.of(
        TASK_DELETED, {**snapshot(task), "reason": reason}, user_id=user_id, task_id=task.id, occurred_at=now
    )


def task_restored(ctx: Ctx, task: TaskRow) -> Envelope:
    return Envelope.of(TASK_RESTORED, snapshot(task), user_id=ctx.user_id, task_id=task.id, occurred_at=ctx.now)
