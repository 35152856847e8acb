"""The events a task change emits, built as their payload models (`mcp_todo.events`) from the task before and after.

The tool result (`TaskOut`) is only where the loaded task's values are read from: each payload model names its own
fields, so a field added to or reshaped in a tool's result does not reach an event.
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
    TaskCreated,
    TaskDeleted,
    TaskRestored,
    TaskSnapshot,
    TaskUpdated,
)
from mcp_todo.schemas import TaskOut
from mcp_todo.service.context import Ctx

_CHANGEABLE = TaskUpdated.__optional_keys__


def changed_fields(before: TaskOut, after: TaskOut) -> dict[str, Any]:
    """`{field: new value}` (JSON form) for every field `task.updated` can name whose value differs."""
    old = TaskSnapshot.from_task(before).model_dump(mode="json")
    new = TaskSnapshot.from_task(after).model_dump(mode="json")
    return {name: value for name, value in new.items() if name in _CHANGEABLE and old[name] != value}


def task_created(ctx: Ctx, task: TaskOut) -> Envelope:
    return Envelope.of(
        TASK_CREATED, TaskCreated.from_task(task), user_id=ctx.user_id, task_id=task.id, occurred_at=ctx.now
    )


def task_updated(ctx: Ctx, before: TaskOut, after: TaskOut) -> list[Envelope]:
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


def task_deleted(user_id: str, task: TaskOut, reason: DeleteReason, now: datetime) -> Envelope:
    """Carries the task as it was, so an audit consumer sees what disappeared, and whether it went to the trash or
    out of it for good."""
    payload = TaskDeleted.model_validate(
        {**TaskSnapshot.from_task(task).model_dump(), "reason": reason}, from_attributes=False
    )
    return Envelope.of(TASK_DELETED, payload, user_id=user_id, task_id=task.id, occurred_at=now)


def task_restored(ctx: Ctx, task: TaskOut) -> Envelope:
    return Envelope.of(
        TASK_RESTORED, TaskRestored.from_task(task), user_id=ctx.user_id, task_id=task.id, occurred_at=ctx.now
    )
