"""The `tasks` table: every statement that reads or writes it, and its public shape (`TaskOut`).

A statement that touches a task returns the row together with what the user sees of it (its category, its tags in
name order) — one round trip, not a write followed by reads — through `shape_select`, which wraps the row source (the
table, or a data-modifying CTE's RETURNING) in the category join and a lateral aggregate of the tags.

Used by the services and by the workers' handlers, so nothing here depends on the MCP server.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import column, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.selectable import TextualSelect

from mcp_todo.db.models import Task, table_of
from mcp_todo.domain import recurrence
from mcp_todo.domain.errors import InvalidRecurrenceRuleError, NotFoundError
from mcp_todo.domain.times import format_in_zone, resolve_zone
from mcp_todo.schemas import CategoryOut, Priority, RecurrenceOut, Status, TagOut, TaskOut

log = logging.getLogger(__name__)

PREVIEW_OCCURRENCES: Final = 5

_COLUMNS: Final = (
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
    "series_start_wall",
    "previous_task_id",
    "remind_before_minutes",
    "remind_at",
    "reminder_sent",
    "completed_at",
    "created_at",
    "updated_at",
)
_WRITABLE: Final = frozenset(_COLUMNS) - {"id", "user_id", "created_at", "updated_at"}
# What `shape_select` returns, in its order.
SHAPE_COLUMNS: Final = (*_COLUMNS, "category_name", "category_color", "tag_ids", "tag_names", "tag_colors")
_tasks = table_of(Task)


def shape_select(source: str, *, links: str = "task_tags", extra: str = "") -> str:
    """SELECT the task rows of `source` (aliased t) with their category and tags (and the `extra` columns of
    `source`, e.g. ", t.rank"); `links` is the relation of (task_id, tag_id, user_id) rows to read the tags from (a
    CTE's RETURNING sees rows its own statement wrote)."""
    columns = ", ".join(f"t.{name}" for name in _COLUMNS)
    return (
        f"SELECT {columns}, c.name AS category_name, c.color AS category_color, "
        f"g.tag_ids, g.tag_names, g.tag_colors{extra} "
        f"FROM {source} t "
        "LEFT JOIN categories c ON c.id = t.category_id AND c.user_id = t.user_id "
        "LEFT JOIN LATERAL (SELECT array_agg(tg.id ORDER BY lower(tg.name), tg.id) AS tag_ids, "
        "array_agg(tg.name ORDER BY lower(tg.name), tg.id) AS tag_names, "
        "array_agg(tg.color ORDER BY lower(tg.name), tg.id) AS tag_colors "
        f"FROM {links} tt JOIN tags tg ON tg.id = tt.tag_id "
        "WHERE tt.task_id = t.id AND tt.user_id = t.user_id) g ON true"
    )


def shaped(sql: str, *extra: str) -> TextualSelect:
    """A statement built on `shape_select` (with its `extra` columns), its result columns named in order.

    Named columns let SQLAlchemy build the result's metadata once per statement and reuse it (a bare `text()` reads
    the cursor description and looks up a result processor for each of its 24 columns on every execution). Build
    these once, at import or in a cache: the compiled form is cached per statement text either way."""
    return text(sql).columns(*(column(name) for name in (*SHAPE_COLUMNS, *extra)))


@dataclass(frozen=True)
class TaskRow:
    """One `tasks` row as stored (aware datetimes), with its category and tags, for the service's decisions."""

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
    series_start_wall: datetime | None
    previous_task_id: int | None
    remind_before_minutes: int | None
    remind_at: datetime | None
    reminder_sent: bool
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    category: CategoryOut | None = None
    tags: list[TagOut] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, row: Any) -> TaskRow:
        category_id = row["category_id"]
        category = (
            CategoryOut(id=category_id, name=row["category_name"], color=row["category_color"])
            if category_id is not None and row["category_name"] is not None
            else None
        )
        tags = [
            TagOut(id=i, name=n, color=c)
            for i, n, c in zip(row["tag_ids"] or (), row["tag_names"] or (), row["tag_colors"] or (), strict=True)
        ]
        return cls(**{name: row[name] for name in _COLUMNS}, category=category, tags=tags)

    @property
    def tag_ids(self) -> list[int]:
        return [tag.id for tag in self.tags]

    def public(self) -> TaskOut:
        """The Task as the tools show it and the events carry it."""
        return TaskOut(**self.public_fields())

    def public_fields(self) -> dict[str, Any]:
        """The fields of `public()`, for a result shape that extends TaskOut (built once, not dumped and rebuilt)."""
        zone = resolve_zone(self.time_zone)
        return dict(
            id=self.id,
            title=self.title,
            description=self.description,
            # The table's CHECK constraints guarantee the literals.
            status=cast(Status, self.status),
            priority=cast(Priority, self.priority),
            due_date=format_in_zone(self.due_date, zone),
            time_zone=self.time_zone,
            category=self.category,
            tags=list(self.tags),
            recurrence_rule=self.recurrence_rule,
            recurrence=recurrence_preview(self),
            remind_at=format_in_zone(self.remind_at, zone),
            reminder_sent=self.reminder_sent,
            completed_at=format_in_zone(self.completed_at, zone),
            created_at=_iso(self.created_at, zone),
            updated_at=_iso(self.updated_at, zone),
        )


