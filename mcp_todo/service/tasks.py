"""Writing tasks: add, update, complete, delete. Each call is one transaction that writes the rows and their events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.outbox import write_events
from mcp_todo.db.tasks import TaskRow
from mcp_todo.domain import recurrence
from mcp_todo.domain.errors import ConflictError, ValidationError
from mcp_todo.domain.reminder_times import remind_at_for, validate_lead
from mcp_todo.domain.times import format_in_zone, parse_user_wall_time, resolve_zone
from mcp_todo.events import Envelope
from mcp_todo.schemas import CompletedTask, DeletedTask, TaskOut
from mcp_todo.service import dependencies
from mcp_todo.service.categories import require_category
from mcp_todo.service.changes import task_completed, task_created, task_deleted, task_restored
from mcp_todo.service.context import UNSET, Ctx, Unset, transaction
from mcp_todo.service.edits import change_task
from mcp_todo.service.hierarchy import (
    SUBTASK_NO_RULE,
    TreeChanged,
    check_parent,
    recurrence_from_value,
    require_parent,
    until_tree_holds,
    validated_rule,
)
from mcp_todo.service.inputs import TITLE_MAX, description_text, entity_id, name_text, priority_value
from mcp_todo.service.reminders import reminder_columns, reminder_for_due
from mcp_todo.service.shapes import task_fields, task_out
from mcp_todo.service.tags import MAX_TAGS_PER_TASK, require_tags, too_many_tags_on_task

_FROM_NEEDS_RULE = (
    "recurrence_from=completion repeats a recurrence_rule's interval after each completion — give recurrence_rule "
    "too, e.g. FREQ=DAILY;INTERVAL=3"
)
_NEEDS_DUE = (
    "a recurring task needs a due date (its first occurrence) — give due_date, e.g. 2027-03-10T09:00, "
    "or leave recurrence_rule out"
)


@dataclass(frozen=True)
class NewTask:
    """One task's fields for add_task, checked and parsed (nothing read from the database yet)."""

    title: str
    description: str | None
    priority: str
    due: datetime | None
    due_wall: datetime | None
    category_id: int | None
    tag_ids: list[int]
    rule: str | None
    lead: int | None
    parent_id: int | None
    recurrence_from: str
    blocked_by: list[int] | None = None


def new_task(
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
    parent_id: int | None = None,
    recurrence_from: str = "schedule",
    blocked_by: list[int] | None = None,
) -> NewTask:
    """The checks of add_task that need no database, for one task or each item of a batch."""
    title = name_text(title, "title", TITLE_MAX)
    description = description_text(description)
    priority = priority_value(priority)
    recurrence_from = recurrence_from_value(recurrence_from)
    zone = resolve_zone(ctx.time_zone)
    due, due_wall = parse_user_wall_time(due_date, zone, field="due_date") if due_date is not None else (None, None)
    rule = None
    if recurrence_rule is not None:
        if due is None:
            raise ValidationError(_NEEDS_DUE)
        rule = validated_rule(recurrence_rule, due, zone, recurrence_from)
    elif recurrence_from == "completion":
        raise ValidationError(_FROM_NEEDS_RULE)
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
    if parent_id is not None:
        entity_id(parent_id, "task")
        if rule is not None:
            raise ValidationError(SUBTASK_NO_RULE)
    return NewTask(
        title,
        description,
        priority,
        due,
        due_wall,
        category_id,
        wanted_tags,
        rule,
        lead,
        parent_id,
        recurrence_from,
        dependencies.blocker_ids(blocked_by),
    )


async def insert_task(conn: AsyncConnection, ctx: Ctx, spec: NewTask) -> TaskRow:
    """Check the ids a new task refers to and insert it; its `task.created` is the caller's to write."""
    if spec.category_id is not None:
        await require_category(conn, ctx.user_id, spec.category_id)
    tags = await require_tags(conn, ctx.user_id, spec.tag_ids)
    if spec.parent_id is not None:
        await require_parent(conn, ctx.user_id, spec.parent_id)
    row = await tasks_db.insert(
        conn,
        user_id=ctx.user_id,
        title=spec.title,
        description=spec.description,
        priority=spec.priority,
        due=spec.due,
        due_wall=spec.due_wall,
        time_zone=ctx.time_zone,
        category_id=spec.category_id,
        rule=spec.rule,
        lead=spec.lead,
        remind_at=(
            remind_at_for(spec.due, spec.lead, zone=ctx.time_zone, all_day_at=ctx.settings.all_day_reminder_time)
            if spec.lead is not None
            else None
        ),
        tag_ids=tags,
        now=ctx.now,
        parent_id=spec.parent_id,
        recurrence_from=spec.recurrence_from,
    )
    if spec.blocked_by and await dependencies.set_blockers(conn, ctx, row.id, spec.blocked_by):
        row = await dependencies.reload(conn, ctx, row.id)
    return row


