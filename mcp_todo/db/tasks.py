"""The `tasks` table: every statement that reads or writes it, returning rows (`TaskRow`), never a public shape
(`mcp_todo.service.shapes` makes those).

A statement that touches a task returns the row together with its category and its tags in name order — one round
trip, not a write followed by reads — through `shape_select`, which wraps the row source (the table, or a
data-modifying CTE's RETURNING) in the category join and a lateral aggregate of the tags.

The columns are read from the table's definition (`db/models.py`): a column added there (and by a migration) is read
by every statement here and carried by every `TaskRow` without another list to edit.

Used by the services and by the workers' handlers, so nothing here depends on the MCP server.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import column, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.selectable import TextualSelect

from mcp_todo.db import dependencies as deps
from mcp_todo.db.fragments import tags_of
from mcp_todo.db.models import Task, table_of
from mcp_todo.domain import recurrence
from mcp_todo.domain.errors import NotFoundError

PREVIEW_OCCURRENCES: Final = 5

_tasks = table_of(Task)
# Every stored column of the table, in its order; the generated ones (priority_rank, search_vector) are PostgreSQL's
# for sorting and searching, never read back.
TASK_COLUMNS: Final = tuple(column.name for column in _tasks.columns if column.computed is None)
_COLUMNS: Final = TASK_COLUMNS
_WRITABLE: Final = frozenset(_COLUMNS) - {"id", "user_id", "created_at", "updated_at", "deleted_at", "uid"}
# What `shape_select` returns, in its order.
SHAPE_COLUMNS: Final = (
    *_COLUMNS,
    "category_name",
    "category_color",
    "tag_ids",
    "tag_names",
    "tag_colors",
    "open_subtasks",
    "total_subtasks",
    *deps.SHAPE_COLUMNS,
)


def shape_select(source: str, *, links: str = "task_tags", extra: str = "") -> str:
    """SELECT the task rows of `source` (aliased t) with their category and tags (and the `extra` columns of
    `source`, e.g. ", t.rank"); `links` is the relation of (task_id, tag_id, user_id) rows to read the tags from (a
    CTE's RETURNING sees rows its own statement wrote). The subtask counts are those of the subtasks on the same side
    of the trash as the task (a trashed parent counts the subtasks trashed with it), as they were before the
    statement."""
    columns = ", ".join(f"t.{name}" for name in _COLUMNS)
    return (
        f"SELECT {columns}, c.name AS category_name, c.color AS category_color, "
        f"g.tag_ids, g.tag_names, g.tag_colors, sc.open_subtasks, sc.total_subtasks{deps.SHAPE_SELECT}{extra} "
        f"FROM {source} t "
        "LEFT JOIN categories c ON c.id = t.category_id AND c.user_id = t.user_id "
        f"{tags_of('t.id', 't.user_id', links=links)} "
        "LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE s.status = 'pending') AS open_subtasks, "
        "count(*) AS total_subtasks FROM tasks s WHERE s.parent_id = t.id AND s.user_id = t.user_id "
        "AND (s.deleted_at IS NULL) = (t.deleted_at IS NULL)) sc ON true" + deps.SHAPE_JOIN
    )


def shaped(sql: str, *extra: str) -> TextualSelect:
    """A statement built on `shape_select` (with its `extra` columns), its result columns named in order.

    Named columns let SQLAlchemy build the result's metadata once per statement and reuse it (a bare `text()` reads
    the cursor description and looks up a result processor for each of its 24 columns on every execution). Build
    these once, at import or in a cache: the compiled form is cached per statement text either way."""
    return text(sql).columns(*(column(name) for name in (*SHAPE_COLUMNS, *extra)))


@dataclass(frozen=True, slots=True)
class Label:
    """A task's category or one of its tags, as stored."""

    id: int
    name: str
    color: str | None = None


_NO_MORE: Final[Mapping[str, Any]] = MappingProxyType({})


