"""The events a task change emits (CONTRACT §6), built from the Task as the user sees it before and after."""

from __future__ import annotations

from typing import Any

from mcp_todo.db.tasks import TaskRow
from mcp_todo.domain.times import format_in_zone
from mcp_todo.events import TASK_COMPLETED, TASK_CREATED, TASK_DELETED, TASK_UPDATED, Envelope
from mcp_todo.schemas import TaskOut
from mcp_todo.service.context import Ctx

# Bumped by every change, so it says nothing about what changed.
_NOT_A_CHANGE = frozenset({"updated_at"})


def changed_fields(before: TaskOut, after: TaskOut) -> dict[str, Any]:
    """`{field: new value}` for every Task field whose value differs (JSON form, as the Task shows it)."""
    old = before.model_dump(mode="json")
    new = after.model_dump(mode="json")
    return {name: value for name, value in new.items() if name not in _NOT_A_CHANGE and old.get(name) != value}


def task_created(ctx: Ctx, task: TaskOut) -> Envelope:
    return Envelope(TASK_CREATED, ctx.user_id, task.id, task.model_dump(mode="json"), occurred_at=ctx.now)


def task_updated(ctx: Ctx, before: TaskOut, after: TaskOut) -> list[Envelope]:
    """One `task.updated` with the changed fields, or none when nothing the user can see changed."""
    changed = changed_fields(before, after)
    if not changed:
        return []
    return [Envelope(TASK_UPDATED, ctx.user_id, after.id, changed, occurred_at=ctx.now)]


def task_completed(ctx: Ctx, row: TaskRow) -> Envelope:
    """`row` is the task as completed; the recurrer computes the next occurrence from exactly these values."""
    data = {
        "completed_at": format_in_zone(row.completed_at, row.time_zone),
        "due_date": format_in_zone(row.due_date, row.time_zone),
        "recurrence_rule": row.recurrence_rule,
        "series_id": row.series_id,
        "time_zone": row.time_zone,
    }
    return Envelope(TASK_COMPLETED, ctx.user_id, row.id, data, occurred_at=ctx.now)


def task_deleted(ctx: Ctx, task: TaskOut) -> Envelope:
    """Carries the Task as it was, so an audit consumer sees what disappeared."""
    return Envelope(TASK_DELETED, ctx.user_id, task.id, task.model_dump(mode="json"), occurred_at=ctx.now)
