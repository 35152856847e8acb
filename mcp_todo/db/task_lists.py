"""Lists of tasks and full-text search: the WHERE clauses, sort keys and search statements over `tasks t`.

Search is over the stored weighted vector (title A, description B) with web-search syntax. Ranking: tasks whose title
matches come first, then by `ts_rank`, then newest.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.tasks import TaskRow, shape_select, shaped

_LIVE: Final = "t.deleted_at IS NULL"


@dataclass
class TaskFilter:
    """A WHERE clause over `tasks t`, always scoped to one user, with its bound parameters; out of the trash unless
    `in_trash()` says otherwise."""

    user_id: str
    clauses: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clauses.append("t.user_id = :user_id")
        self.clauses.append(_LIVE)
        self.params["user_id"] = self.user_id

    def in_trash(self) -> None:
        """The tasks in the trash (whatever their status) instead of those out of it."""
        self.clauses[self.clauses.index(_LIVE)] = "t.deleted_at IS NOT NULL"

    def add(self, clause: str, **params: Any) -> None:
        self.clauses.append(clause)
        self.params.update(params)

    @property
    def where(self) -> str:
        return " AND ".join(self.clauses)

    def with_status(self, status: str) -> None:
        self.add("t.status = :status", status=status)

    def with_priority(self, priority: str) -> None:
        self.add("t.priority = :priority", priority=priority)

    def with_parent(self, parent_id: int) -> None:
        self.add("t.parent_id = :parent_id", parent_id=parent_id)

    def with_category(self, category_id: int) -> None:
        self.add("t.category_id = :category_id", category_id=category_id)

    def with_any_tag(self, tag_ids: list[int]) -> None:
        self.add(
            "EXISTS (SELECT 1 FROM task_tags tt WHERE tt.task_id = t.id AND tt.user_id = :user_id "
            "AND tt.tag_id = ANY(:tag_ids))",
            tag_ids=tag_ids,
        )

    def due_from(self, start: datetime) -> None:
        self.add("t.due_date >= :due_after", due_after=start)

    def due_before(self, end: datetime) -> None:
        self.add("t.due_date < :due_before", due_before=end)

    def pending_today(self, day_start: datetime, day_end: datetime) -> None:
        """Pending and due before `day_end` (overdue or due today), or with a reminder in [day_start, day_end)."""
        self.add(
            "t.status = 'pending' AND (t.due_date < :day_end"
            " OR (t.remind_at >= :day_start AND t.remind_at < :day_end))",
            day_start=day_start,
            day_end=day_end,
        )

    def pending_due_between(self, start: datetime | None, end: datetime) -> None:
        """Pending and due in [start, end) (no lower bound when `start` is None)."""
        if start is None:
            self.add("t.status = 'pending' AND t.due_date < :until", until=end)
        else:
            self.add("t.status = 'pending' AND t.due_date >= :since AND t.due_date < :until", since=start, until=end)


# Whitelisted ORDER BY keys; "tasks without a due date sort last" whichever the direction.
SORT_KEYS: Final[dict[str, str]] = {
    "created_at": "t.created_at {dir}",
    "updated_at": "t.updated_at {dir}",
    "due_date": "t.due_date {dir} NULLS LAST",
    "priority": "t.priority_rank {dir}",
    "title": "lower(t.title) {dir}",
}
NEWEST_FIRST: Final = "t.created_at DESC, t.id DESC"
SOONEST_FIRST: Final = "t.due_date ASC, t.id ASC"


def sort_order(sort_by: str, direction: str) -> str:
    """An ORDER BY over `tasks t` from a whitelisted key (SORT_KEYS) and asc/desc, ties broken by id."""
    direction = direction.upper()
    return f"{SORT_KEYS[sort_by].format(dir=direction)}, t.id {direction}"


# A list's statement, its result columns named (`shaped`), built once per statement text: its filters and order come
# from a handful of combinations.
_statement: Final = functools.lru_cache(maxsize=256)(shaped)


async def count(conn: AsyncConnection, where: TaskFilter) -> int:
    return int(await conn.scalar(text(f"SELECT count(*) FROM tasks t WHERE {where.where}"), where.params) or 0)


async def page_of_tasks(
    conn: AsyncConnection, where: TaskFilter, order_by: str, limit: int, offset: int
) -> tuple[list[TaskRow], int]:
    """One page of tasks in order, and the number of matching tasks (counted only when the page does not tell)."""
    page = f"(SELECT t.* FROM tasks t WHERE {where.where} ORDER BY {order_by} LIMIT :limit OFFSET :offset)"
    rows = await conn.execute(
        _statement(shape_select(page) + f" ORDER BY {order_by}"), {**where.params, "limit": limit, "offset": offset}
    )
    tasks = [TaskRow.from_mapping(row) for row in rows.mappings()]
    if offset == 0 and len(tasks) < limit:
        return tasks, len(tasks)
    return tasks, await count(conn, where)


# English stemming drops stop words, so a query made only of them ("to be or not to be") falls back to the 'simple'
# configuration, which keeps every word; that path reads the user's rows without the GIN index, which is fine for such
# rare queries.
_ENGLISH: Final = {
    "match": "t.search_vector @@ websearch_to_tsquery('english', :q)",
    "title": "ts_filter(t.search_vector, '{a}') @@ websearch_to_tsquery('english', :q)",
    "rank": "ts_rank(t.search_vector, websearch_to_tsquery('english', :q))",
}
_SIMPLE_DOC: Final = "to_tsvector('simple', t.title || ' ' || coalesce(t.description, ''))"
_SIMPLE: Final = {
    "match": f"{_SIMPLE_DOC} @@ websearch_to_tsquery('simple', :q)",
    "title": "to_tsvector('simple', t.title) @@ websearch_to_tsquery('simple', :q)",
    "rank": f"ts_rank({_SIMPLE_DOC}, websearch_to_tsquery('simple', :q))",
}
_LEXEMES: Final = text(
    "SELECT numnode(websearch_to_tsquery('english', :q)) AS english, "
    "numnode(websearch_to_tsquery('simple', :q)) AS simple"
)


async def search_configuration(conn: AsyncConnection, words: str) -> dict[str, str] | None:
    """English when the query keeps a lexeme after stemming and stop words; else 'simple'; None when neither does."""
    row = (await conn.execute(_LEXEMES, {"q": words})).one()
    if row.english > 0:
        return _ENGLISH
    if row.simple > 0:
        return _SIMPLE
    return None


async def search_page(
    conn: AsyncConnection, where: TaskFilter, config: dict[str, str], words: str, limit: int, offset: int
) -> tuple[list[tuple[TaskRow, float]], int]:
    """One page of matches with their rank (title matches first, then rank, then newest), and the number of
    matches."""
    where.add(config["match"], q=words)
    order_by = "t.title_match DESC, t.rank DESC, t.id DESC"
    # Ranking already reads every match, so the window count costs nothing extra; a second count(*) query would read
    # them all again.
    page = (
        f"(SELECT t.*, ({config['title']}) AS title_match, {config['rank']} AS rank, count(*) OVER () AS total "
        f"FROM tasks t WHERE {where.where} ORDER BY ({config['title']}) DESC, rank DESC, t.id DESC "
        "LIMIT :limit OFFSET :offset)"
    )
    rows = (
        (
            await conn.execute(
                _statement(shape_select(page, extra=", t.rank, t.total") + f" ORDER BY {order_by}", "rank", "total"),
                {**where.params, "limit": limit, "offset": offset},
            )
        )
        .mappings()
        .all()
    )
    found = [(TaskRow.from_mapping(row), round(float(row["rank"]), 6)) for row in rows]
    if rows:
        return found, int(rows[0]["total"])
    if offset == 0:
        return found, 0
    return found, await count(conn, where)  # a page past the end carries no row to read the count from
