"""The `task_dependencies` table: every statement about which task waits on which.

An edge `(user_id, task_id, blocker_id)` says task_id waits on blocker_id. A blocker holds its dependents back while
it is open (pending and out of the trash): completing it or trashing it lets them through, and reopening or restoring
it holds them again, with no write to the edges. What a task shows of them (`blocked_by`, its open blockers; `blocks`,
how many open tasks wait on it) is read with the task, by the lateral join `SHAPE_JOIN` in `tasks.shape_select`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# An open task: one that holds its dependents back, or waits.
_OPEN: Final = "{a}.status = 'pending' AND {a}.deleted_at IS NULL"

# The columns `SHAPE_JOIN` adds to a shaped task row (alias t): its open blockers in id order (null: none), and how
# many open tasks wait on it (0 for a task that is not open itself: it holds nothing back).
SHAPE_COLUMNS: Final = ("blocked_by", "blocks")
SHAPE_SELECT: Final = ", dep.blocked_by, dep.blocks"
SHAPE_JOIN: Final = (
    " LEFT JOIN LATERAL (SELECT (SELECT array_agg(d.blocker_id ORDER BY d.blocker_id) FROM task_dependencies d "
    "JOIN tasks b ON b.user_id = d.user_id AND b.id = d.blocker_id "
    f"WHERE d.user_id = t.user_id AND d.task_id = t.id AND {_OPEN.format(a='b')}) AS blocked_by, "
    "(SELECT count(*) FROM task_dependencies d JOIN tasks w ON w.user_id = d.user_id AND w.id = d.task_id "
    f"WHERE d.user_id = t.user_id AND d.blocker_id = t.id AND {_OPEN.format(a='w')} "
    f"AND {_OPEN.format(a='t')}) AS blocks) dep ON true"
)

# A WHERE clause over `tasks t`: the task has an open blocker.
HAS_OPEN_BLOCKER: Final = (
    "EXISTS (SELECT 1 FROM task_dependencies d JOIN tasks b ON b.user_id = d.user_id AND b.id = d.blocker_id "
    f"WHERE d.user_id = t.user_id AND d.task_id = t.id AND {_OPEN.format(a='b')})"
)

# Dependency writes of one user run one at a time: the cycle check reads the edges as last committed, so two calls
# that each add one half of a cycle (#1 waits on #2, #2 on #1) must not check at the same time. A transaction-level
# advisory lock per user, taken before any row lock, so it cannot join a cycle of row-lock waits.
_LOCK: Final = text("SELECT pg_advisory_xact_lock(hashtextextended('mcp-todo:dependencies:' || :user_id, 0))")


async def lock_user(conn: AsyncConnection, user_id: str) -> None:
    """Serialise this transaction's dependency writes with the user's others (take it before any row lock)."""
    await conn.execute(_LOCK, {"user_id": user_id})


# Each asked id that is the user's: whether it is in the trash, and the series' current occurrence for a completed
# occurrence of a recurring task (the end of its chain of successors out of the trash; the task itself otherwise).
_RESOLVE: Final = text(
    "WITH RECURSIVE chain AS ("
    "SELECT t.id AS asked, t.id, 0 AS depth FROM tasks t WHERE t.user_id = :user_id AND t.id = ANY(:ids) "
    "UNION ALL "
    "SELECT c.asked, s.id, c.depth + 1 FROM chain c "
    "JOIN tasks p ON p.user_id = :user_id AND p.id = c.id AND p.status = 'completed' "
    "JOIN tasks s ON s.user_id = :user_id AND s.previous_task_id = p.id AND s.deleted_at IS NULL"
    ") SELECT DISTINCT ON (c.asked) c.asked, c.id AS current, a.deleted_at IS NOT NULL AS trashed "
    "FROM chain c JOIN tasks a ON a.user_id = :user_id AND a.id = c.asked ORDER BY c.asked, c.depth DESC"
)


async def resolve(conn: AsyncConnection, user_id: str, ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
    """`{asked id: (current occurrence id, in the trash)}` for the ids that are the user's tasks."""
    rows = await conn.execute(_RESOLVE, {"user_id": user_id, "ids": list(ids)})
    return {int(row.asked): (int(row.current), bool(row.trashed)) for row in rows}


# The edges reachable from the given tasks by following "waits on", whatever the state of the tasks on the way (a
# completed or trashed task can be reopened or restored: a cycle through it would hold again).
_REACHABLE_EDGES: Final = text(
    "WITH RECURSIVE reach(id) AS (SELECT unnest(CAST(:ids AS bigint[])) UNION "
    "SELECT d.blocker_id FROM reach r JOIN task_dependencies d ON d.user_id = :user_id AND d.task_id = r.id) "
    "SELECT d.task_id, d.blocker_id FROM task_dependencies d "
    "WHERE d.user_id = :user_id AND d.task_id IN (SELECT id FROM reach)"
)


