"""Dependencies between tasks (`blocked_by`) and the "next" ranking.

Rules: at most `MAX_BLOCKERS` blockers, each one of the user's tasks out of the trash (another user's id is NOT_FOUND,
as everywhere), never the task itself, and never closing a cycle, directly or through any chain (CONFLICT naming it:
`#12 → #15 → #12`). A parent is not a blocker: subtasks and dependencies are separate.

Concurrency: every dependency write of a user takes the user's advisory lock first (`deps.lock_user`), then checks for
a cycle on the edges as last committed, so two calls that would each add half of a cycle run one after the other and
the second sees the first's edge.

Recurring tasks: the recurrer gives a new occurrence the blockers of the one it follows, each read as its series'
current occurrence; and a blocker id given here that is a completed occurrence with a successor is stored as the
series' current occurrence, so a dependency on a recurring task follows the series. Completing an occurrence lets its
dependents through as any blocker does: the edges stay on it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import dependencies as deps
from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.task_lists import TaskFilter, count
from mcp_todo.domain.errors import ConflictError, NotFoundError, ValidationError
from mcp_todo.domain.times import resolve_zone
from mcp_todo.domain.urgency import WEIGHTS, Facts, why
from mcp_todo.service.context import Ctx
from mcp_todo.service.inputs import MAX_ID
from mcp_todo.service.shapes import lean_task

MAX_BLOCKERS: Final = 20
NEXT: Final = "next"


def blocker_ids(value: Sequence[int] | None) -> list[int] | None:
    """`blocked_by` as given, checked (no database): None leaves the blockers alone, [] clears them."""
    if value is None:
        return None
    for i in value:
        if isinstance(i, bool) or not isinstance(i, int) or not 1 <= i <= MAX_ID:
            raise ValidationError(
                f"blocked_by: {str(i)[:20]} is not a task id (a whole number from 1 to {MAX_ID}) — list_tasks shows "
                "the ids"
            )
    ids = list(dict.fromkeys(value))
    if len(ids) > MAX_BLOCKERS:
        raise ValidationError(f"blocked_by holds at most {MAX_BLOCKERS} task ids (got {len(ids)})")
    return ids


def cycle_through(task_id: int, blockers: Sequence[int], edges: Sequence[tuple[int, int]]) -> list[int] | None:
    """The shortest chain task → blocker → … → task the new blockers would close, or None. `edges` are the existing
    (task, blocker) edges; the task's own are being replaced, so they are not followed."""
    waits: dict[int, list[int]] = {}
    for task, blocker in edges:
        if task != task_id:
            waits.setdefault(task, []).append(blocker)
    came_from: dict[int, int] = {b: task_id for b in blockers}
    queue = deque(sorted(blockers))
    while queue:
        node = queue.popleft()
        if node == task_id:
            chain = [task_id]
            step = came_from[task_id]
            while step != task_id:
                chain.append(step)
                step = came_from[step]
            return [task_id, *reversed(chain[1:]), task_id]
        for nxt in sorted(waits.get(node, ())):
            if nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return None


def chain_text(chain: Sequence[int]) -> str:
    return " → ".join(f"#{i}" for i in chain)


async def set_blockers(conn: AsyncConnection, ctx: Ctx, task_id: int, wanted: Sequence[int]) -> bool:
    """The task waits on exactly `wanted` (checked by `blocker_ids`) from now on; whether that changed anything. The
    caller holds the user's dependency lock (`lock`)."""
    if task_id in wanted:
        raise ValidationError(f"task {task_id} cannot wait on itself — leave its own id out of blocked_by")
    found = await deps.resolve(conn, ctx.user_id, wanted)
    blockers: list[int] = []
    for asked in wanted:
        if asked not in found:
            raise NotFoundError(f"blocked_by: task {asked} does not exist for this user — list_tasks shows the ids")
        current, trashed = found[asked]
        if trashed:
            raise NotFoundError(f"blocked_by: task {asked} is in the trash — restore it first, or leave it out")
        if current != task_id and current not in blockers:
            blockers.append(current)
    blockers.sort()
    before = await deps.blockers_of(conn, ctx.user_id, task_id)
    if before == blockers:
        return False
    new = [b for b in blockers if b not in before]
    if new:
        chain = cycle_through(task_id, new, await deps.reachable_edges(conn, ctx.user_id, new))
        if chain is not None:
            raise ConflictError(
                f"blocked_by would close a cycle: {chain_text(chain)} — a task cannot wait on itself through others; "
                "drop one of these dependencies first"
            )
    await deps.replace(conn, ctx.user_id, task_id, blockers, ctx.now)
    return True


async def lock(conn: AsyncConnection, ctx: Ctx) -> None:
    """Take the user's dependency lock: first thing in a transaction that will change blockers."""
    await deps.lock_user(conn, ctx.user_id)


async def reload(conn: AsyncConnection, ctx: Ctx, task_id: int) -> tasks_db.TaskRow:
    """The task as it is now (after its blockers changed), trashed or not."""
    return await tasks_db.fetch(conn, ctx.user_id, task_id, trashed=True)


def explain(row: tasks_db.TaskRow, waiting: int, top_waiting: float | None, now: datetime, zone: ZoneInfo) -> list[str]:
    """`why` of a task in a "next" list."""
    facts = Facts(
        id=row.id,
        priority=row.priority,
        due=row.due_date,
        created_at=row.created_at,
        blocks=waiting,
        top_waiting=top_waiting,
        blocked_by=tuple(row.blocked_by),
    )
    return why(facts, now, zone)


def ranked_status(status: str) -> str:
    """The status a "next" list reads: the open tasks (status all or pending)."""
    if status not in ("all", "pending"):
        raise ValidationError(f"sort_by=next ranks the open tasks — leave status out, or give pending (got {status})")
    return "pending"


def only_ready(where: TaskFilter, ready: bool) -> None:
    """Open tasks without an open blocker (`ready`), or with one."""
    where.add(f"t.status = 'pending' AND {'NOT ' if ready else ''}{deps.HAS_OPEN_BLOCKER}")


async def ranked_page(
    conn: AsyncConnection, ctx: Ctx, where: TaskFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the tasks matching `where` in "next" order (`mcp_todo.domain.urgency`), each with its `why`, and
    the number of matching tasks."""
    source = deps.ranked_source(where.where, WEIGHTS)
    rows = await deps.ranked_rows(
        conn,
        tasks_db.shape_select(source, extra=deps.RANKED_EXTRA),
        {**where.params, **deps.ranking_params(WEIGHTS, ctx.now), "limit": limit, "offset": offset},
    )
    zone = resolve_zone(ctx.time_zone)
    tasks = []
    for mapping in rows:
        row = tasks_db.TaskRow.from_mapping(mapping)
        reasons = explain(row, int(mapping["waiting"]), mapping["top_waiting"], ctx.now, zone)
        tasks.append({**lean_task(row, ctx.time_zone), "why": reasons})
    if offset == 0 and len(tasks) < limit:
        return tasks, len(tasks)
    return tasks, await count(conn, where)
