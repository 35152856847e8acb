"""The urgency table and its words (mcp_todo.domain.urgency), and the cycle search of the dependency rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mcp_todo.domain.urgency import Facts, due_factor, due_words, own_urgency, why
from mcp_todo.service.dependencies import chain_text, cycle_through

NOW = datetime(2027, 1, 2, 15, 0, tzinfo=UTC)  # Saturday 10:00 in New York
ZONE = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("days_overdue", "factor"),
    [(30, 1.0), (7, 1.0), (2, 0.2 + 16 * 0.8 / 21), (0, 0.2 + 14 * 0.8 / 21), (-14, 0.2), (-100, 0.2)],
)
def test_the_due_factor_rises_from_two_weeks_ahead_to_a_week_overdue(days_overdue: int, factor: float) -> None:
    assert due_factor(NOW - timedelta(days=days_overdue), NOW) == pytest.approx(factor)


def test_a_task_without_a_due_date_gets_no_due_points() -> None:
    assert due_factor(None, NOW) == 0.0
    assert own_urgency("medium", None, NOW, NOW) == pytest.approx(3.9)
    assert own_urgency("low", None, NOW - timedelta(days=730), NOW) == pytest.approx(1.8 + 2.0)  # age caps at 2


@pytest.mark.parametrize(
    ("due", "words"),
    [
        (datetime(2026, 12, 31, 10, 0), "overdue 2 days"),
        (datetime(2027, 1, 1, 23, 0), "overdue 1 day"),
        (datetime(2027, 1, 2, 8, 0), "overdue"),
        (datetime(2027, 1, 2, 23, 59), "due today"),
        (datetime(2027, 1, 3, 0, 30), "due tomorrow"),
        (datetime(2027, 1, 9, 9, 0), "due in 7 days"),
    ],
)
def test_due_words_count_calendar_days_in_the_users_zone(due: datetime, words: str) -> None:
    assert due_words(due.replace(tzinfo=ZONE), NOW, ZONE) == words


def test_why_names_up_to_three_terms_weightiest_first_and_a_blocker_first() -> None:
    blocker = Facts(id=1, priority="low", due=NOW - timedelta(days=1), created_at=NOW, blocks=3, top_waiting=21.0)
    assert why(blocker, NOW, ZONE) == ["unblocks 3", "overdue 1 day", "low priority"]
    blocked = Facts(id=2, priority="high", due=None, created_at=NOW, blocked_by=(1, 5))
    assert why(blocked, NOW, ZONE) == ["blocked by #1, #5", "high priority"]


def test_the_cycle_search_finds_the_shortest_chain_and_ignores_the_tasks_own_old_edges() -> None:
    edges = [(2, 3), (3, 1), (4, 1), (1, 9)]
    assert cycle_through(1, [2], edges) == [1, 2, 3, 1]
    assert chain_text(cycle_through(1, [4, 2], edges) or []) == "#1 → #4 → #1"
    assert cycle_through(1, [9], edges) is None  # 1's own edge to 9 is being replaced: not a path back
    assert cycle_through(5, [6], [(6, 7), (7, 6)]) is None  # a cycle elsewhere is not this task's
