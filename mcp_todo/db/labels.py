"""Categories and tags, the two kinds of label a task carries: the same statements over `categories` or `tags`.

A task has at most one category (`tasks.category_id`, set to NULL when the category goes) and any number of tags
(`task_tags` rows, which go with the tag): `LabelKind` holds the two places the kinds differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import BigInteger, Table, delete, func, insert, literal, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.models import Category, Tag, TaskTag, table_of
from mcp_todo.db.tasks import TaskRow, shape_select


@dataclass(frozen=True)
class LabelKind:
    noun: str  # "category", as messages name one
    plural: str  # "categories", as messages and tool names say it
    table: Table
    # Counts the tasks of each label `g` (LEFT JOINed, counted by `task_count`), those in the trash left out.
    count_join: str
    count_column: str
    # Locks, in id order, the tasks that carry label :id (the user's, `t` aliased), for their before-and-after shapes.
    tasks_carrying: str
    # A CTE that takes label :id off the user's tasks in the statement that deletes it ("": its link rows go with
    # it, ON DELETE CASCADE). The foreign key's check runs at the end of that statement, after the CTE.
    detach: str


CATEGORY: Final = LabelKind(
    noun="category",
    plural="categories",
    table=table_of(Category),
    count_join="LEFT JOIN tasks t ON t.category_id = g.id AND t.user_id = g.user_id AND t.deleted_at IS NULL",
    count_column="t.id",
    tasks_carrying="tasks WHERE user_id = :user_id AND category_id = :id ORDER BY id FOR UPDATE",
    # The foreign key cannot SET NULL: it carries user_id, which that would null too.
    detach="WITH detached AS (UPDATE tasks SET category_id = NULL WHERE user_id = :user_id AND category_id = :id) ",
)
TAG: Final = LabelKind(
    noun="tag",
    plural="tags",
    table=table_of(Tag),
    count_join=(
        "LEFT JOIN (task_tags tt JOIN tasks t "
        "ON t.user_id = tt.user_id AND t.id = tt.task_id AND t.deleted_at IS NULL) "
        "ON tt.tag_id = g.id AND tt.user_id = g.user_id"
    ),
    count_column="tt.task_id",
    tasks_carrying=(
        "tasks WHERE user_id = :user_id AND id IN (SELECT task_id FROM task_tags WHERE user_id = :user_id "
        "AND tag_id = :id) ORDER BY id FOR UPDATE"
    ),
    detach="",
)
_task_tags = table_of(TaskTag)


async def lock_user_scope(conn: AsyncConnection, kind: LabelKind, user_id: str) -> None:
    """Serialise the user's calls that check the per-user limit of `kind` with the insert that follows."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"mcp-todo:{kind.plural}:{user_id}"}
    )


async def count(conn: AsyncConnection, kind: LabelKind, user_id: str) -> int:
    c = kind.table.c
    return int(await conn.scalar(select(func.count()).select_from(kind.table).where(c.user_id == user_id)) or 0)


async def insert_label(
    conn: AsyncConnection, kind: LabelKind, user_id: str, name: str, color: str | None, now: datetime
) -> int | None:
    """The new label's id, or None when the user has one of that name already (names ignore case)."""
    statement = (
        pg_insert(kind.table)
        .values(user_id=user_id, name=name, color=color, created_at=now)
        .on_conflict_do_nothing(index_elements=[kind.table.c.user_id, func.lower(kind.table.c.name)])
        .returning(kind.table.c.id)
    )
    new_id = await conn.scalar(statement)
    return None if new_id is None else int(new_id)


async def id_by_name(conn: AsyncConnection, kind: LabelKind, user_id: str, name: str) -> int | None:
    c = kind.table.c
    found = await conn.scalar(select(c.id).where(c.user_id == user_id, func.lower(c.name) == func.lower(name)))
    return None if found is None else int(found)


async def owned_ids(conn: AsyncConnection, kind: LabelKind, user_id: str, ids: list[int]) -> set[int]:
    """Those of `ids` that are the user's labels of this kind."""
    c = kind.table.c
    found = await conn.execute(select(c.id).where(c.user_id == user_id, c.id.in_(ids)))
    owned: list[Any] = list(found.scalars())
    return {int(label_id) for label_id in owned}


async def with_task_counts(conn: AsyncConnection, kind: LabelKind, user_id: str) -> list[dict[str, Any]]:
    """The user's labels of this kind with how many tasks carry each, by name (ignoring case), then id."""
    rows = await conn.execute(
        text(
            f"SELECT g.id, g.name, g.color, count({kind.count_column}) AS task_count FROM {kind.table.name} g "
            f"{kind.count_join} WHERE g.user_id = :user_id GROUP BY g.user_id, g.id ORDER BY lower(g.name), g.id"
        ),
        {"user_id": user_id},
    )
    return [dict(row) for row in rows.mappings()]


async def lock_label(conn: AsyncConnection, kind: LabelKind, user_id: str, label_id: int) -> bool:
    """Lock the user's label for this transaction; False when there is none."""
    c = kind.table.c
    return await conn.scalar(select(c.id).where(c.user_id == user_id, c.id == label_id).with_for_update()) is not None


async def lock_tasks_carrying(conn: AsyncConnection, kind: LabelKind, user_id: str, label_id: int) -> list[TaskRow]:
    """The user's tasks that carry the label, locked, in id order, as they are now."""
    rows = await conn.execute(
        text(f"WITH carrying AS (SELECT * FROM {kind.tasks_carrying}) " + shape_select("carrying") + " ORDER BY t.id"),
        {"user_id": user_id, "id": label_id},
    )
    return [TaskRow.from_mapping(row) for row in rows.mappings()]


async def delete_label(conn: AsyncConnection, kind: LabelKind, user_id: str, label_id: int) -> None:
    """Delete the user's label; its tasks (those in the trash too) lose it with it."""
    statement = f"{kind.detach}DELETE FROM {kind.table.name} WHERE user_id = :user_id AND id = :id"
    await conn.execute(text(statement), {"user_id": user_id, "id": label_id})


# --- tags on a task -----------------------------------------------------------------------------------------------


async def tag_task(conn: AsyncConnection, user_id: str, task_id: int, tag_id: int) -> bool:
    """Tag the task with the user's tag; False when the tag is not the user's (or does not exist)."""
    tags = TAG.table.c
    owned = select(literal(task_id, BigInteger), tags.id, tags.user_id).where(
        tags.user_id == user_id, tags.id == tag_id
    )
    result = await conn.execute(insert(_task_tags).from_select(["task_id", "tag_id", "user_id"], owned))
    return bool(result.rowcount)


async def untag_task(conn: AsyncConnection, user_id: str, task_id: int, tag_id: int) -> bool:
    """Remove the tag from the task; False when it did not carry it."""
    links = _task_tags.c
    result = await conn.execute(
        delete(_task_tags).where(links.task_id == task_id, links.tag_id == tag_id, links.user_id == user_id)
    )
    return bool(result.rowcount)