async def add_task(ctx: Ctx, title: str | None, **fields: Any) -> TaskOut:
    """Create a task in the caller's zone; a recurring one anchors its own series (it is occurrence 1). `fields`
    are those of `new_task`."""
    if title is None:
        raise ValidationError("title: missing; give title (one task), or tasks (a batch of up to 50)")
    spec = new_task(ctx, title, **fields)
    async with transaction(ctx) as conn:
        if spec.blocked_by:
            await dependencies.lock(conn, ctx)
        task = await insert_task(conn, ctx, spec)
        await write_events(conn, [task_created(ctx, task)])
    return task_out(task)


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
    parent_id: int | Unset | None = UNSET,
    recurrence_from: str | Unset | None = UNSET,
    blocked_by: list[int] | Unset | None = UNSET,
) -> TaskOut:
    """Change the given fields (UNSET leaves one alone, None clears it). A new due date, rule or recurrence_from
    re-anchors the series at this task; `status` completes (as complete_task) or reopens it; on a task in the trash,
    status=pending restores it (as it was, with the subtasks trashed with it) before the other changes apply."""
    entity_id(task_id, "task")
    for name, value in (("title", title), ("priority", priority), ("status", status)):
        if value is None:
            raise ValidationError(f"{name} cannot be cleared — leave it out to keep it, or give a new value")
    if not isinstance(status, Unset) and status not in ("pending", "completed"):
        raise ValidationError(f"status must be pending or completed (got {str(status)[:20]!r})")
    if recurrence_from is None:
        recurrence_from = "schedule"
    if not isinstance(recurrence_from, Unset):
        recurrence_from = recurrence_from_value(recurrence_from)
    # Replaces the blockers; [] (or null) clears them.
    blockers = None if isinstance(blocked_by, Unset) else dependencies.blocker_ids(blocked_by or [])

    fields: dict[str, Any] = {
        "title": title,
        "description": description,
        "priority": priority,
        "due_date": due_date,
        "category_id": category_id,
        "recurrence_rule": recurrence_rule,
        "status": status,
        "parent_id": parent_id,
        "recurrence_from": recurrence_from,
        "blockers": blockers,
    }
    return await until_tree_holds(lambda: _update(ctx, task_id, fields))


async def _update(ctx: Ctx, task_id: int, fields: dict[str, Any]) -> TaskOut:
    """One attempt of `update_task` (arguments checked: `update_in`'s), in one transaction."""
    async with transaction(ctx) as conn:
        if fields["blockers"] is not None:
            await dependencies.lock(conn, ctx)
        events: list[Envelope] = []
        after = await update_in(conn, ctx, task_id, events, **fields)
        await write_events(conn, events)
    return task_out(after)


async def update_in(
    conn: AsyncConnection,
    ctx: Ctx,
    task_id: int,
    events: list[Envelope],
    *,
    title: str | Unset | None = UNSET,
    description: str | Unset | None = UNSET,
    priority: str | Unset | None = UNSET,
    due_date: str | Unset | None = UNSET,
    category_id: int | Unset | None = UNSET,
    recurrence_rule: str | Unset | None = UNSET,
    status: str | Unset | None = UNSET,
    parent_id: int | Unset | None = UNSET,
    recurrence_from: str | Unset = UNSET,
    blockers: list[int] | None = None,
) -> TaskRow:
    """`update_task` (its arguments checked) inside the caller's transaction, which holds the user's dependency
    lock when `blockers` is given; its events added to `events`, the task after returned. TreeChanged when the
    tree moved under it (the caller retries the whole transaction)."""
    row = await _locked(conn, ctx, task_id, parent_id, status)
    if row.deleted_at is not None:
        if status != "pending":
            raise tasks_db.task_in_trash(task_id)
        row = await _restore(conn, ctx, row, events)
        status = UNSET  # restored as it was: a completed task stays completed
    # Written first: the row the update returns reads them, so its task.updated carries a blocked_by changed.
    blockers_changed = blockers is not None and await dependencies.set_blockers(conn, ctx, task_id, blockers)
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
    if not isinstance(parent_id, Unset) and parent_id != row.parent_id:
        if parent_id is not None:
            await require_parent(conn, ctx.user_id, parent_id, task_id)
        changes["parent_id"] = parent_id
    changes.update(await _schedule_changes(conn, ctx, row, due_date, recurrence_rule, recurrence_from))
    if status == "pending" and row.status == "completed":
        changes.update(status="pending", completed_at=None)
    changes = {name: value for name, value in changes.items() if getattr(row, name) != value}
    if changes.get("parent_id", row.parent_id) is not None and changes.get("recurrence_rule", row.recurrence_rule):
        raise ValidationError(SUBTASK_NO_RULE)

    after, updated = await change_task(conn, ctx, row, changes) if changes or blockers_changed else (row, [])
    events.extend(updated)
    if status == "completed" and after.status == "pending":
        completed = await tasks_db.complete(conn, ctx.user_id, task_id, ctx.now)
        events.extend(task_completed(ctx, done) for done in completed)
        after = completed[-1]
    return after


