"""Tags: at most 100 per user (names unique ignoring case) and 10 per task; tagging is idempotent."""

from __future__ import annotations

from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.queries import fetch_task_row, load_task, load_tasks
from mcp_todo.domain.errors import ConflictError, LimitExceededError, NotFoundError
from mcp_todo.outbox import write_events
from mcp_todo.schemas import DeletedTag, TagCount, TagList, TagOut, TaskOut
from mcp_todo.service.changes import task_updated
from mcp_todo.service.context import Ctx, lock_user_scope, transaction
from mcp_todo.service.inputs import TAG_NAME_MAX, color_value, distinct_ids, entity_id, name_text

MAX_TAGS_PER_USER: Final = 100
MAX_TAGS_PER_TASK: Final = 10


def tag_not_found(tag_id: int) -> NotFoundError:
    return NotFoundError(f"tag {tag_id} does not exist for this user — list_tags shows the ids")


def too_many_tags_on_task(task_id: int | None = None) -> LimitExceededError:
    subject = f"task {task_id}" if task_id is not None else "a task"
    return LimitExceededError(
        f"{subject} can have at most {MAX_TAGS_PER_TASK} tags — remove_tag_from_task one first, or pick fewer"
    )


async def require_tags(conn: AsyncConnection, user_id: str, tag_ids: list[int]) -> list[int]:
    """The distinct ids, all the user's; NOT_FOUND names the first that is not (missing or another user's)."""
    wanted = distinct_ids(tag_ids, "tag")
    if not wanted:
        return []
    found: set[int] = set(
        (
            await conn.execute(
                text("SELECT id FROM tags WHERE user_id = :u AND id = ANY(:ids)"), {"u": user_id, "ids": wanted}
            )
        ).scalars()
    )
    for tag_id in wanted:
        if tag_id not in found:
            raise tag_not_found(tag_id)
    return wanted


async def add_tag(ctx: Ctx, name: str, color: str | None = None) -> TagOut:
    name = name_text(name, "name", TAG_NAME_MAX)
    color = color_value(color)
    async with transaction(ctx) as conn:
        await lock_user_scope(conn, "tags", ctx.user_id)
        count = await conn.scalar(text("SELECT count(*) FROM tags WHERE user_id = :u"), {"u": ctx.user_id})
        if (count or 0) >= MAX_TAGS_PER_USER:
            raise LimitExceededError(
                f"you already have {MAX_TAGS_PER_USER} tags, the most allowed — delete_tag one you no longer use, "
                "or reuse one from list_tags"
            )
        new_id = await conn.scalar(
            text(
                "INSERT INTO tags (user_id, name, color, created_at) VALUES (:u, :name, :color, :now) "
                "ON CONFLICT (user_id, lower(name)) DO NOTHING RETURNING id"
            ),
            {"u": ctx.user_id, "name": name, "color": color, "now": ctx.now},
        )
        if new_id is None:
            existing = await conn.scalar(
                text("SELECT id FROM tags WHERE user_id = :u AND lower(name) = lower(:name)"),
                {"u": ctx.user_id, "name": name},
            )
            raise ConflictError(
                f"a tag named {name!r} already exists (id {existing}; names ignore case) — use it, or pick another name"
            )
    return TagOut(id=int(new_id), name=name, color=color)


async def list_tags(ctx: Ctx) -> TagList:
    async with transaction(ctx) as conn:
        rows = await conn.execute(
            text(
                "SELECT g.id, g.name, g.color, count(tt.task_id) AS task_count FROM tags g "
                "LEFT JOIN task_tags tt ON tt.tag_id = g.id AND tt.user_id = g.user_id "
                "WHERE g.user_id = :u GROUP BY g.id ORDER BY lower(g.name), g.id"
            ),
            {"u": ctx.user_id},
        )
        tags = [TagCount(**row) for row in rows.mappings()]
    return TagList(tags=tags, total=len(tags))