@dataclass(frozen=True)
class TaskRow:
    """One `tasks` row as stored (aware datetimes), with its category and tags, for the service's decisions.

    The columns the code decides on are typed fields; a stored column not named here (one just added to the table)
    is carried in `more`, so `column()` reads every column of the table and a result shows it without a list to
    edit."""

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
    parent_id: int | None = None
    recurrence_from: str = "schedule"
    deleted_at: datetime | None = None
    uid: str | None = None
    category: Label | None = None
    tags: tuple[Label, ...] = ()
    open_subtasks: int = 0
    total_subtasks: int = 0
    more: Mapping[str, Any] = field(default_factory=lambda: _NO_MORE)
    blocked_by: list[int] = field(default_factory=list)  # open blockers, in id order
    blocks: int = 0  # open tasks waiting on this one

    @classmethod
    def from_mapping(cls, row: Any) -> TaskRow:
        category_id = row["category_id"]
        category = (
            Label(category_id, row["category_name"], row["category_color"])
            if category_id is not None and row["category_name"] is not None
            else None
        )
        tags = tuple(
            Label(i, n, c)
            for i, n, c in zip(row["tag_ids"] or (), row["tag_names"] or (), row["tag_colors"] or (), strict=True)
        )
        more = {name: row[name] for name in _UNNAMED} if _UNNAMED else _NO_MORE
        return cls(
            **{name: row[name] for name in _NAMED},
            category=category,
            tags=tags,
            open_subtasks=int(row["open_subtasks"] or 0),
            total_subtasks=int(row["total_subtasks"] or 0),
            more=more,
            blocked_by=list(row["blocked_by"] or ()),
            blocks=int(row["blocks"] or 0),
        )

    def column(self, name: str) -> Any:
        """The value of one of `TASK_COLUMNS`."""
        return self.more[name] if name in self.more else getattr(self, name)

    @property
    def from_completion(self) -> bool:
        return self.recurrence_from == "completion"

    @property
    def tag_ids(self) -> list[int]:
        return [tag.id for tag in self.tags]


_FIELDS: Final = frozenset(f.name for f in fields(TaskRow))
_NAMED: Final = tuple(name for name in _COLUMNS if name in _FIELDS)
_UNNAMED: Final = tuple(name for name in _COLUMNS if name not in _FIELDS)


def task_not_found(task_id: int) -> NotFoundError:
    return NotFoundError(f"task {task_id} does not exist for this user — list_tasks shows the ids")


def task_in_trash(task_id: int) -> NotFoundError:
    return NotFoundError(
        f"task {task_id} is in the trash — restore it with update_task(task_id={task_id}, status=pending) first"
    )


def expansion_start(row: TaskRow) -> datetime:
    """The DTSTART a recurring task's series is expanded from (its due date when it has no series start)."""
    assert row.due_date is not None
    if row.series_start is None:
        return row.due_date
    return recurrence.series_dtstart(row.series_start, row.series_start_wall, row.time_zone)


# --- reading ------------------------------------------------------------------------------------------------------

_FETCH: Final = shaped(shape_select("tasks") + " WHERE t.user_id = :user_id AND t.id = :task_id")
_LOCK: Final = shaped(shape_select("tasks") + " WHERE t.user_id = :user_id AND t.id = :task_id FOR UPDATE OF t")
_SHARE: Final = shaped(shape_select("tasks") + " WHERE t.user_id = :user_id AND t.id = :task_id FOR SHARE OF t")
_LOAD_MANY: Final = shaped(shape_select("tasks") + " WHERE t.user_id = :user_id AND t.id = ANY(:ids)")


async def fetch(
    conn: AsyncConnection,
    user_id: str,
    task_id: int,
    *,
    for_update: bool = False,
    for_share: bool = False,
    trashed: bool = False,
) -> TaskRow:
    """One of the user's tasks (locked for the transaction when `for_update`, share-locked when `for_share`: as it
    is once concurrent writers of the row have committed, and kept so until this transaction ends); NOT_FOUND, the
    same for a missing task and another user's, otherwise. A task in the trash is NOT_FOUND too (saying how to
    restore it) unless `trashed`, when the caller decides (its `deleted_at` is set)."""
    statement = _LOCK if for_update else _SHARE if for_share else _FETCH
    result = await conn.execute(statement, {"user_id": user_id, "task_id": task_id})
    row = result.mappings().first()
    if row is None:
        raise task_not_found(task_id)
    task = TaskRow.from_mapping(row)
    if task.deleted_at is not None and not trashed:
        raise task_in_trash(task_id)
    return task


