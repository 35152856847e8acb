"""Writing tasks: add, update, complete, delete. Each call is one transaction that writes the rows and their events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.outbox import write_events
from mcp_todo.db.tasks import TaskRow
from mcp_todo.domain import recurrence
from mcp_todo.domain.errors import ConflictError, ValidationError
from mcp_todo.domain.reminders import remind_at_for, validate_lead
from mcp_todo.domain.times import format_in_zone, parse_user_wall_time, resolve_zone
from mcp_todo.schemas import CompletedTask, DeletedTask, TaskOut
from mcp_todo.service.categories import require_category
from mcp_todo.service.changes import task_completed, task_created, task_deleted
from mcp_todo.service.context import UNSET, Ctx, Unset, transaction
from mcp_todo.service.edits import change_task
from mcp_todo.service.inputs import TITLE_MAX, description_text, entity_id, name_text, priority_value
from mcp_todo.service.reminders import reminder_columns, reminder_for_due
from mcp_todo.service.tags import MAX_TAGS_PER_TASK, require_tags, too_many_tags_on_task

_NEEDS_DUE = (
    "a recurring task needs a due date (its first occurrence) — give due_date, e.g. 2027-03-10T09:00, "
    "or leave recurrence_rule out"
)


async def add_task(
    ctx: Ctx,
    title: str,
    *,
    description: str | None = None,
    priority: str = "medium",
    due_date: str | None = None,
    category_id: int | None = None,
    tag_ids: list[int] | None = None,
    recurrence_rule: str | None = None,
    remind_before_minutes: int | None = None,
) -> TaskOut:
    """Create a task in the caller's zone; a recurring one anchors its own series (it is occurrence 1)."""
    title = name_text(title, "title", TITLE_MAX)
    description = description_text(description)
    priority = priority_value(priority)
    zone = resolve_zone(ctx.time_zone)
    due, due_wall = parse_user_wall_time(due_date, zone, field="due_date") if due_date is not None else (None, None)
    rule = None
    if recurrence_rule is not None:
        if due is None:
            raise ValidationError(_NEEDS_DUE)
        rule = recurrence.validate_rule(recurrence_rule, due, zone)
    lead: int | None = None
    if remind_before_minutes is not None:
        lead = validate_lead(remind_before_minutes)
        if due is None:
            raise ValidationError("remind_before_minutes counts back from the due date — give due_date too")
    elif due is not None:
        lead = ctx.lead_minutes
    wanted_tags = list(dict.fromkeys(tag_ids or []))
    if len(wanted_tags) > MAX_TAGS_PER_TASK:
        raise too_many_tags_on_task()

    async with transaction(ctx) as conn:
        if category_id is not None:
            await require_category(conn, ctx.user_id, category_id)
        tags = await require_tags(conn, ctx.user_id, wanted_tags)
        row = await tasks_db.insert(
            conn,
            user_id=ctx.user_id,
            title=title,
            description=description,
            priority=priority,
            due=due,
            due_wall=due_wall,
            time_zone=ctx.time_zone,
            category_id=category_id,
            rule=rule,
            lead=lead,
            remind_at=remind_at_for(due, lead) if lead is not None else None,
            tag_ids=tags,
            now=ctx.now,
        )
        task = row.public()
        await write_events(conn, [task_created(ctx, task)])
    return task


async def update_task(
    ctx: Ctx,
    task_id: int,
    *,
    title: str | Unset | None = UNSET,
    description: str | Unset | None = UNSET,
    priority: str | Unset | None = UNSET,
    due_date: str | Unset | None = UNSET,
    category_id: int | Unset | None = UNSET,
    recurrence_rule: str | Unset | None = UNSET,
    status: str | Unset | None = UNSET,
) -> TaskOut:
    """Change the given fields (UNSET leaves one alone, None clears it). A new due date or rule re-anchors the series
    at this task; `status` completes (as complete_task) or reopens it."""
    entity_id(task_id, "task")
    for name, value in (("title", title), ("priority", priority), ("status", status)):
        if value is None:
            raise ValidationError(f"{name} cannot be cleared — leave it out to keep it, or give a new value")
    if not isinstance(status, Unset) and status not in ("pending", "completed"):
        raise ValidationError(f"status must be pending or completed (got {str(status)[:20]!r})")

    async with transaction(ctx) as conn:
        row = await tasks_db.fetch(conn, ctx.user_id, task_id, for_update=True)
        changes: dict[str, Any] = {}
        if isinstance(title, str):
            changes["title"] = name_text(title, "title", TITLE_MAX)
        if not isinstance(description, Unset):
            changes["description"] = description_text(description)
        if isinstance(priority, str):
            changes["priority"] = priority_value(priority)
        if not isinstance(category_id, Unset):
            if category_id is not None:
                await require_category(conn, ctx.user_id, category_id)
            changes["category_id"] = category_id
        changes.update(await _schedule_changes(conn, ctx, row, due_date, recurrence_rule))
        if status == "pending" and row.status == "completed":
            changes.update(status="pending", completed_at=None)
        changes = {name: value for name, value in changes.items() if getattr(row, name) != value}

        after, events = await change_task(conn, ctx, row, changes) if changes else (row, [])
        if status == "completed" and row.status == "pending":
            after = await tasks_db.update(
                conn, ctx.user_id, task_id, {"status": "completed", "completed_at": ctx.now}, ctx.now
            )
            events.append(task_completed(ctx, after))
        await write_events(conn, events)
    return after.public()