async def delete_tag(ctx: Ctx, tag_id: int) -> DeletedTag:
    """Delete the tag; each task that carried it emits its own `task.updated` with its new tags."""
    async with transaction(ctx) as conn:
        locked = await conn.scalar(
            text("SELECT id FROM tags WHERE user_id = :u AND id = :id FOR UPDATE"),
            {"u": ctx.user_id, "id": entity_id(tag_id, "tag")},
        )
        if locked is None:
            raise tag_not_found(tag_id)
        task_ids: list[int] = list(
            (
                await conn.execute(
                    text(
                        "SELECT t.id FROM tasks t JOIN task_tags tt ON tt.task_id = t.id "
                        "WHERE tt.user_id = :u AND tt.tag_id = :id ORDER BY t.id FOR UPDATE OF t"
                    ),
                    {"u": ctx.user_id, "id": tag_id},
                )
            ).scalars()
        )
        before = await load_tasks(conn, ctx.user_id, task_ids)
        await conn.execute(
            text("UPDATE tasks SET updated_at = :now WHERE user_id = :u AND id = ANY(:ids)"),
            {"u": ctx.user_id, "ids": task_ids, "now": ctx.now},
        )
        # task_tags rows go with the tag (ON DELETE CASCADE).
        await conn.execute(text("DELETE FROM tags WHERE id = :id"), {"id": tag_id})
        after = await load_tasks(conn, ctx.user_id, task_ids)
        await write_events(
            conn, [e for old, new in zip(before, after, strict=True) for e in task_updated(ctx, old, new)]
        )
    return DeletedTag(deleted_tag_id=tag_id, tasks_affected=len(task_ids))


async def add_tag_to_task(ctx: Ctx, task_id: int, tag_id: int) -> TaskOut:
    """Tag the task; tagging it again changes nothing and emits nothing."""
    async with transaction(ctx) as conn:
        await fetch_task_row(conn, ctx.user_id, entity_id(task_id, "task"), for_update=True)
        await require_tags(conn, ctx.user_id, [tag_id])
        current: set[int] = set(
            (await conn.execute(text("SELECT tag_id FROM task_tags WHERE task_id = :t"), {"t": task_id})).scalars()
        )
        if tag_id in current:
            return await load_task(conn, ctx.user_id, task_id)
        if len(current) >= MAX_TAGS_PER_TASK:
            raise too_many_tags_on_task(task_id)
        before = await load_task(conn, ctx.user_id, task_id)
        await conn.execute(
            text("INSERT INTO task_tags (task_id, tag_id, user_id) VALUES (:t, :g, :u)"),
            {"t": task_id, "g": tag_id, "u": ctx.user_id},
        )
        return await _touch_and_emit(conn, ctx, before)


async def remove_tag_from_task(ctx: Ctx, task_id: int, tag_id: int) -> TaskOut:
    """Untag the task; removing a tag it does not carry changes nothing and emits nothing."""
    async with transaction(ctx) as conn:
        await fetch_task_row(conn, ctx.user_id, entity_id(task_id, "task"), for_update=True)
        await require_tags(conn, ctx.user_id, [tag_id])
        before = await load_task(conn, ctx.user_id, task_id)
        removed = await conn.execute(
            text("DELETE FROM task_tags WHERE task_id = :t AND tag_id = :g AND user_id = :u"),
            {"t": task_id, "g": tag_id, "u": ctx.user_id},
        )
        if removed.rowcount == 0:
            return before
        return await _touch_and_emit(conn, ctx, before)


async def _touch_and_emit(conn: AsyncConnection, ctx: Ctx, before: TaskOut) -> TaskOut:
    await conn.execute(
        text("UPDATE tasks SET updated_at = :now WHERE user_id = :u AND id = :id"),
        {"now": ctx.now, "u": ctx.user_id, "id": before.id},
    )
    after = await load_task(conn, ctx.user_id, before.id)
    await write_events(conn, task_updated(ctx, before, after))
    return after
