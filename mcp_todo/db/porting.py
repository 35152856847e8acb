"""The statements of import and export that the tools do not share: the export's read of a user's tasks with their
labels, the users an export can name, and the import's up-front read of a user's tasks and labels and its writes of
tasks (each with the id it drew first, so a recurring one can anchor its own series) and their tag links.

An import's other statements are the tools' own (`tasks.fetch`, `tasks.update`, the label statements)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import RowMapping, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.fragments import tags_of
from mcp_todo.db.labels import LabelKind
from mcp_todo.db.models import Task, TaskTag, table_of

_tasks = table_of(Task)
_task_tags = table_of(TaskTag)

# --- export -------------------------------------------------------------------------------------------------------

_EXPORT: Final = text(
    "SELECT t.*, c.name AS category_name, c.color AS category_color, p.uid AS parent_uid, g.tag_names, g.tag_colors, "
    "dep.depends_on FROM tasks t "
    "LEFT JOIN categories c ON c.id = t.category_id AND c.user_id = t.user_id "
    "LEFT JOIN tasks p ON p.id = t.parent_id AND p.user_id = t.user_id AND p.deleted_at IS NULL "
    f"{tags_of('t.id', 't.user_id')} "
    # The uids of the tasks it waits on (out of the trash), in id order.
    "LEFT JOIN LATERAL (SELECT array_agg(b.uid ORDER BY b.id) AS depends_on FROM task_dependencies d "
    "JOIN tasks b ON b.user_id = d.user_id AND b.id = d.blocker_id AND b.deleted_at IS NULL "
    "WHERE d.user_id = t.user_id AND d.task_id = t.id) dep ON true "
    "WHERE t.user_id = :user_id AND t.deleted_at IS NULL ORDER BY t.id"
)


async def export_rows(conn: AsyncConnection, user_id: str) -> Sequence[RowMapping]:
    """The user's tasks outside the trash, in id order (every column), each with `category_name`/`category_color`,
    its parent's `parent_uid` (None when the parent is in the trash), its tags' `tag_names`/`tag_colors` in name
    order and the uids of the tasks it waits on (`depends_on`)."""
    return (await conn.execute(_EXPORT, {"user_id": user_id})).mappings().all()


# Users have no table of their own: a user is whoever owns a task, a label, settings or a token.
_OWNERS: Final = ("tasks", "categories", "tags", "user_settings", "api_tokens")
_KNOWN_USERS: Final = text(" UNION ".join(f"SELECT user_id FROM {table}" for table in _OWNERS) + " ORDER BY 1")
_USER_KNOWN: Final = text(
    "SELECT " + " OR ".join(f"EXISTS (SELECT 1 FROM {table} WHERE user_id = :user_id)" for table in _OWNERS)
)


async def known_users(conn: AsyncConnection) -> list[str]:
    """Every user that owns anything, in order."""
    rows = (await conn.execute(_KNOWN_USERS)).all()
    return [str(row[0]) for row in rows]


async def user_known(conn: AsyncConnection, user_id: str) -> bool:
    """Whether the user owns anything."""
    return bool(await conn.scalar(_USER_KNOWN, {"user_id": user_id}))


# --- import -------------------------------------------------------------------------------------------------------

_KNOWN_TASKS: Final = text(
    "SELECT t.*, (SELECT array_agg(tt.tag_id) FROM task_tags tt WHERE tt.user_id = t.user_id AND tt.task_id = t.id) "
    "AS tag_ids "
    "FROM tasks t WHERE t.user_id = :user_id"
)


async def known_tasks(conn: AsyncConnection, user_id: str) -> Sequence[RowMapping]:
    """Every task of the user's (in the trash too), every column, with the ids of its tags (`tag_ids`, unordered;
    None for none)."""
    return (await conn.execute(_KNOWN_TASKS, {"user_id": user_id})).mappings().all()


async def label_names(conn: AsyncConnection, kind: LabelKind, user_id: str) -> list[tuple[int, str]]:
    """(id, name) of each of the user's labels of this kind."""
    c = kind.table.c
    rows = await conn.execute(select(c.id, c.name).where(c.user_id == user_id))
    return [(int(row.id), str(row.name)) for row in rows]


async def next_task_id(conn: AsyncConnection) -> int:
    """A new task id, drawn from the table's sequence."""
    return int(await conn.scalar(select(func.nextval(func.pg_get_serial_sequence("tasks", "id")))) or 0)


async def insert_task(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Insert one task with exactly these column values (its id among them)."""
    await conn.execute(_tasks.insert().values(**values))


async def link_tags(conn: AsyncConnection, user_id: str, task_id: int, tag_ids: Sequence[int]) -> None:
    """Tag the task with each of these (the user's) tags."""
    if tag_ids:
        await conn.execute(
            _task_tags.insert(), [{"task_id": task_id, "tag_id": t, "user_id": user_id} for t in tag_ids]
        )


async def unlink_tags(conn: AsyncConnection, user_id: str, task_id: int) -> None:
    """Take every tag off the user's task."""
    links = _task_tags.c
    await conn.execute(_task_tags.delete().where(links.user_id == user_id, links.task_id == task_id))
