"""Reading task lists: filtered and sorted lists, overdue and upcoming tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.queries import load_tasks
from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.times import parse_user_time
from mcp_todo.schemas import TaskList, TaskPage
from mcp_todo.service.categories import require_category
from mcp_todo.service.context import Ctx, transaction
from mcp_todo.service.inputs import priority_value
from mcp_todo.service.tags import require_tags

MAX_LIMIT: Final = 100
MAX_OFFSET: Final = 1_000_000
MAX_DAYS: Final = 365

# Whitelisted ORDER BY keys; "tasks without a due date sort last" whichever the direction.
_SORT_KEYS: Final[dict[str, str]] = {
    "created_at": "t.created_at {dir}",
    "updated_at": "t.updated_at {dir}",
    "due_date": "t.due_date {dir} NULLS LAST",
    "priority": "t.priority_rank {dir}",
    "title": "lower(t.title) {dir}",
}


@dataclass
class TaskFilter:
    """A WHERE clause over `tasks t`, always scoped to one user, with its bound parameters."""

    user_id: str
    clauses: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clauses.append("t.user_id = :user_id")
        self.params["user_id"] = self.user_id

    def add(self, clause: str, **params: Any) -> None:
        self.clauses.append(clause)
        self.params.update(params)

    @property
    def where(self) -> str:
        return " AND ".join(self.clauses)


async def common_filters(
    conn: AsyncConnection,
    user_id: str,
    *,
    status: str | None,
    priority: str | None,
    category_id: int | None,
    tag_ids: list[int] | None,
) -> TaskFilter:
    """Filters shared by list_tasks and search_tasks; ids in them must be the user's (NOT_FOUND otherwise)."""
    where = TaskFilter(user_id)
    if status not in (None, "all"):
        if status not in ("pending", "completed"):
            raise ValidationError(f"status must be pending, completed or all (got {str(status)[:20]!r})")
        where.add("t.status = :status", status=status)
    if priority is not None:
        where.add("t.priority = :priority", priority=priority_value(priority))
    if category_id is not None:
        await require_category(conn, user_id, category_id)
        where.add("t.category_id = :category_id", category_id=category_id)
    tags = await require_tags(conn, user_id, tag_ids or [])
    if tags:
        where.add(
            "EXISTS (SELECT 1 FROM task_tags tt WHERE tt.task_id = t.id AND tt.user_id = :user_id "
            "AND tt.tag_id = ANY(:tag_ids))",
            tag_ids=tags,
        )
    return where


def page_bounds(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be 1 to {MAX_LIMIT} (got {limit})")
    if not 0 <= offset <= MAX_OFFSET:
        raise ValidationError(f"offset must be 0 to {MAX_OFFSET} (got {offset})")
    return limit, offset


async def page_of_ids(
    conn: AsyncConnection, where: TaskFilter, order_by: str, limit: int, offset: int
) -> tuple[list[int], int]:
    """The ids of one page in order, and the number of matching tasks."""
    params = {**where.params, "limit": limit, "offset": offset}
    ids: list[int] = list(
        (
            await conn.execute(
                text(f"SELECT t.id FROM tasks t WHERE {where.where} ORDER BY {order_by} LIMIT :limit OFFSET :offset"),
                params,
            )
        ).scalars()
    )
    if offset == 0 and len(ids) < limit:
        return ids, len(ids)
    total = await conn.scalar(text(f"SELECT count(*) FROM tasks t WHERE {where.where}"), where.params)
    return ids, int(total or 0)


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
) -> TaskList:
    """The user's tasks matching every filter given (tags: any of them), sorted, ties broken by id."""
    limit, offset = page_bounds(limit, offset)
    if sort_by not in _SORT_KEYS:
        raise ValidationError(f"sort_by must be one of {', '.join(_SORT_KEYS)} (got {sort_by[:20]!r})")
    if sort_order not in ("asc", "desc"):
        raise ValidationError(f"sort_order must be asc or desc (got {sort_order[:20]!r})")
    after = parse_user_time(due_after, ctx.time_zone, field="due_after") if due_after is not None else None
    before = parse_user_time(due_before, ctx.time_zone, field="due_before") if due_before is not None else None
    if after is not None and before is not None and after >= before:
        raise ValidationError("due_after must be earlier than due_before (due_after <= due < due_before)")
    direction = sort_order.upper()
    order_by = f"{_SORT_KEYS[sort_by].format(dir=direction)}, t.id {direction}"
    async with transaction(ctx) as conn:
        where = await common_filters(
            conn, ctx.user_id, status=status, priority=priority, category_id=category_id, tag_ids=tag_ids
        )
        if after is not None:
            where.add("t.due_date >= :due_after", due_after=after)
        if before is not None:
            where.add("t.due_date < :due_before", due_before=before)
        ids, total = await page_of_ids(conn, where, order_by, limit, offset)
        tasks = await load_tasks(conn, ctx.user_id, ids)
    return TaskList(tasks=tasks, total=total, limit=limit, offset=offset)


async def get_overdue_tasks(ctx: Ctx, *, limit: int = 50) -> TaskPage:
    """Pending tasks due before now, oldest first."""
    limit, _ = page_bounds(limit, 0)
    async with transaction(ctx) as conn:
        where = TaskFilter(ctx.user_id)
        where.add("t.status = 'pending' AND t.due_date < :now", now=ctx.now)
        ids, total = await page_of_ids(conn, where, "t.due_date ASC, t.id ASC", limit, 0)
        tasks = await load_tasks(conn, ctx.user_id, ids)
    return TaskPage(tasks=tasks, total=total)


async def get_upcoming_tasks(ctx: Ctx, *, days: int = 7, limit: int = 50) -> TaskPage:
    """Pending tasks due in [now, now + days x 24 h), soonest first."""
    limit, _ = page_bounds(limit, 0)
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError(f"days must be 1 to {MAX_DAYS} (got {days})")
    async with transaction(ctx) as conn:
        where = TaskFilter(ctx.user_id)
        where.add(
            "t.status = 'pending' AND t.due_date >= :now AND t.due_date < :until",
            now=ctx.now,
            until=ctx.now + timedelta(days=days),
        )
        ids, total = await page_of_ids(conn, where, "t.due_date ASC, t.id ASC", limit, 0)
        tasks = await load_tasks(conn, ctx.user_id, ids)
    return TaskPage(tasks=tasks, total=total)