# The lock order every writer of the subtask tree follows, so two writers cannot deadlock: first the top-level tasks
# it changes or depends on, in ascending id order (`lock_top_level`), then subtasks of those only
# (`lock_subtasks`, or a trash/complete/restore statement on a locked parent). A parent's row lock guards its set of
# subtasks: adding or moving a subtask under a parent share-locks the parent (which stays live and top-level until the
# subtask commits); trashing, completing or restoring a parent, or making it a subtask, locks it for update before its
# subtasks are read, so it sees every subtask committed before it. A call that locks a single task and nothing else
# (an edit of a subtask) needs no more: it waits for nothing while it holds that lock.
#
# The sets to lock are chosen from rows read unlocked, which a concurrent call may change before they are locked; the
# statements lock only rows still in the expected place (PostgreSQL re-checks the WHERE on the newest version of a row
# it waited for), and a caller that did not get every row it expected rolls back and starts again, so no call waits
# while holding a row it did not mean to lock first.
_LOCK_TOP_LEVEL: Final = {
    mode: text(f"SELECT id FROM tasks WHERE user_id = :user_id AND id = :task_id AND parent_id IS NULL FOR {mode}")
    for mode in ("NO KEY UPDATE", "SHARE")
}
_LOCK_SUBTASK: Final = text(
    "SELECT id FROM tasks WHERE user_id = :user_id AND id = :task_id AND parent_id = :parent_id FOR NO KEY UPDATE"
)
_LOCK_ONE: Final = text("SELECT id FROM tasks WHERE user_id = :user_id AND id = :task_id FOR NO KEY UPDATE")


async def lock_top_level(
    conn: AsyncConnection, user_id: str, *, writes: Iterable[int] = (), reads: Iterable[int] = ()
) -> bool:
    """Lock the user's tasks in ascending id order, each only while it is top-level: FOR NO KEY UPDATE those in
    `writes` (changed by this transaction), FOR SHARE the others in `reads` (checked by it). False, as soon as one is
    not (a subtask now, or not the user's): the caller rolls back and starts again.

    One statement per row: a row that changed while the statement waited for it is locked in its new version even
    when that no longer matches, and a statement over several rows would go on waiting for the next ones while
    holding it."""
    changed = set(writes)
    for task_id in sorted(changed | set(reads)):
        mode = "NO KEY UPDATE" if task_id in changed else "SHARE"
        found = await conn.scalar(_LOCK_TOP_LEVEL[mode], {"user_id": user_id, "task_id": task_id})
        if found is None:
            return False
    return True


async def lock_subtasks(conn: AsyncConnection, user_id: str, parents: dict[int, int]) -> bool:
    """Lock FOR NO KEY UPDATE, in ascending id order, the subtasks `parents` maps to their parents (which the caller
    has locked), each only while it is still under that parent; False as soon as one is not."""
    for task_id in sorted(parents):
        found = await conn.scalar(
            _LOCK_SUBTASK, {"user_id": user_id, "task_id": task_id, "parent_id": parents[task_id]}
        )
        if found is None:
            return False
    return True


async def lock_one(conn: AsyncConnection, user_id: str, task_id: int) -> None:
    """Lock one task FOR NO KEY UPDATE (a call that locks nothing else first: see `lock_top_level`)."""
    await conn.execute(_LOCK_ONE, {"user_id": user_id, "task_id": task_id})


async def parents_of(conn: AsyncConnection, user_id: str, ids: Sequence[int]) -> dict[int, int | None]:
    """The parent (None: top-level) of each of the user's tasks with these ids, unlocked; ids not the user's are
    absent."""
    c = _tasks.c
    rows = await conn.execute(select(c.id, c.parent_id).where(c.user_id == user_id, c.id.in_(list(ids))))
    return {int(row.id): row.parent_id for row in rows}