async def reachable_edges(conn: AsyncConnection, user_id: str, ids: Sequence[int]) -> list[tuple[int, int]]:
    """The (task, blocker) edges of the user reachable from `ids` by following blockers."""
    rows = await conn.execute(_REACHABLE_EDGES, {"user_id": user_id, "ids": list(ids)})
    return [(int(row.task_id), int(row.blocker_id)) for row in rows]


_BLOCKERS_OF: Final = text(
    "SELECT blocker_id FROM task_dependencies WHERE user_id = :user_id AND task_id = :task_id ORDER BY blocker_id"
)
_CLEAR: Final = text("DELETE FROM task_dependencies WHERE user_id = :user_id AND task_id = :task_id")
_ADD: Final = text(
    "INSERT INTO task_dependencies (user_id, task_id, blocker_id, created_at) "
    "SELECT :user_id, :task_id, b, :now FROM unnest(CAST(:blockers AS bigint[])) AS b ON CONFLICT DO NOTHING"
)


async def blockers_of(conn: AsyncConnection, user_id: str, task_id: int) -> list[int]:
    """Every task the task waits on (open or not), in id order."""
    return [int(b) for b in (await conn.scalars(_BLOCKERS_OF, {"user_id": user_id, "task_id": task_id}))]


async def replace(conn: AsyncConnection, user_id: str, task_id: int, blockers: Sequence[int], now: datetime) -> None:
    """The task now waits on exactly `blockers` (checked by the caller)."""
    await conn.execute(_CLEAR, {"user_id": user_id, "task_id": task_id})
    if blockers:
        await conn.execute(_ADD, {"user_id": user_id, "task_id": task_id, "blockers": list(blockers), "now": now})


# The recurrer's new occurrences keep what their predecessors waited on, each blocker read as its series' current
# occurrence (a blocker that is a completed occurrence with a successor: the newest one), never the new task itself.
_CARRY: Final = text(
    "WITH RECURSIVE pairs AS (SELECT * FROM unnest(CAST(:new_ids AS bigint[]), CAST(:previous_ids AS bigint[]), "
    "CAST(:user_ids AS text[])) AS k(new_id, previous_id, user_id)), "
    "edges AS (SELECT p.user_id, p.new_id, d.blocker_id FROM pairs p "
    "JOIN task_dependencies d ON d.user_id = p.user_id AND d.task_id = p.previous_id), "
    "chain AS (SELECT e.user_id, e.new_id, e.blocker_id AS asked, e.blocker_id AS id, 0 AS depth FROM edges e "
    "UNION ALL SELECT c.user_id, c.new_id, c.asked, s.id, c.depth + 1 FROM chain c "
    "JOIN tasks p ON p.user_id = c.user_id AND p.id = c.id AND p.status = 'completed' "
    "JOIN tasks s ON s.user_id = c.user_id AND s.previous_task_id = p.id AND s.deleted_at IS NULL), "
    "current AS (SELECT DISTINCT ON (user_id, new_id, asked) user_id, new_id, id FROM chain "
    "ORDER BY user_id, new_id, asked, depth DESC) "
    "INSERT INTO task_dependencies (user_id, task_id, blocker_id, created_at) "
    "SELECT user_id, new_id, id, now() FROM current WHERE id <> new_id ON CONFLICT DO NOTHING"
)


async def carry_to_successors(
    conn: AsyncConnection, new_ids: Sequence[int], previous_ids: Sequence[int], user_ids: Sequence[str]
) -> None:
    """Give each new occurrence the blockers of the occurrence it follows (of its user: the recurrer's batch holds
    several users)."""
    if new_ids:
        keys = {"new_ids": list(new_ids), "previous_ids": list(previous_ids), "user_ids": list(user_ids)}
        await conn.execute(_CARRY, keys)


_OPEN_BLOCKERS: Final = text(
    "SELECT d.task_id, array_agg(d.blocker_id ORDER BY d.blocker_id) AS blockers FROM task_dependencies d "
    "JOIN unnest(CAST(:ids AS bigint[]), CAST(:user_ids AS text[])) AS k(id, user_id) "
    "ON d.user_id = k.user_id AND d.task_id = k.id "
    "JOIN tasks b ON b.user_id = d.user_id AND b.id = d.blocker_id "
    f"WHERE {_OPEN.format(a='b')} GROUP BY d.task_id"
)


async def open_blockers(
    conn: AsyncConnection, task_ids: Sequence[int], user_ids: Sequence[str]
) -> dict[int, list[int]]:
    """The open blockers of each (task id, user id) pair's task that has any."""
    rows = await conn.execute(_OPEN_BLOCKERS, {"ids": list(task_ids), "user_ids": list(user_ids)})
    return {int(row.task_id): [int(b) for b in row.blockers] for row in rows}


_RANKS: Final = {"urgent": 4, "high": 3, "medium": 2, "low": 1}  # as models.PRIORITY_RANK stores them


