"""Repeating a fixed interval after each completion (recurrence_from "completion"): which rules, which dates, which
words."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.recurrence import next_after_completion, validate_completion_rule
from mcp_todo.domain.rrule import describe_rule

NY = ZoneInfo("America/New_York")
DUE = datetime(2027, 3, 1, 9, 0, tzinfo=NY)


@pytest.mark.parametrize(
    ("rule", "completed", "expected", "following"),
    [
        # Three days after a completion on the evening of March 11: March 14, when clocks go forward; 09:00 stays.
        ("FREQ=DAILY;INTERVAL=3", datetime(2027, 3, 11, 20, 30, tzinfo=NY), datetime(2027, 3, 14, 9, 0), None),
        ("FREQ=WEEKLY;INTERVAL=2", datetime(2027, 3, 3, 7, 0, tzinfo=NY), datetime(2027, 3, 17, 9, 0), None),
        # A month after January 31 is the last day of February.
        ("FREQ=MONTHLY", datetime(2027, 1, 31, 12, 0, tzinfo=NY), datetime(2027, 3, 31, 9, 0), None),
        ("FREQ=MONTHLY", datetime(2027, 3, 31, 12, 0, tzinfo=NY), datetime(2027, 4, 30, 9, 0), None),
        ("FREQ=YEARLY", datetime(2028, 2, 29, 12, 0, tzinfo=NY), datetime(2029, 2, 28, 9, 0), None),
        ("FREQ=DAILY;COUNT=3", datetime(2027, 3, 1, 10, 0, tzinfo=NY), datetime(2027, 3, 2, 9, 0), "COUNT=2"),
    ],
)
def test_the_next_occurrence_is_the_interval_after_the_completion_at_the_series_wall_time(
    rule: str, completed: datetime, expected: datetime, following: str | None
) -> None:
    found = next_after_completion(rule, time(9, 0), NY, DUE, completed)
    assert found is not None
    due, next_rule = found
    assert due.tzinfo is not None and due.replace(tzinfo=None) == expected
    assert due.utcoffset() == expected.replace(tzinfo=NY).utcoffset()
    assert next_rule.endswith(following) if following else next_rule == rule


def test_an_early_completion_never_goes_back_before_the_completed_occurrence() -> None:
    # Due March 1, done a week early: one day after would be February 23; the next is after March 1.
    found = next_after_completion("FREQ=DAILY", time(9, 0), NY, DUE, datetime(2027, 2, 22, 8, 0, tzinfo=NY))
    assert found is not None and found[0] == datetime(2027, 3, 2, 9, 0, tzinfo=NY)


def test_a_skipped_wall_time_moves_forward_by_the_gap() -> None:
    found = next_after_completion("FREQ=DAILY", time(2, 30), NY, DUE, datetime(2027, 3, 13, 12, 0, tzinfo=NY))
    assert found is not None and found[0].astimezone(UTC) == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)  # 03:30 EDT


def test_count_and_until_end_the_series() -> None:
    assert next_after_completion("FREQ=DAILY;COUNT=1", time(9), NY, DUE, DUE) is None
    until = "FREQ=DAILY;INTERVAL=5;UNTIL=20270304"
    assert next_after_completion(until, time(9), NY, DUE, DUE) is None
    assert next_after_completion("FREQ=DAILY;UNTIL=20270304", time(9), NY, DUE, DUE) is not None


@pytest.mark.parametrize(
    "rule", ["FREQ=WEEKLY;BYDAY=MO", "FREQ=MONTHLY;BYMONTHDAY=1", "FREQ=YEARLY;BYMONTH=3", "FREQ=DAILY;WKST=SU"]
)
def test_only_an_interval_repeats_after_completion(rule: str) -> None:
    with pytest.raises(InvalidRecurrenceRuleError, match="cannot be used when repeating after completion"):
        validate_completion_rule(rule, DUE, NY)


def test_an_until_before_the_due_date_is_refused() -> None:
    with pytest.raises(InvalidRecurrenceRuleError, match="before the due date"):
        validate_completion_rule("FREQ=DAILY;UNTIL=20270201", DUE, NY)
    assert validate_completion_rule("rrule:freq=daily;interval=3", DUE, NY) == "FREQ=DAILY;INTERVAL=3"


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("FREQ=DAILY;INTERVAL=3", "3 days after completion"),
        ("FREQ=DAILY", "1 day after completion"),
        ("FREQ=WEEKLY;COUNT=2", "1 week after completion, twice"),
        ("FREQ=MONTHLY;INTERVAL=6;UNTIL=20280101", "6 months after completion until 2028-01-01"),
    ],
)
def test_the_words_say_after_completion(rule: str, words: str) -> None:
    assert describe_rule(rule, from_completion=True) == words
    assert "after completion" not in describe_rule(rule)
