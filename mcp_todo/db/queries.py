"""Reading tasks in their public shape (`TaskOut`), in a fixed number of queries whatever the number of tasks.

Used by the service layer and by the workers (the recurrer puts the new Task into its `task.created` event), so
nothing here depends on the MCP server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.domain import recurrence
from mcp_todo.domain.errors import InvalidRecurrenceRuleError, NotFoundError
from mcp_todo.domain.times import format_in_zone, resolve_zone
from mcp_todo.schemas import CategoryOut, Priority, RecurrenceOut, Status, TagOut, TaskOut

log = logging.getLogger(__name__)

PREVIEW_OCCURRENCES = 5

_TASK_COLUMN_NAMES = [
    "id",
    "user_id",
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "time_zone",
    "category_id",
    "recurrence_rule",
    "series_id",
    "series_start",
    "previous_task_id",
    "remind_before_minutes",
    "remind_at",
    "reminder_sent",
    "completed_at",
    "created_at",
    "updated_at",
]
TASK_COLUMNS = ", ".join(_TASK_COLUMN_NAMES)
_TASK_COLUMNS_T = ", ".join(f"t.{name}" for name in _TASK_COLUMN_NAMES)


@dataclass(frozen=True)
class TaskRow:
    """One `tasks` row as stored (aware datetimes), for the service's decisions."""

    id: int
    user_id: str
    title: str
    description: str | None
    status: str
    priority: str
    due_date: datetime | None
    time_zone: str
    category_id: int | None
    recurrence_rule: str | None
    series_id: int | None
    series_start: datetime | None
    previous_task_id: int | None
    remind_before_minutes: int | None
    remind_at: datetime | None
    reminder_sent: bool
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_mapping(cls, row: Any) -> TaskRow:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def task_not_found(task_id: int) -> NotFoundError:
    return NotFoundError(f"task {task_id} does not exist for this user — list_tasks shows the ids")


async def fetch_task_row(conn: AsyncConnection, user_id: str, task_id: int, *, for_update: bool = False) -> TaskRow:
    """The stored row of one of the user's tasks (locked for the transaction when `for_update`)."""
    lock = " FOR UPDATE" if for_update else ""
    result = await conn.execute(
        text(f"SELECT {TASK_COLUMNS} FROM tasks WHERE user_id = :user_id AND id = :task_id{lock}"),
        {"user_id": user_id, "task_id": task_id},
    )
    row = result.mappings().first()
    if row is None:
        raise task_not_found(task_id)
    return TaskRow.from_mapping(row)


def recurrence_preview(row: TaskRow) -> RecurrenceOut | None:
    """The rule in English and the next due dates after this task's, in the task's zone."""
    if row.recurrence_rule is None or row.due_date is None:
        return None
    zone = resolve_zone(row.time_zone)
    series_start = row.series_start or row.due_date
    try:
        upcoming = recurrence.next_occurrences(
            row.recurrence_rule, series_start, zone, row.due_date, limit=PREVIEW_OCCURRENCES
        )
        described = recurrence.describe_rule(row.recurrence_rule)
    except InvalidRecurrenceRuleError:
        # A rule stored by an older version that this one no longer accepts: show the task, not an error.
        log.warning("stored recurrence rule no longer valid", extra={"task_id": row.id})
        return None
    return RecurrenceOut(text=described, next_occurrences=[_iso(dt, zone) for dt in upcoming])


def _iso(dt: datetime, zone: Any) -> str:
    formatted = format_in_zone(dt, zone)
    assert formatted is not None
    return formatted


def to_task_out(row: TaskRow, category: CategoryOut | None, tags: list[TagOut]) -> TaskOut:
    zone = resolve_zone(row.time_zone)
    return TaskOut(
        id=row.id,
        title=row.title,
        description=row.description,
        # The table's CHECK constraints guarantee the literals.
        status=cast(Status, row.status),
        priority=cast(Priority, row.priority),
        due_date=format_in_zone(row.due_date, zone),
        time_zone=row.time_zone,
        category=category,
        tags=tags,
        recurrence_rule=row.recurrence_rule,
        recurrence=recurrence_preview(row),
        remind_at=format_in_zone(row.remind_at, zone),
        reminder_sent=row.reminder_sent,
        completed_at=format_in_zone(row.completed_at, zone),
        created_at=_iso(row.created_at, zone),
        updated_at=_iso(row.updated_at, zone),
    )


async def load_tasks(conn: AsyncConnection, user_id: str, ids: list[int]) -> list[TaskOut]:
    """The user's tasks with these ids, in the order of `ids`; ids that are not the user's are skipped."""
    if not ids:
        return []
    rows = await conn.execute(
        text(
            f"SELECT {_TASK_COLUMNS_T}, c.name AS category_name, c.color AS category_color "
            "FROM tasks t LEFT JOIN categories c ON c.id = t.category_id AND c.user_id = t.user_id "
            "WHERE t.user_id = :user_id AND t.id = ANY(:ids)"
        ),
        {"user_id": user_id, "ids": ids},
    )
    by_id: dict[int, tuple[TaskRow, CategoryOut | None]] = {}
    for row in rows.mappings():
        task = TaskRow.from_mapping(row)
        category = (
            CategoryOut(id=task.category_id, name=row["category_name"], color=row["category_color"])
            if task.category_id is not None and row["category_name"] is not None
            else None
        )
        by_id[task.id] = (task, category)
    tags: dict[int, list[TagOut]] = {task_id: [] for task_id in by_id}
    if by_id:
        tag_rows = await conn.execute(
            text(
                "SELECT tt.task_id, g.id, g.name, g.color FROM task_tags tt JOIN tags g ON g.id = tt.tag_id "
                "WHERE tt.user_id = :user_id AND tt.task_id = ANY(:ids) ORDER BY lower(g.name), g.id"
            ),
            {"user_id": user_id, "ids": list(by_id)},
        )
        for tag_row in tag_rows.mappings():
            tags[tag_row["task_id"]].append(TagOut(id=tag_row["id"], name=tag_row["name"], color=tag_row["color"]))
    return [to_task_out(by_id[i][0], by_id[i][1], tags[i]) for i in dict.fromkeys(ids) if i in by_id]


async def load_task(conn: AsyncConnection, user_id: str, task_id: int) -> TaskOut:
    """One of the user's tasks; NOT_FOUND (the same for a missing task and another user's) otherwise."""
    found = await load_tasks(conn, user_id, [task_id])
    if not found:
        raise task_not_found(task_id)
    return found[0]


_WRITABLE_COLUMNS = frozenset(_TASK_COLUMN_NAMES) - {"id", "user_id", "created_at", "updated_at"}


async def update_task_columns(
    conn: AsyncConnection, user_id: str, task_id: int, changes: dict[str, Any], now: datetime
) -> None:
    """Write the changed columns of one task and bump `updated_at`; nothing when nothing changed."""
    if not changes:
        return
    unknown = set(changes) - _WRITABLE_COLUMNS
    if unknown:
        raise ValueError(f"not writable task columns: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = :{name}" for name in changes)
    await conn.execute(
        text(f"UPDATE tasks SET {assignments}, updated_at = :now WHERE user_id = :user_id AND id = :task_id"),
        {**changes, "now": now, "user_id": user_id, "task_id": task_id},
    )
