"""Categories: at most 50 per user, names unique ignoring case; deleting one leaves its tasks uncategorised."""

from __future__ import annotations

from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.queries import load_tasks
from mcp_todo.domain.errors import ConflictError, LimitExceededError, NotFoundError
from mcp_todo.outbox import write_events
from mcp_todo.schemas import CategoryCount, CategoryList, CategoryOut, DeletedCategory
from mcp_todo.service.changes import task_updated
from mcp_todo.service.context import Ctx, lock_user_scope, transaction
from mcp_todo.service.inputs import CATEGORY_NAME_MAX, color_value, entity_id, name_text

MAX_CATEGORIES_PER_USER: Final = 50


def category_not_found(category_id: int) -> NotFoundError:
    return NotFoundError(f"category {category_id} does not exist for this user — list_categories shows the ids")


async def require_category(conn: AsyncConnection, user_id: str, category_id: int) -> None:
    """NOT_FOUND unless the category is the user's (another user's reads exactly like a missing one)."""
    entity_id(category_id, "category")
    found = await conn.scalar(
        text("SELECT 1 FROM categories WHERE user_id = :user_id AND id = :id"), {"user_id": user_id, "id": category_id}
    )
    if found is None:
        raise category_not_found(category_id)


async def add_category(ctx: Ctx, name: str, color: str | None = None) -> CategoryOut:
    name = name_text(name, "name", CATEGORY_NAME_MAX)
    color = color_value(color)
    async with transaction(ctx) as conn:
        await lock_user_scope(conn, "categories", ctx.user_id)
        count = await conn.scalar(text("SELECT count(*) FROM categories WHERE user_id = :u"), {"u": ctx.user_id})
        if (count or 0) >= MAX_CATEGORIES_PER_USER:
            raise LimitExceededError(
                f"you already have {MAX_CATEGORIES_PER_USER} categories, the most allowed — "
                "delete_category one you no longer use, or reuse one from list_categories"
            )
        new_id = await conn.scalar(
            text(
                "INSERT INTO categories (user_id, name, color, created_at) VALUES (:u, :name, :color, :now) "
                "ON CONFLICT (user_id, lower(name)) DO NOTHING RETURNING id"
            ),
            {"u": ctx.user_id, "name": name, "color": color, "now": ctx.now},
        )
        if new_id is None:
            existing = await conn.scalar(
                text("SELECT id FROM categories WHERE user_id = :u AND lower(name) = lower(:name)"),
                {"u": ctx.user_id, "name": name},
            )
            raise ConflictError(
                f"a category named {name!r} already exists (id {existing}; names ignore case) — use it, or pick "
                "another name"
            )
    return CategoryOut(id=int(new_id), name=name, color=color)


async def list_categories(ctx: Ctx) -> CategoryList:
    async with transaction(ctx) as conn:
        rows = await conn.execute(
            text(
                "SELECT c.id, c.name, c.color, count(t.id) AS task_count FROM categories c "
                "LEFT JOIN tasks t ON t.category_id = c.id AND t.user_id = c.user_id "
                "WHERE c.user_id = :u GROUP BY c.id ORDER BY lower(c.name), c.id"
            ),
            {"u": ctx.user_id},
        )
        categories = [CategoryCount(**row) for row in rows.mappings()]
    return CategoryList(categories=categories, total=len(categories))


async def delete_category(ctx: Ctx, category_id: int) -> DeletedCategory:
    """Delete the category; each of its tasks becomes uncategorised and emits its own `task.updated`."""
    async with transaction(ctx) as conn:
        locked = await conn.scalar(
            text("SELECT id FROM categories WHERE user_id = :u AND id = :id FOR UPDATE"),
            {"u": ctx.user_id, "id": entity_id(category_id, "category")},
        )
        if locked is None:
            raise category_not_found(category_id)
        task_ids: list[int] = list(
            (
                await conn.execute(
                    text("SELECT id FROM tasks WHERE user_id = :u AND category_id = :id ORDER BY id FOR UPDATE"),
                    {"u": ctx.user_id, "id": category_id},
                )
            ).scalars()
        )
        before = await load_tasks(conn, ctx.user_id, task_ids)
        await conn.execute(
            text("UPDATE tasks SET category_id = NULL, updated_at = :now WHERE user_id = :u AND category_id = :id"),
            {"u": ctx.user_id, "id": category_id, "now": ctx.now},
        )
        await conn.execute(text("DELETE FROM categories WHERE id = :id"), {"id": category_id})
        after = await load_tasks(conn, ctx.user_id, task_ids)
        await write_events(
            conn, [e for old, new in zip(before, after, strict=True) for e in task_updated(ctx, old, new)]
        )
    return DeletedCategory(deleted_category_id=category_id, tasks_affected=len(task_ids))