async def _schedule_changes(
    conn: AsyncConnection, ctx: Ctx, row: TaskRow, due_date: str | Unset | None, recurrence_rule: str | Unset | None
) -> dict[str, Any]:
    """Due date, rule, series anchor and reminder columns after an update (unchanged ones are dropped by the
    caller)."""
    if isinstance(due_date, Unset) and isinstance(recurrence_rule, Unset):
        return {}
    zone = resolve_zone(ctx.time_zone)
    due = row.due_date
    # The wall time asked for in the task's zone (where the series is expanded), when it is the caller's zone.
    due_wall = row.series_start_wall if due == row.series_start else None
    if not isinstance(due_date, Unset):
        due, due_wall = parse_user_wall_time(due_date, zone, field="due_date") if due_date is not None else (None, None)
        if ctx.time_zone != row.time_zone:
            due_wall = None
    rule = row.recurrence_rule
    rule_given = not isinstance(recurrence_rule, Unset)
    if rule_given:
        rule = recurrence_rule if recurrence_rule is None else str(recurrence_rule)
    changes: dict[str, Any] = {"due_date": due}
    if rule is None:
        changes.update(recurrence_rule=None, series_id=None, series_start=None, series_start_wall=None)
    else:
        if due is None:
            raise ValidationError(_NEEDS_DUE + " (to stop the repetition, set recurrence_rule to null)")
        # Rules are validated in the task's own zone, where its occurrences are expanded.
        normalized = recurrence.validate_rule(rule, due, resolve_zone(row.time_zone))
        changes["recurrence_rule"] = normalized
        if due != row.due_date or normalized != row.recurrence_rule or row.series_id is None:
            # Editing the rule or the due date of an occurrence re-anchors the series here.
            await _require_free_slot(conn, row.id, due)
            if due_wall is None:
                due_wall = due.astimezone(resolve_zone(row.time_zone)).replace(tzinfo=None)
            changes.update(series_id=row.id, series_start=due, series_start_wall=due_wall)
    if due != row.due_date:
        lead, remind_at = reminder_for_due(row, due, ctx.lead_minutes)
        changes.update(reminder_columns(row, lead, remind_at))
    return changes


async def _require_free_slot(conn: AsyncConnection, task_id: int, due: datetime) -> None:
    """A series holds one occurrence per due date; say so before the unique index would."""
    clash = await tasks_db.series_clash(conn, task_id, due)
    if clash is not None:
        raise ConflictError(
            f"task {clash}, an occurrence of this task's series, is already due at that time — pick another due date"
        )


def next_occurrence_of(row: TaskRow) -> datetime | None:
    """The due date of the occurrence that follows this completed one, as the recurrer will compute it."""
    if row.recurrence_rule is None or row.due_date is None or row.completed_at is None:
        return None
    zone = resolve_zone(row.time_zone)
    return recurrence.next_occurrence(
        row.recurrence_rule, tasks_db.expansion_start(row), zone, row.due_date, row.completed_at
    )


async def complete_task(ctx: Ctx, task_id: int) -> CompletedTask:
    """Complete the task; completing a completed one changes nothing and emits nothing."""
    entity_id(task_id, "task")
    async with transaction(ctx) as conn:
        row = await tasks_db.complete(conn, ctx.user_id, task_id, ctx.now)
        if row is None:  # completed already (or not the user's: NOT_FOUND)
            row = await tasks_db.fetch(conn, ctx.user_id, task_id)
        else:
            await write_events(conn, [task_completed(ctx, row)])
    return CompletedTask(**row.public_fields(), next_occurrence=format_in_zone(next_occurrence_of(row), row.time_zone))


async def delete_task(ctx: Ctx, task_id: int) -> DeletedTask:
    entity_id(task_id, "task")
    async with transaction(ctx) as conn:
        task = (await tasks_db.delete(conn, ctx.user_id, task_id)).public()
        await write_events(conn, [task_deleted(ctx, task)])
    return DeletedTask(deleted_task_id=task_id, title=task.title)