async def _locked(
    conn: AsyncConnection, ctx: Ctx, task_id: int, parent_id: int | Unset | None, status: str | Unset | None
) -> TaskRow:
    """The task, locked for this update. A change of parent or status (reparent, restore, complete) depends on the
    task's parent and the new one: those are locked first, then the task if it is a subtask (the order
    `tasks_db.lock_top_level` describes), chosen from the task as last committed (`TreeChanged` when it has moved
    meanwhile)."""
    if isinstance(parent_id, Unset) and isinstance(status, Unset):
        return await tasks_db.fetch(conn, ctx.user_id, task_id, for_update=True, trashed=True)
    seen = await tasks_db.fetch(conn, ctx.user_id, task_id, trashed=True)
    if seen.deleted_at is not None and status != "pending":
        raise tasks_db.task_in_trash(task_id)
    new_parent = parent_id if isinstance(parent_id, int) and parent_id != seen.parent_id else None
    if new_parent is not None:
        await check_parent(conn, ctx.user_id, new_parent, task_id)
    parents = {p for p in (seen.parent_id, new_parent) if p is not None}
    writes = {task_id} if seen.parent_id is None else set()
    if not await tasks_db.lock_top_level(conn, ctx.user_id, writes=writes, reads=parents):
        raise TreeChanged
    if seen.parent_id is not None and not await tasks_db.lock_subtasks(conn, ctx.user_id, {task_id: seen.parent_id}):
        raise TreeChanged
    return await tasks_db.fetch(conn, ctx.user_id, task_id, for_update=True, trashed=True)


async def _restore(conn: AsyncConnection, ctx: Ctx, row: TaskRow, events: list[Envelope]) -> TaskRow:
    """Take the trashed task (and the subtasks trashed with it) out of the trash; the task as restored."""
    if row.parent_id is not None:
        parent = await tasks_db.fetch(conn, ctx.user_id, row.parent_id, for_share=True, trashed=True)
        if parent.deleted_at is not None:
            raise ValidationError(
                f"task {row.id} is a subtask of task {parent.id}, which is in the trash too — restore task "
                f"{parent.id} (update_task status=pending), which brings back the subtasks trashed with it"
            )
    restored = await tasks_db.restore(conn, ctx.user_id, row, ctx.now)
    events.extend(task_restored(ctx, task) for task in restored)
    return restored[0]


async def _schedule_changes(
    conn: AsyncConnection,
    ctx: Ctx,
    row: TaskRow,
    due_date: str | Unset | None,
    recurrence_rule: str | Unset | None,
    recurrence_from: str | Unset,
) -> dict[str, Any]:
    """Due date, rule, mode, series anchor and reminder columns after an update (unchanged ones are dropped by the
    caller)."""
    if isinstance(due_date, Unset) and isinstance(recurrence_rule, Unset) and isinstance(recurrence_from, Unset):
        return {}
    mode = row.recurrence_from if isinstance(recurrence_from, Unset) else recurrence_from
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
        if not isinstance(recurrence_from, Unset) and recurrence_from == "completion":
            raise ValidationError(_FROM_NEEDS_RULE)
        changes.update(
            recurrence_rule=None, series_id=None, series_start=None, series_start_wall=None, recurrence_from="schedule"
        )
    else:
        if due is None:
            raise ValidationError(_NEEDS_DUE + " (to stop the repetition, set recurrence_rule to null)")
        # Rules are validated in the task's own zone, where its occurrences are expanded.
        normalized = validated_rule(rule, due, resolve_zone(row.time_zone), mode)
        changes.update(recurrence_rule=normalized, recurrence_from=mode)
        if (
            due != row.due_date
            or normalized != row.recurrence_rule
            or mode != row.recurrence_from
            or row.series_id is None
        ):
            # Editing the rule or the due date of an occurrence re-anchors the series here.
            await _require_free_slot(conn, row.user_id, row.id, due)
            if due_wall is None:
                due_wall = due.astimezone(resolve_zone(row.time_zone)).replace(tzinfo=None)
            changes.update(series_id=row.id, series_start=due, series_start_wall=due_wall)
    if due != row.due_date:
        lead, remind_at = reminder_for_due(row, due, ctx.lead_minutes, ctx.settings.all_day_reminder_time)
        changes.update(reminder_columns(row, lead, remind_at))
    return changes