def task_not_found(task_id: int) -> NotFoundError:
    return NotFoundError(f"task {task_id} does not exist for this user — list_tasks shows the ids")


def expansion_start(row: TaskRow) -> datetime:
    """The DTSTART a recurring task's series is expanded from (its due date when it has no series start)."""
    assert row.due_date is not None
    if row.series_start is None:
        return row.due_date
    return recurrence.series_dtstart(row.series_start, row.series_start_wall, row.time_zone)


def recurrence_preview(row: TaskRow) -> RecurrenceOut | None:
    """The rule in English and the next due dates after this task's, in the task's zone."""
    if row.recurrence_rule is None or row.due_date is None:
        return None
    preview = _preview(row.recurrence_rule, expansion_start(row), row.due_date, row.time_zone)
    if preview is None:
        # A rule stored by an older version that this one no longer accepts: show the task, not an error.
        log.warning("stored recurrence rule no longer valid", extra={"task_id": row.id})
    return preview


# A pure function of its arguments, computed for the task before and after every change of a recurring task and for
# its `task.created`; cached so one call expands a rule once. RecurrenceOut is immutable in use (never mutated).
@functools.lru_cache(maxsize=1024)
def _preview(rule: str, series_start: datetime, due: datetime, time_zone: str) -> RecurrenceOut | None:
    zone = resolve_zone(time_zone)
    try:
        upcoming = recurrence.next_occurrences(rule, series_start, zone, due, limit=PREVIEW_OCCURRENCES)
        described = recurrence.describe_rule(rule)
    except InvalidRecurrenceRuleError:
        return None
    return RecurrenceOut(text=described, next_occurrences=[_iso(dt, zone) for dt in upcoming])


def _iso(dt: datetime, zone: Any) -> str:
    formatted = format_in_zone(dt, zone)
    assert formatted is not None
    return formatted


# --- reading ------------------------------------------------------------------------------------------------------

_FETCH: Final = shaped(shape_select("tasks") + " WHERE t.user_id = :user_id AND t.id = :task_id")
_LOCK: Final = shaped(shape_select("tasks") + " WHERE t.user_id = :user_id AND t.id = :task_id FOR UPDATE OF t")
_LOAD_MANY: Final = shaped(shape_select("tasks") + " WHERE t.user_id = :user_id AND t.id = ANY(:ids)")


async def fetch(conn: AsyncConnection, user_id: str, task_id: int, *, for_update: bool = False) -> TaskRow:
    """One of the user's tasks (locked for the transaction when `for_update`); NOT_FOUND, the same for a missing
    task and another user's, otherwise."""
    result = await conn.execute(_LOCK if for_update else _FETCH, {"user_id": user_id, "task_id": task_id})
    row = result.mappings().first()
    if row is None:
        raise task_not_found(task_id)
    return TaskRow.from_mapping(row)


async def load_tasks(conn: AsyncConnection, user_id: str, ids: Sequence[int]) -> list[TaskOut]:
    """The user's tasks with these ids in their public shape, in the order of `ids`; ids that are not the user's are
    skipped."""
    if not ids:
        return []
    rows = await conn.execute(_LOAD_MANY, {"user_id": user_id, "ids": list(ids)})
    by_id = {task.id: task for task in map(TaskRow.from_mapping, rows.mappings())}
    return [by_id[i].public() for i in dict.fromkeys(ids) if i in by_id]


async def series_clash(conn: AsyncConnection, task_id: int, due: datetime) -> int | None:
    """Another occurrence of the series anchored at `task_id` already due at `due`, if any."""
    c = _tasks.c
    clash = await conn.scalar(select(c.id).where(c.series_id == task_id, c.due_date == due, c.id != task_id))
    return None if clash is None else int(clash)


# --- writing ------------------------------------------------------------------------------------------------------

# The id is drawn first so that an anchored (recurring) task names itself as its series in the same INSERT; the tags
# are linked in the same statement and read back from its RETURNING (the outer SELECT cannot see rows the statement
# wrote).
_INSERT: Final = shaped(
    "WITH new AS ("
    "INSERT INTO tasks (id, user_id, title, description, priority, due_date, time_zone, category_id, "
    "recurrence_rule, series_id, series_start, series_start_wall, remind_before_minutes, remind_at, created_at, "
    "updated_at) "
    "SELECT n.id, :user_id, :title, CAST(:description AS text), :priority, CAST(:due AS timestamptz), :zone, "
    "CAST(:category_id AS bigint), CAST(:rule AS text), CASE WHEN CAST(:rule AS text) IS NOT NULL THEN n.id END, "
    "CASE WHEN CAST(:rule AS text) IS NOT NULL THEN CAST(:due AS timestamptz) END, "
    "CASE WHEN CAST(:rule AS text) IS NOT NULL THEN CAST(:due_wall AS timestamp) END, CAST(:lead AS integer), "
    "CAST(:remind_at AS timestamptz), CAST(:now AS timestamptz), CAST(:now AS timestamptz) "
    "FROM (SELECT nextval(pg_get_serial_sequence('tasks', 'id')) AS id) n RETURNING *"
    "), links AS ("
    "INSERT INTO task_tags (task_id, tag_id, user_id) "
    "SELECT new.id, tag_id, new.user_id FROM new, unnest(CAST(:tag_ids AS bigint[])) AS tag_id "
    "RETURNING task_id, tag_id, user_id"
    ") " + shape_select("new", links="links")
)


