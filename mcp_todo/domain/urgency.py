"""What to do next: a task's urgency as a sum of terms, each with a weight, and the terms that placed it in words.

The terms and weights follow Taskwarrior's urgency coefficients (its defaults: due 12.0, blocking 8.0, priority
H/M/L 6.0/3.9/1.8, age 2.0, blocked -5.0, and its "inherit" option, where a blocker takes on the urgency of what it
blocks). mcp-todo has one priority more (urgent) and every task has a priority (medium by default).

| term      | points                                                                                              |
|-----------|-----------------------------------------------------------------------------------------------------|
| priority  | urgent 9.0, high 6.0, medium 3.9, low 1.8                                                           |
| due       | 12.0 x f, f = 0.2 when due 14 days or more ahead, rising linearly to 1.0 at 7 days overdue; no due 0 |
| age       | 2.0 x (days since created / 365), at most 2.0                                                       |
| blocking  | 8.0 when at least one open task waits on it                                                         |
| inherited | 0.5 x the own urgency (priority + due + age) of the most urgent open task waiting on it               |
| blocked   | -5.0 when it waits on an open task (such tasks are listed last whatever their urgency)              |

Ties are broken by due date (soonest first, none last), then by id. The database ranks a whole list with the same
formula (`mcp_todo.db.dependencies.urgency_sql` builds it from `WEIGHTS`); this module explains the ranked page.
Pure: `now` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

WHY_TERMS: Final = 3


@dataclass(frozen=True)
class Weights:
    priority: dict[str, float] = field(default_factory=lambda: {"urgent": 9.0, "high": 6.0, "medium": 3.9, "low": 1.8})
    due: float = 12.0
    due_floor: float = 0.2  # the due factor of a task due far ahead
    due_window_days: float = 14.0  # the factor rises from this many days before the due date…
    due_full_after_days: float = 7.0  # …to 1.0 this many days after it
    age: float = 2.0
    age_full_days: float = 365.0
    blocking: float = 8.0
    inherit: float = 0.5
    blocked: float = -5.0


WEIGHTS: Final = Weights()


def _days(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 86400.0


def due_factor(due: datetime | None, now: datetime, w: Weights = WEIGHTS) -> float:
    if due is None:
        return 0.0
    rising = (_days(now, due) + w.due_window_days) * (1.0 - w.due_floor) / (w.due_window_days + w.due_full_after_days)
    return max(w.due_floor, min(1.0, rising + w.due_floor))


def own_urgency(
    priority: str, due: datetime | None, created_at: datetime, now: datetime, w: Weights = WEIGHTS
) -> float:
    """Priority, due and age: what a task is worth by itself (what a blocker inherits part of)."""
    age = min(1.0, max(0.0, _days(now, created_at) / w.age_full_days))
    return w.priority.get(priority, 0.0) + w.due * due_factor(due, now, w) + w.age * age


@dataclass(frozen=True)
class Facts:
    """What the ranking knows of one task."""

    id: int
    priority: str
    due: datetime | None
    created_at: datetime
    blocks: int = 0  # open tasks waiting on it
    top_waiting: float | None = None  # the own urgency of the most urgent of them
    blocked_by: tuple[int, ...] = ()  # its open blockers


@dataclass(frozen=True)
class Term:
    name: str
    points: float
    words: str


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def due_words(due: datetime, now: datetime, zone: ZoneInfo) -> str:
    """ "overdue 2 days", "overdue" (earlier today), "due today", "due tomorrow", "due in 5 days": calendar days in
    the user's zone."""
    days = (due.astimezone(zone).date() - now.astimezone(zone).date()).days
    if due < now:
        return "overdue" if days == 0 else f"overdue {_plural(-days, 'day')}"
    if days == 0:
        return "due today"
    if days == 1:
        return "due tomorrow"
    return f"due in {days} days"


_PRIORITY_WORDS: Final = {
    "urgent": "urgent",
    "high": "high priority",
    "medium": "medium priority",
    "low": "low priority",
}


def terms(facts: Facts, now: datetime, zone: ZoneInfo, w: Weights = WEIGHTS) -> list[Term]:
    """Every term of the task's urgency with its points, in the table's order."""
    found = [Term("priority", w.priority.get(facts.priority, 0.0), _PRIORITY_WORDS.get(facts.priority, facts.priority))]
    if facts.due is not None:
        found.append(Term("due", w.due * due_factor(facts.due, now, w), due_words(facts.due, now, zone)))
    age_days = _days(now, facts.created_at)
    found.append(Term("age", w.age * min(1.0, max(0.0, age_days / w.age_full_days)), f"open {int(age_days)} days"))
    if facts.blocks > 0:
        inherited = w.inherit * max(facts.top_waiting or 0.0, 0.0)
        found.append(Term("blocking", w.blocking + inherited, f"unblocks {facts.blocks}"))
    if facts.blocked_by:
        found.append(Term("blocked", w.blocked, "blocked by " + ", ".join(f"#{i}" for i in facts.blocked_by)))
    return found


def urgency(facts: Facts, now: datetime, zone: ZoneInfo, w: Weights = WEIGHTS) -> float:
    return sum(term.points for term in terms(facts, now, zone, w))


def why(facts: Facts, now: datetime, zone: ZoneInfo, w: Weights = WEIGHTS) -> list[str]:
    """The terms that placed the task, in words, weightiest first: up to three that add points (an age under a day
    adds none worth saying); a blocked task says first what blocks it."""
    found = terms(facts, now, zone, w)
    adding = sorted((t for t in found if t.points >= 0.05), key=lambda t: -t.points)
    words = [t.words for t in adding[:WHY_TERMS]]
    if facts.blocked_by:
        words = ["blocked by " + ", ".join(f"#{i}" for i in facts.blocked_by), *words[: WHY_TERMS - 1]]
    return words