async def _require_free_slot(conn: AsyncConnection, user_id: str, task_id: int, due: datetime) -> None:
    """A series holds one occurrence per due date; say so before the unique index would."""
    clash = await tasks_db.series_clash(conn, user_id, task_id, due)
    if clash is not None:
        raise ConflictError(
            f"task {clash}, an occurrence of this task's series, is already due at that time — pick another due date"
        )


def next_occurrence_of(row: TaskRow) -> datetime | None:
    """The due date of the occurrence that follows this completed one, as the recurrer will compute it."""
    if row.recurrence_rule is None or row.due_date is None or row.completed_at is None:
        return None
    zone = resolve_zone(row.time_zone)
    start = tasks_db.expansion_start(row)
    if row.from_completion:
        following = recurrence.next_after_completion(
            row.recurrence_rule, start.astimezone(zone).time(), zone, row.due_date, row.completed_at
        )
        return None if following is None else following[0]
    return recurrence.next_occurrence(row.recurrence_rule, start, zone, row.due_date, row.completed_at)


def completed_result(row: TaskRow) -> CompletedTask:
    return CompletedTask.model_validate(
        {**task_fields(row), "next_occurrence": format_in_zone(next_occurrence_of(row), row.time_zone)}
    )


async def complete_in(
    conn: AsyncConnection,
    ctx: Ctx,
    task_id: int,
    events: list[Envelope],
    completed: dict[int, TaskRow] | None = None,
) -> tuple[TaskRow, bool]:
    """Complete the task with its open subtasks (each its own `task.completed`, subtasks first, added to `events`,
    and each row as completed to `completed`); the task, and whether anything changed (a completed task changes
    nothing)."""
    # Locked before the statement reads the subtasks, so it sees every subtask committed before it.
    await tasks_db.lock_one(conn, ctx.user_id, task_id)
    rows = await tasks_db.complete(conn, ctx.user_id, task_id, ctx.now)
    if not rows:  # completed already (or not the user's, or in the trash: NOT_FOUND)
        return await tasks_db.fetch(conn, ctx.user_id, task_id), False
    events.extend(task_completed(ctx, row) for row in rows)
    if completed is not None:
        completed.update((row.id, row) for row in rows)
    return rows[-1], True


async def complete_task(ctx: Ctx, task_id: int) -> CompletedTask:
    """Complete the task and its open subtasks; completing a completed one changes nothing and emits nothing."""
    entity_id(task_id, "task")
    events: list[Envelope] = []
    async with transaction(ctx) as conn:
        row, _ = await complete_in(conn, ctx, task_id, events)
        await write_events(conn, events)
    return completed_result(row)


async def trash_in(conn: AsyncConnection, ctx: Ctx, task_id: int, events: list[Envelope]) -> list[TaskRow]:
    """Move the task and its subtasks to the trash (a `task.deleted` each, reason trashed, added to `events`); the
    rows, the task first."""
    # Locked before the statement reads the subtasks, so it takes every subtask committed before it.
    await tasks_db.lock_one(conn, ctx.user_id, task_id)
    rows = await tasks_db.trash(conn, ctx.user_id, task_id, ctx.now)
    if not rows:
        await tasks_db.fetch(conn, ctx.user_id, task_id)  # NOT_FOUND: says whether it is in the trash already
        raise tasks_db.task_not_found(task_id)
    events.extend(task_deleted(ctx.user_id, row, "trashed", ctx.now) for row in rows)
    return rows


async def delete_task(ctx: Ctx, task_id: int) -> DeletedTask:
    """Move the task, with its subtasks, to the trash (update_task status=pending restores it)."""
    entity_id(task_id, "task")
    events: list[Envelope] = []
    async with transaction(ctx) as conn:
        rows = await trash_in(conn, ctx, task_id, events)
        await write_events(conn, events)
    return DeletedTask(deleted_task_id=task_id, title=rows[0].title, trashed_subtasks=len(rows) - 1 or None)