async def has_subtasks(conn: AsyncConnection, user_id: str, task_id: int) -> bool:
    """Whether the task is the parent of any task (in the trash or not)."""
    c = _tasks.c
    found = await conn.scalar(select(c.id).where(c.user_id == user_id, c.parent_id == task_id).limit(1))
    return found is not None


async def load_tasks(conn: AsyncConnection, user_id: str, ids: Sequence[int]) -> list[TaskRow]:
    """The user's tasks with these ids, in the order of `ids`; ids that are not the user's are skipped."""
    if not ids:
        return []
    rows = await conn.execute(_LOAD_MANY, {"user_id": user_id, "ids": list(ids)})
    by_id = {task.id: task for task in map(TaskRow.from_mapping, rows.mappings())}
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]


async def series_clash(conn: AsyncConnection, user_id: str, task_id: int, due: datetime) -> int | None:
    """Another occurrence of the user's series anchored at `task_id` already due at `due`, if any."""
    c = _tasks.c
    clash = await conn.scalar(
        select(c.id).where(c.user_id == user_id, c.series_id == task_id, c.due_date == due, c.id != task_id)
    )
    return None if clash is None else int(clash)


# --- writing ------------------------------------------------------------------------------------------------------

# The id is drawn first so that an anchored (recurring) task names itself as its series in the same INSERT; the tags
# are linked in the same statement and read back from its RETURNING (the outer SELECT cannot see rows the statement
# wrote).
_INSERT: Final = shaped(
    "WITH new AS ("
    "INSERT INTO tasks (id, user_id, title, description, priority, due_date, time_zone, category_id, "
    "recurrence_rule, series_id, series_start, series_start_wall, remind_before_minutes, remind_at, created_at, "
    "updated_at, parent_id, recurrence_from) "
    "SELECT n.id, :user_id, :title, CAST(:description AS text), :priority, CAST(:due AS timestamptz), :zone, "
    "CAST(:category_id AS bigint), CAST(:rule AS text), CASE WHEN CAST(:rule AS text) IS NOT NULL THEN n.id END, "
    "CASE WHEN CAST(:rule AS text) IS NOT NULL THEN CAST(:due AS timestamptz) END, "
    "CASE WHEN CAST(:rule AS text) IS NOT NULL THEN CAST(:due_wall AS timestamp) END, CAST(:lead AS integer), "
    "CAST(:remind_at AS timestamptz), CAST(:now AS timestamptz), CAST(:now AS timestamptz), "
    "CAST(:parent_id AS bigint), :recurrence_from "
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
    parent_id: int | None = None,
    recurrence_from: str = "schedule",
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
            "parent_id": parent_id,
            "recurrence_from": recurrence_from,
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


# A pending parent's open subtasks are completed with it, in the same statement; a completed (or trashed) parent
# changes nothing, and neither do its subtasks.
_COMPLETE: Final = shaped(
    "WITH changed AS (UPDATE tasks SET status = 'completed', completed_at = :now, updated_at = :now "
    "WHERE user_id = :user_id AND status = 'pending' AND deleted_at IS NULL AND (id = :task_id OR "
    "(parent_id = :task_id AND EXISTS (SELECT 1 FROM tasks p WHERE p.id = :task_id AND p.user_id = :user_id "
    "AND p.status = 'pending' AND p.deleted_at IS NULL))) RETURNING *) " + shape_select("changed")
)


async def complete(conn: AsyncConnection, user_id: str, task_id: int, now: datetime) -> list[TaskRow]:
    """Mark the task completed now if it is pending, with its open subtasks; the rows as completed, subtasks first
    (in id order) and the task last, or none (not pending, in the trash, or not found)."""
    result = await conn.execute(_COMPLETE, {"user_id": user_id, "task_id": task_id, "now": now})
    rows = [TaskRow.from_mapping(row) for row in result.mappings()]
    task = next((row for row in rows if row.id == task_id), None)
    if task is None:
        return []
    subtasks = sorted((row for row in rows if row.id != task_id), key=lambda row: row.id)
    # The counts were read before the statement completed the subtasks.
    return [*subtasks, replace(task, open_subtasks=0)]


# The trash: the task and its subtasks (those not in the trash already) get one `deleted_at`, which is how a restore
# finds the subtasks that went with it. The outer SELECT reads the subtask counts as they were (before this
# statement), so the task's counts are those of its live subtasks, now trashed with it.
_TRASH: Final = shaped(
    "WITH gone AS (UPDATE tasks SET deleted_at = :now, updated_at = :now "
    "WHERE user_id = :user_id AND deleted_at IS NULL AND (id = :task_id OR parent_id = :task_id) RETURNING *) "
    + shape_select("gone")
)
_RESTORE: Final = shaped(
    "WITH back AS (UPDATE tasks SET deleted_at = NULL, updated_at = :now "
    "WHERE user_id = :user_id AND deleted_at = :deleted_at AND (id = :task_id OR parent_id = :task_id) "
    "RETURNING *) " + shape_select("back")
)


def _task_first(rows: list[TaskRow], task_id: int) -> list[TaskRow]:
    return sorted(rows, key=lambda row: (row.id != task_id, row.id))


async def trash(conn: AsyncConnection, user_id: str, task_id: int, now: datetime) -> list[TaskRow]:
    """Move the task and its subtasks to the trash; the rows as trashed, the task first, then its subtasks in id
    order; none when the task is in the trash already or is not the user's."""
    rows = await conn.execute(_TRASH, {"user_id": user_id, "task_id": task_id, "now": now})
    found = [TaskRow.from_mapping(row) for row in rows.mappings()]
    return _task_first(found, task_id) if any(row.id == task_id for row in found) else []


async def restore(conn: AsyncConnection, user_id: str, task: TaskRow, now: datetime) -> list[TaskRow]:
    """Take the trashed task out of the trash with the subtasks trashed with it; the rows after, the task first."""
    rows = await conn.execute(
        _RESTORE, {"user_id": user_id, "task_id": task.id, "deleted_at": task.deleted_at, "now": now}
    )
    found = _task_first([TaskRow.from_mapping(row) for row in rows.mappings()], task.id)
    subtasks = found[1:]
    # The counts were read before the statement, when the subtasks were still in the trash (and a trashed parent has
    # no subtask out of it).
    restored = replace(
        found[0],
        open_subtasks=sum(1 for row in subtasks if row.status == "pending"),
        total_subtasks=len(subtasks),
    )
    return [restored, *subtasks]


# Rows trashed before the cutoff, in batches; SKIP LOCKED and the DELETE's re-check of each row make concurrent purges
# (several replicas) delete, and report, each row exactly once. Subtasks trashed with their parent have its
# `deleted_at`, so they go in the same statement, each named in its RETURNING. Only rows in the trash are deleted: a
# parent with a subtask out of the trash (or trashed after the cutoff) waits until that subtask goes too, so no live
# task is ever removed with its parent (the foreign key refuses it, should one slip through).
_PURGE: Final = shaped(
    "WITH doomed AS (SELECT t.user_id, t.id FROM tasks t WHERE t.deleted_at < :cutoff AND NOT EXISTS (SELECT 1 "
    "FROM tasks s WHERE s.user_id = t.user_id AND s.parent_id = t.id "
    "AND (s.deleted_at IS NULL OR s.deleted_at >= :cutoff)) "
    "ORDER BY t.deleted_at, t.id LIMIT :batch FOR UPDATE OF t SKIP LOCKED), "
    "gone AS (DELETE FROM tasks WHERE deleted_at < :cutoff AND ((user_id, id) IN (SELECT user_id, id FROM doomed) "
    "OR (user_id, parent_id) IN (SELECT user_id, id FROM doomed)) RETURNING *) " + shape_select("gone")
)


async def purge(conn: AsyncConnection, cutoff: datetime, batch: int) -> list[TaskRow]:
    """Delete for good up to about `batch` tasks (of every user) trashed before `cutoff`; the rows as they were."""
    rows = await conn.execute(_PURGE, {"cutoff": cutoff, "batch": batch})
    return sorted(map(TaskRow.from_mapping, rows.mappings()), key=lambda row: row.id)


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