async def insert(
    conn: AsyncConnection,
    *,
    user_id: str,
    title: str,
    description: str | None,
    priority: str,
    due: datetime | None,
    due_wall: datetime | None,
    time_zone: str,
    category_id: int | None,
    rule: str | None,
    lead: int | None,
    remind_at: datetime | None,
    tag_ids: list[int],
    now: datetime,
) -> TaskRow:
    """A new task (a recurring one anchors its own series, `due_wall` being the naive wall time asked for as its
    due date, in `time_zone`), tagged, as stored."""
    result = await conn.execute(
        _INSERT,
        {
            "user_id": user_id,
            "title": title,
            "description": description,
            "priority": priority,
            "due": due,
            "due_wall": due_wall,
            "zone": time_zone,
            "category_id": category_id,
            "rule": rule,
            "lead": lead,
            "remind_at": remind_at,
            "tag_ids": tag_ids,
            "now": now,
        },
    )
    return TaskRow.from_mapping(result.mappings().one())


@functools.lru_cache(maxsize=256)
def _update_statement(names: tuple[str, ...]) -> TextualSelect:
    """The UPDATE of these columns (names from `_WRITABLE` only), built once per combination."""
    assignments = "".join(f"{name} = :{name}, " for name in names)
    return shaped(
        f"WITH changed AS (UPDATE tasks SET {assignments}updated_at = :now "
        "WHERE user_id = :user_id AND id = :task_id RETURNING *) " + shape_select("changed")
    )


async def update(conn: AsyncConnection, user_id: str, task_id: int, changes: dict[str, Any], now: datetime) -> TaskRow:
    """Write the changed columns of one task and bump `updated_at` (alone, when `changes` is empty); the row after."""
    unknown = set(changes) - _WRITABLE
    if unknown:
        raise ValueError(f"not writable task columns: {sorted(unknown)}")
    result = await conn.execute(
        _update_statement(tuple(changes)), {**changes, "now": now, "user_id": user_id, "task_id": task_id}
    )
    row = result.mappings().first()
    if row is None:
        raise task_not_found(task_id)
    return TaskRow.from_mapping(row)


_COMPLETE: Final = shaped(
    "WITH changed AS (UPDATE tasks SET status = 'completed', completed_at = :now, updated_at = :now "
    "WHERE user_id = :user_id AND id = :task_id AND status = 'pending' RETURNING *) " + shape_select("changed")
)


async def complete(conn: AsyncConnection, user_id: str, task_id: int, now: datetime) -> TaskRow | None:
    """Mark the task completed now if it is pending; the row as completed, or None (not pending, or not found)."""
    row = (await conn.execute(_COMPLETE, {"user_id": user_id, "task_id": task_id, "now": now})).mappings().first()
    return None if row is None else TaskRow.from_mapping(row)


# The outer SELECT reads the category and tags as they were before this statement (its snapshot), so the shape is
# the task as it was; the task_tags rows go with it (ON DELETE CASCADE).
_DELETE: Final = shaped(
    "WITH gone AS (DELETE FROM tasks WHERE user_id = :user_id AND id = :task_id RETURNING *) " + shape_select("gone")
)


async def delete(conn: AsyncConnection, user_id: str, task_id: int) -> TaskRow:
    """Delete one of the user's tasks; the task as it was (NOT_FOUND when there is none)."""
    row = (await conn.execute(_DELETE, {"user_id": user_id, "task_id": task_id})).mappings().first()
    if row is None:
        raise task_not_found(task_id)
    return TaskRow.from_mapping(row)


_TOUCH_MANY: Final = shaped(
    "WITH changed AS (UPDATE tasks SET updated_at = :now WHERE user_id = :user_id AND id = ANY(:ids) RETURNING *) "
    + shape_select("changed")
)


async def touch_many(conn: AsyncConnection, user_id: str, ids: list[int], now: datetime) -> list[TaskRow]:
    """Bump `updated_at` of the user's tasks with these ids; the rows after, in the order of `ids`."""
    if not ids:
        return []
    rows = await conn.execute(_TOUCH_MANY, {"user_id": user_id, "ids": ids, "now": now})
    by_id = {task.id: task for task in map(TaskRow.from_mapping, rows.mappings())}
    return [by_id[i] for i in ids if i in by_id]
