"""Full-text search over the user's tasks (the statements are in `mcp_todo.db.task_lists`)."""

from __future__ import annotations

from typing import Any

from mcp_todo.db.task_lists import NEWEST_FIRST, page_of_tasks, search_configuration, search_page
from mcp_todo.db.tasks import TaskRow
from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.search_query import websearch_query
from mcp_todo.schemas import SearchResult
from mcp_todo.service.context import Ctx, transaction
from mcp_todo.service.inputs import QUERY_MAX, storable_text
from mcp_todo.service.listing import common_filters, page_bounds
from mcp_todo.service.shapes import Shaped, lean_task


async def search_tasks(
    ctx: Ctx,
    query: str,
    *,
    status: str = "all",
    priority: str | None = None,
    category_id: int | None = None,
    tag_ids: list[int] | None = None,
    limit: int = 20,
    offset: int = 0,
    parent_id: int | None = None,
) -> Shaped:
    """Tasks matching the query and the filters, best first; an empty query lists them all, newest first: a
    `SearchResult`."""
    limit, offset = page_bounds(limit, offset)
    words = storable_text(query, "query").strip()
    if len(words) > QUERY_MAX:
        raise ValidationError(f"query must be at most {QUERY_MAX} characters (got {len(words)})")
    words = websearch_query(words)
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
        if not words:
            rows, total = await page_of_tasks(conn, where, NEWEST_FIRST, limit, offset)
            found = [(row, 0.0) for row in rows]
        else:
            config = await search_configuration(conn, words)
            if config is None:
                # Punctuation only: nothing any task can match.
                return Shaped(SearchResult, {"total": 0, "query": query})
            found, total = await search_page(conn, where, config, words, limit, offset)
    return Shaped(
        SearchResult,
        {"tasks": [_scored(row, score, ctx.time_zone) for row, score in found], "total": total, "query": query},
    )


def _scored(row: TaskRow, score: float, user_zone: str) -> dict[str, Any]:
    """A `ScoredTask`: the task's lean form and how well it matched."""
    task = lean_task(row, user_zone)
    task["relevance_score"] = round(score, 4)
    return task
