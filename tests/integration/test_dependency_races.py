"""Dependencies under concurrent calls: two calls that would each add one half of a cycle cannot both commit.

The race is replayed deterministically as in test_tree_races: the test holds the outbox, so the first call runs up
to writing its events (holding the user's dependency lock) and waits; the second is started while it waits, and the
outbox is released once both wait. Then a burst of unsynchronised calls checks the same invariant without a script.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.service.dependencies import cycle_through
from tests.integration.test_tree_races import commits_held, outcome
from tests.integration.tool_client import Tools, first_text


def cycles_in(edges: list[tuple[int, int]]) -> list[list[int]]:
    """Every (task, blocker) edge that closes a cycle with the others, as its chain."""
    return [chain for task, blocker in edges if (chain := cycle_through(task, [blocker], edges)) is not None]


async def cycles(db: AsyncEngine) -> list[list[int]]:
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT task_id, blocker_id FROM task_dependencies"))
        edges = [(int(row.task_id), int(row.blocker_id)) for row in rows]
    assert cycles_in([(1, 2), (2, 3), (3, 1)]) == [[1, 2, 3, 1], [2, 3, 1, 2], [3, 1, 2, 3]]  # the check can fail
    return cycles_in(edges)


async def test_two_calls_each_adding_half_a_cycle_cannot_both_commit(
    tools: Tools, other: Tools, db: AsyncEngine
) -> None:
    a = await tools.add_task(title="A")
    b = await tools.add_task(title="B")
    async with commits_held(db) as start:
        first = await start(tools.raw("update_task", {"task_id": a["id"], "blocked_by": [b["id"]]}))
        second = await start(other.raw("update_task", {"task_id": b["id"], "blocked_by": [a["id"]]}))
    assert outcome(await first) == "ok"
    assert outcome(await second) == "CONFLICT", first_text(await second)
    assert f"#{b['id']} → #{a['id']} → #{b['id']}" in first_text(await second)
    assert await cycles(db) == []


async def test_a_cycle_closed_through_a_chain_by_a_batch_meanwhile_is_refused(
    tools: Tools, other: Tools, db: AsyncEngine
) -> None:
    a = await tools.add_task(title="A")
    b = await tools.add_task(title="B", blocked_by=[a["id"]])
    c = await tools.add_task(title="C")
    async with commits_held(db) as start:
        # C waits on B (so on A); meanwhile a new task D that A would wait on, and D waits on C: A → D → C → B → A.
        first = await start(tools.raw("update_task", {"task_id": c["id"], "blocked_by": [b["id"]]}))
        second = await start(other.raw("update_task", {"task_id": a["id"], "blocked_by": [c["id"]]}))
    assert outcome(await first) == "ok"
    assert outcome(await second) == "CONFLICT", first_text(await second)
    assert await cycles(db) == []


async def test_a_burst_of_crossing_edits_leaves_no_cycle(tools: Tools, other: Tools, db: AsyncEngine) -> None:
    ring = [(await tools.add_task(title=f"T{i}"))["id"] for i in range(6)]
    # Every task asks to wait on its neighbour, in both directions at once, from two servers: any cycle would do.
    calls = []
    for i, task in enumerate(ring):
        nxt, prev = ring[(i + 1) % len(ring)], ring[i - 1]
        calls.append(tools.raw("update_task", {"task_id": task, "blocked_by": [nxt]}))
        calls.append(other.raw("update_task", {"task_id": task, "blocked_by": [prev]}))
    results = await asyncio.gather(*calls)
    assert {outcome(result) for result in results} <= {"ok", "CONFLICT"}
    assert "CONFLICT" in {outcome(result) for result in results}  # a ring both ways cannot be built whole
    assert await cycles(db) == []
