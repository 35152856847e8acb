"""Reading task lists: filtered and sorted lists, overdue and upcoming tasks."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.task_lists import SOONEST_FIRST, SORT_KEYS, TaskFilter, page_of_tasks
from mcp_todo.db.task_lists import sort_order as sort_order_of
from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.times import parse_user_time
from mcp_todo.schemas import TaskList, TaskPage
from mcp_todo.service import dependencies
from mcp_todo.service.categories import require_category
from mcp_todo.service.context import Ctx, transaction
from mcp_todo.service.inputs import entity_id, priority_value
from mcp_todo.service.shapes import Shaped, lean_task
from mcp_todo.service.tags import require_tags

MAX_LIMIT: Final = 100
MAX_OFFSET: Final = 1_000_000
MAX_DAYS: Final = 365


async def common_filters(
    conn: AsyncConnection,
    user_id: str,
    *,
    status: str | None,
    priority: str | None,
    category_id: int | None,
    tag_ids: list[int] | None,
    parent_id: int | None = None,
) -> TaskFilter:
    """Filters shared by list_tasks and search_tasks; ids in them must be the user's (NOT_FOUND otherwise).
    status "deleted" is the trash (tasks of any status in it); every other one leaves the trash out."""
    where = TaskFilter(user_id)
    if status == "deleted":
        where.in_trash()
    elif status not in (None, "all"):
        if status not in ("pending", "completed"):
            raise ValidationError(f"status must be pending, completed, all or deleted (got {str(status)[:20]!r})")
        where.with_status(status)
    if parent_id is not None:
        # The parent may be in the trash when the trash is listed (its subtasks went with it).
        await tasks_db.fetch(conn, user_id, entity_id(parent_id, "task"), trashed=status == "deleted")
        where.with_parent(parent_id)
    if priority is not None:
        where.with_priority(priority_value(priority))
    if category_id is not None:
        await require_category(conn, user_id, category_id)
        where.with_category(category_id)
    tags = await require_tags(conn, user_id, tag_ids or [])
    if tags:
        where.with_any_tag(tags)
    return where


def page_bounds(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be 1 to {MAX_LIMIT} (got {limit})")
    if not 0 <= offset <= MAX_OFFSET:
        raise ValidationError(f"offset must be 0 to {MAX_OFFSET} (got {offset})")
    return limit, offset


async def list_tasks(
    ctx: Ctx,
    *,
    status: str = "all",
    priority: str | None = None,
    category_id: int | None = None,
    tag_ids: list[int] | None = None,
    due_after: str | None = None,
    due_before: str | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
    limit: int = 50,
    offset: int = 0,
    parent_id: int | None = None,
    ready: bool | None = None,
) -> Shaped:
    """The user's tasks matching every filter given (tags: any of them), sorted, ties broken by id: a `TaskList`.
    `ready`: only the open tasks without (True) or with (False) an open blocker; sort_by "next": the open tasks, most
    urgent first, each with its `why` (`dependencies.ranked_page`)."""
    limit, offset = page_bounds(limit, offset)
    ranked = sort_by == dependencies.NEXT
    if ranked:
        status = dependencies.ranked_status(status)
    elif sort_by not in SORT_KEYS:
        raise ValidationError(f"sort_by must be one of {', '.join(SORT_KEYS)}, next (got {sort_by[:20]!r})")
    if sort_order not in ("asc", "desc"):
        raise ValidationError(f"sort_order must be asc or desc (got {sort_order[:20]!r})")
    after = parse_user_time(due_after, ctx.time_zone, field="due_after") if due_after is not None else None
    before = parse_user_time(due_before, ctx.time_zone, field="due_before") if due_before is not None else None
    if after is not None and before is not None and after >= before:
        raise ValidationError("due_after must be earlier than due_before (due_after <= due < due_before)")
    order_by = "" if ranked else sort_order_of(sort_by, sort_order)
    async with transaction(ctx) as conn:
        where = await common_filters(
            conn,
            ctx.user_id,
            status=status,
            priority=priority,
            category_id=category_id,
            tag_ids=tag_ids,
            parent_id=parent_id,
        )
        if after is not None:
            where.due_from(after)
        if before is not None:
            where.due_before(before)
        if ready is not None:
            dependencies.only_ready(where, ready)
        if ranked:
            tasks, total = await dependencies.ranked_page(conn, ctx, where, limit, offset)
        else:
            rows, total = await page_of_tasks(conn, where, order_by, limit, offset)
            tasks = [lean_task(row, ctx.time_zone) for row in rows]
    content = {"tasks": tasks, "total": total, "limit": limit}
    if offset:
        content["offset"] = offset
    return Shaped(TaskList, content)


async def get_overdue_tasks(ctx: Ctx, *, limit: int = 50) -> Shaped:
    """Pending tasks due before now, oldest first: a `TaskPage`."""
    limit, _ = page_bounds(limit, 0)
    async with transaction(ctx) as conn:
        where = TaskFilter(ctx.user_id)
        where.pending_due_between(None, ctx.now)
        rows, total = await page_of_tasks(conn, where, SOONEST_FIRST, limit, 0)
    return Shaped(TaskPage, {"tasks": [lean_task(row, ctx.time_zone) for row in rows], "total": total})


async def get_upcoming_tasks(ctx: Ctx, *, days: int = 7, limit: int = 50) -> Shaped:
    """Pending tasks due in [now, now + days x 24 h), soonest first: a `TaskPage`."""
    limit, _ = page_bounds(limit, 0)
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError(f"days must be 1 to {MAX_DAYS} (got {days})")
    async with transaction(ctx) as conn:
        where = TaskFilter(ctx.user_id)
        where.pending_due_between(ctx.now, ctx.now + timedelta(days=days))
        rows, total = await page_of_tasks(conn, where, SOONEST_FIRST, limit, 0)
    return Shaped(TaskPage, {"tasks": [lean_task(row, ctx.time_zone) for row in rows], "total": total})