def urgency_sql(weights: Any, alias: str) -> str:
    """A task's own urgency (`mcp_todo.domain.urgency.own_urgency`) as an SQL expression over `alias`, with the
    `ranking_params` bound. The weights are numbers from the domain's table, written in as literals (never user
    input). It runs for every open task of the user: the due date and creation time are compared with bound instants
    first, so only tasks inside the due window, or younger than the age cap, turn a time into seconds."""
    a = alias
    # The stored priority_rank (an integer) compares faster than the priority's text.
    priority = " ".join(f"WHEN {_RANKS[name]} THEN {float(points)!r}" for name, points in weights.priority.items())
    per_second = (1.0 - weights.due_floor) / ((weights.due_window_days + weights.due_full_after_days) * 86400.0)
    due = (
        f"CASE WHEN {a}.due_date IS NULL THEN 0.0 WHEN {a}.due_date <= :due_full_at THEN 1.0 "
        f"WHEN {a}.due_date >= :due_floor_at THEN {weights.due_floor!r} "
        f"ELSE {weights.due_floor!r} + (CAST(:due_floor_epoch AS float8) - date_part('epoch', {a}.due_date)) "
        f"* {per_second!r} END"
    )
    age = (
        f"CASE WHEN {a}.created_at <= :age_full_at THEN 1.0 ELSE greatest(0.0, (CAST(:now_epoch AS float8) - "
        f"date_part('epoch', {a}.created_at)) / {weights.age_full_days * 86400.0!r}) END"
    )
    return f"(CASE {a}.priority_rank {priority} ELSE 0.0 END + {weights.due!r} * ({due}) + {weights.age!r} * ({age}))"


def ranking_params(weights: Any, now: datetime) -> dict[str, Any]:
    """The instants `urgency_sql` compares with, for `now`."""
    floor_at = now + timedelta(days=weights.due_window_days)
    return {
        "now_epoch": now.timestamp(),
        "due_full_at": now - timedelta(days=weights.due_full_after_days),
        "due_floor_at": floor_at,
        "due_floor_epoch": floor_at.timestamp(),
        "age_full_at": now - timedelta(days=weights.age_full_days),
    }


def ranked_source(where: str, weights: Any) -> str:
    """A row source for `tasks.shape_select`: one page of the open tasks matching `where` (over `tasks t`, :user_id
    and :now_epoch bound) in "next" order — those without an open blocker first, then by urgency, due date (none
    last) and id — with each task's `urgency`, `is_blocked`, `waiting` (open tasks waiting on it) and `top_waiting`
    (the own urgency of the most urgent of them). :limit and :offset page it.

    The user's open tasks are read once, a few columns each (`base`), the edges are joined to that in memory, and only
    the page's rows are read whole."""
    own = urgency_sql(weights, "t")
    return (
        f"(WITH base AS MATERIALIZED (SELECT t.id, t.due_date, {own} AS own, ({where}) AS listed FROM tasks t "
        f"WHERE t.user_id = :user_id AND {_OPEN.format(a='t')}), "
        "waits AS (SELECT d.blocker_id AS id, count(*) AS blocks, max(w.own) AS top_waiting "
        "FROM task_dependencies d JOIN base w ON w.id = d.task_id WHERE d.user_id = :user_id GROUP BY d.blocker_id), "
        "held AS (SELECT DISTINCT d.task_id AS id FROM task_dependencies d JOIN base b ON b.id = d.blocker_id "
        "WHERE d.user_id = :user_id), "
        "scored AS (SELECT t.id, t.due_date, (h.id IS NOT NULL) AS is_blocked, coalesce(wt.blocks, 0) AS waiting, "
        f"wt.top_waiting, t.own + CASE WHEN wt.blocks > 0 THEN {weights.blocking!r} + {weights.inherit!r} * "
        f"greatest(wt.top_waiting, 0.0) ELSE 0.0 END + CASE WHEN h.id IS NOT NULL THEN {weights.blocked!r} ELSE 0.0 "
        "END AS urgency FROM base t LEFT JOIN held h ON h.id = t.id LEFT JOIN waits wt ON wt.id = t.id "
        "WHERE t.listed), "
        f"page AS (SELECT * FROM scored t ORDER BY {RANKED_ORDER} LIMIT :limit OFFSET :offset) "
        "SELECT t.*, p.is_blocked, p.waiting, p.top_waiting, p.urgency FROM page p "
        "JOIN tasks t ON t.user_id = :user_id AND t.id = p.id)"
    )


RANKED_ORDER: Final = "t.is_blocked, t.urgency DESC, t.due_date ASC NULLS LAST, t.id ASC"
RANKED_EXTRA: Final = ", t.is_blocked, t.waiting, t.top_waiting, t.urgency"
RANKED_COLUMNS: Final = ("is_blocked", "waiting", "top_waiting", "urgency")


def ranked_statement(shaped_page: str) -> Any:
    """The shaped page in its order (the shaping joins do not keep the page's)."""
    return text(shaped_page + f" ORDER BY {RANKED_ORDER}")


async def ranked_rows(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> list[Any]:
    return list((await conn.execute(ranked_statement(sql), params)).mappings())
