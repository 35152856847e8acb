"""Full-text search over the stored weighted vector (title A, description B) with web-search syntax.

Ranking: tasks whose title matches come first, then by `ts_rank`, then newest. English stemming drops stop words,
so a query made only of them ("to be or not to be") falls back to the 'simple' configuration, which keeps every
word; that path reads the user's rows without the GIN index, which is fine for such rare queries.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.queries import load_tasks
from mcp_todo.domain.errors import ValidationError
from mcp_todo.schemas import ScoredTask, SearchResult
from mcp_todo.service.context import Ctx, transaction
from mcp_todo.service.inputs import QUERY_MAX, storable_text
from mcp_todo.service.listing import common_filters, page_bounds, page_of_ids

_ENGLISH = {
    "match": "t.search_vector @@ websearch_to_tsquery('english', :q)",
    "title": "ts_filter(t.search_vector, '{a}') @@ websearch_to_tsquery('english', :q)",
    "rank": "ts_rank(t.search_vector, websearch_to_tsquery('english', :q))",
}
_SIMPLE_DOC = "to_tsvector('simple', t.title || ' ' || coalesce(t.description, ''))"
_SIMPLE = {
    "match": f"{_SIMPLE_DOC} @@ websearch_to_tsquery('simple', :q)",
    "title": "to_tsvector('simple', t.title) @@ websearch_to_tsquery('simple', :q)",
    "rank": f"ts_rank({_SIMPLE_DOC}, websearch_to_tsquery('simple', :q))",
}


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
) -> SearchResult:
    """Tasks matching the query and the filters, best first; an empty query lists them all, newest first."""
    limit, offset = page_bounds(limit, offset)
    words = storable_text(query, "query").strip()
    if len(words) > QUERY_MAX:
        raise ValidationError(f"query must be at most {QUERY_MAX} characters (got {len(words)})")
    async with transaction(ctx) as conn:
        where = await common_filters(
            conn, ctx.user_id, status=status, priority=priority, category_id=category_id, tag_ids=tag_ids
        )
        scores: dict[int, float] = {}
        if not words:
            ids, total = await page_of_ids(conn, where, "t.created_at DESC, t.id DESC", limit, offset)
        else:
            config = await _configuration(conn, words)
            if config is None:
                # Punctuation only: nothing any task can match.
                return SearchResult(tasks=[], total=0, query=query)
            where.add(config["match"], q=words)
            # Ranking already reads every match, so the window count costs nothing extra; a second
            # count(*) query would read them all again.
            rows = (
                await conn.execute(
                    text(
                        f"SELECT t.id, {config['rank']} AS rank, count(*) OVER () AS total FROM tasks t "
                        f"WHERE {where.where} "
                        f"ORDER BY ({config['title']}) DESC, rank DESC, t.id DESC LIMIT :limit OFFSET :offset"
                    ),
                    {**where.params, "limit": limit, "offset": offset},
                )
            ).all()
            scores = {int(row.id): round(float(row.rank), 6) for row in rows}
            ids = list(scores)
            if rows:
                total = int(rows[0].total)
            elif offset == 0:
                total = 0
            else:  # a page past the end carries no row to read the count from
                total = int(await conn.scalar(text(f"SELECT count(*) FROM tasks t WHERE {where.where}"), where.params))
        tasks = await load_tasks(conn, ctx.user_id, ids)
    return SearchResult(
        tasks=[ScoredTask(**task.model_dump(), relevance_score=scores.get(task.id, 0.0)) for task in tasks],
        total=total,
        query=query,
    )


async def _configuration(conn: AsyncConnection, words: str) -> dict[str, str] | None:
    """English when the query keeps a lexeme after stemming and stop words; else 'simple'; None when neither does."""
    row = (
        await conn.execute(
            text(
                "SELECT numnode(websearch_to_tsquery('english', :q)) AS english, "
                "numnode(websearch_to_tsquery('simple', :q)) AS simple"
            ),
            {"q": words},
        )
    ).one()
    if row.english > 0:
        return _ENGLISH
    if row.simple > 0:
        return _SIMPLE
    return None
