"""Categories: at most 50 per user, names unique ignoring case; deleting one leaves its tasks uncategorised."""

from __future__ import annotations

from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.labels import CATEGORY
from mcp_todo.schemas import CategoryCount, CategoryList, CategoryOut, DeletedCategory
from mcp_todo.service.context import Ctx
from mcp_todo.service.inputs import CATEGORY_NAME_MAX
from mcp_todo.service.labels import LabelRules, add_label, delete_label, list_labels, require_labels

MAX_CATEGORIES_PER_USER: Final = 50
RULES: Final = LabelRules(CATEGORY, CATEGORY_NAME_MAX, MAX_CATEGORIES_PER_USER)


async def require_category(conn: AsyncConnection, user_id: str, category_id: int) -> None:
    """NOT_FOUND unless the category is the user's (another user's reads exactly like a missing one)."""
    await require_labels(conn, RULES, user_id, [category_id])


async def add_category(ctx: Ctx, name: str, color: str | None = None) -> CategoryOut:
    new_id, name, color = await add_label(ctx, RULES, name, color)
    return CategoryOut(id=new_id, name=name, color=color)


async def list_categories(ctx: Ctx) -> CategoryList:
    categories = [CategoryCount.model_validate(row) for row in await list_labels(ctx, RULES)]
    return CategoryList(categories=categories, total=len(categories))


async def delete_category(ctx: Ctx, category_id: int) -> DeletedCategory:
    """Delete the category; each of its tasks becomes uncategorised and emits its own `task.updated`."""
    affected = await delete_label(ctx, RULES, category_id)
    return DeletedCategory(deleted_category_id=category_id, tasks_affected=affected)
