"""list_tasks(sort_by="next") on a fixed set of 30 tasks: the expected order and reasons are worked out by hand from
the table in mcp_todo/domain/urgency.py (points in the comments), not read back from the code.

The clock is fixed at Saturday 2027-01-02 10:00 in New York; due dates are at 10:00 too, so "d days overdue" is
exact. Due factor f = clamp(0.2 + (d + 14) x 0.8 / 21, 0.2, 1.0), due points = 12 f.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import Clock, Tools, execute, first_text, server_for, tools_of

NOW = datetime(2027, 1, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "alice", clock=Clock(NOW))) as client:
        yield client


def due(days_overdue: int) -> str:
    return (datetime(2027, 1, 2, 10, 0) - timedelta(days=days_overdue)).isoformat()


# (title, priority, days overdue or None, blocked by (titles)); created in this order, all "now" unless aged below.
TASKS: list[tuple[str, str, int | None, list[str]]] = [
    ("Tax return", "urgent", 7, []),
    ("Pour the foundation", "low", None, []),
    ("Renew passport", "high", 10, []),
    ("Fix the leak", "high", 2, []),
    ("Call the bank", "urgent", 0, []),
    ("Submit report", "medium", 7, []),
    ("Order parts", "medium", None, []),
    ("Pay rent", "medium", -1, []),
    ("Dentist", "low", 1, []),
    ("Book flights", "urgent", None, []),
    ("Water plants", "medium", -7, []),
    ("Read book", "low", -30, []),
    ("Clean desk", "medium", None, []),
    ("Tie A", "medium", None, []),
    ("Tie B", "high", -3, []),
    ("Tie C", "high", -3, []),
    ("Stretch", "low", -20, []),
    ("Archive mail", "low", None, []),
    ("Old idea", "low", None, []),
    ("Learn Go", "medium", None, []),
    ("Gym", "high", None, []),
    ("Walk dog", "medium", -14, []),
    ("Done thing", "urgent", 30, []),
    ("Trashed thing", "urgent", 30, []),
    ("Finished blocker", "low", None, []),
    ("Reply to Ann", "medium", 0, ["Finished blocker"]),
    ("Build the walls", "urgent", 7, ["Pour the foundation"]),
    ("Put on the roof", "medium", None, ["Pour the foundation", "Build the walls"]),
    ("Paint", "high", None, ["Pour the foundation"]),
    ("Install parts", "medium", None, ["Order parts"]),
]

# The expected ranking: open tasks without an open blocker by urgency (ties: due date, then id), then the blocked.
EXPECTED: list[tuple[str, list[str]]] = [
    ("Tax return", ["overdue 7 days", "urgent"]),  # 9 + 12 = 21.0
    # 1.8 + blocking 8 + 0.5 x 21 (Build the walls' own urgency: urgent, 7 days overdue) = 20.3
    ("Pour the foundation", ["unblocks 3", "low priority"]),
    ("Renew passport", ["overdue 10 days", "high priority"]),  # 6 + 12 = 18.0
    ("Call the bank", ["urgent", "due today"]),  # 9 + 12 x 0.7333 = 17.8
    ("Submit report", ["overdue 7 days", "medium priority"]),  # 3.9 + 12 = 15.9
    ("Fix the leak", ["overdue 2 days", "high priority"]),  # 6 + 12 x 0.8095 = 15.71
    ("Order parts", ["unblocks 1", "medium priority"]),  # 3.9 + 8 + 0.5 x 3.9 = 13.85
    ("Tie B", ["due in 3 days", "high priority"]),  # 6 + 12 x 0.6190 = 13.43
    ("Tie C", ["due in 3 days", "high priority"]),  # the same points and due date: by id
    ("Reply to Ann", ["due today", "medium priority"]),  # 3.9 + 8.8 = 12.7 (its blocker is completed)
    ("Pay rent", ["due tomorrow", "medium priority"]),  # 3.9 + 12 x 0.6952 = 12.24
    ("Dentist", ["overdue 1 day", "low priority"]),  # 1.8 + 12 x 0.7714 = 11.06
    ("Water plants", ["due in 7 days", "medium priority"]),  # 3.9 + 12 x 0.4667 = 9.5
    ("Book flights", ["urgent"]),  # 9.0
    ("Walk dog", ["medium priority", "due in 14 days"]),  # 3.9 + 2.4 = 6.3
    ("Gym", ["high priority"]),  # 6.0
    ("Learn Go", ["medium priority", "open 100 days"]),  # 3.9 + 2 x 100/365 = 4.45
    ("Stretch", ["due in 20 days", "low priority"]),  # 1.8 + 2.4 = 4.2, due sooner than Read book
    ("Read book", ["due in 30 days", "low priority"]),  # 4.2
    ("Clean desk", ["medium priority"]),  # 3.9
    ("Tie A", ["medium priority"]),  # 3.9, no due date either: by id
    ("Old idea", ["open 365 days", "low priority"]),  # 1.8 + 2.0 = 3.8
    ("Archive mail", ["low priority"]),  # 1.8
    # Blocked, last: 21 + (8 + 0.5 x 3.9, for Put on the roof) - 5 = 25.95
    ("Build the walls", ["blocked by #{Pour the foundation}", "overdue 7 days", "unblocks 1"]),
    ("Paint", ["blocked by #{Pour the foundation}", "high priority"]),  # 6 - 5 = 1.0
    ("Put on the roof", ["blocked by #{Pour the foundation}, #{Build the walls}", "medium priority"]),  # -1.1
    ("Install parts", ["blocked by #{Order parts}", "medium priority"]),  # -1.1, by id
]


async def build(tools: Tools, db: AsyncEngine) -> dict[str, int]:
    ids: dict[str, int] = {}
    for title, priority, days, blockers in TASKS:
        arguments: dict[str, Any] = {"title": title, "priority": priority}
        if days is not None:
            arguments["due_date"] = due(days)
        if blockers:
            arguments["blocked_by"] = [ids[name] for name in blockers]
        ids[title] = (await tools.add_task(**arguments))["id"]
    await tools.complete_task(task_ids=[ids["Done thing"], ids["Finished blocker"]])
    await tools.delete_task(task_id=ids["Trashed thing"])
    for title, days in (("Learn Go", 100), ("Old idea", 365)):
        await execute(
            db, "UPDATE tasks SET created_at = :at WHERE id = :id", at=NOW - timedelta(days=days), id=ids[title]
        )
    return ids


def expected(ids: dict[str, int]) -> list[tuple[int, list[str]]]:
    return [(ids[title], [reason.format(**ids) for reason in why]) for title, why in EXPECTED]


async def test_the_next_ranking_of_30_tasks_is_as_written_down(tools: Tools, db: AsyncEngine) -> None:
    ids = await build(tools, db)
    assert len(TASKS) == 30
    ranked = await tools.list_tasks(sort_by="next", limit=100)
    assert ranked["total"] == len(EXPECTED)
    assert [(task["id"], task["why"]) for task in ranked["tasks"]] == expected(ids)
    # A page of it is the same slice, and the reasons are in the text lines too.
    page = await tools.list_tasks(sort_by="next", limit=5, offset=5)
    assert [task["id"] for task in page["tasks"]] == [i for i, _ in expected(ids)[5:10]]
    assert page["total"] == len(EXPECTED)
    text = first_text(await tools.raw("list_tasks", {"sort_by": "next", "limit": 2}))
    assert f"#{ids['Tax return']} Tax return · urgent · due " in text
    assert "why: overdue 7 days, urgent" in text.splitlines()[1]
    # Filters still apply, and other sorts carry no why.
    high = await tools.list_tasks(sort_by="next", priority="high")
    assert [task["id"] for task in high["tasks"]] == [
        ids[t] for t in ("Renew passport", "Fix the leak", "Tie B", "Tie C", "Gym", "Paint")
    ]
    assert all(task.get("why") is None for task in (await tools.list_tasks(sort_by="due_date"))["tasks"])


async def test_next_ranks_open_tasks_only(tools: Tools) -> None:
    error = await tools.error("list_tasks", {"sort_by": "next", "status": "completed"})
    assert error.startswith("VALIDATION_ERROR") and "open tasks" in error
