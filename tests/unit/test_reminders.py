"""Reminder times: due date minus the lead, the lead's bounds, and which late reminders still go out."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pydantic
import pytest

from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.reminder_times import (
    MAX_LEAD_MINUTES,
    is_all_day,
    is_due_for_delivery,
    remind_at_for,
    validate_lead,
)
from mcp_todo.settings import Settings

NEW_YORK = ZoneInfo("America/New_York")
DUE = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)


def test_the_longest_lead_is_one_year() -> None:
    assert MAX_LEAD_MINUTES == 365 * 24 * 60


@pytest.mark.parametrize("minutes", [0, 1, 60, MAX_LEAD_MINUTES])
def test_validate_lead_accepts_zero_to_a_year(minutes: int) -> None:
    assert validate_lead(minutes) == minutes


@pytest.mark.parametrize("minutes", [-1, MAX_LEAD_MINUTES + 1, 10**12, True, 1.5, "60"])
def test_validate_lead_rejects_the_rest(minutes: object) -> None:
    with pytest.raises(ValidationError, match=r"from 0 to 525600 .* remind_before_minutes=60"):
        validate_lead(minutes)  # type: ignore[arg-type]  # what a misbehaving caller might pass


def test_remind_at_is_due_minus_the_lead() -> None:
    assert remind_at_for(DUE, 60) == datetime(2027, 3, 10, 8, 0, tzinfo=UTC)
    assert remind_at_for(DUE, 0) == DUE
    assert remind_at_for(DUE, MAX_LEAD_MINUTES) == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def test_remind_at_counts_real_minutes_across_a_dst_change() -> None:
    # 03:30 EDT on spring-forward morning; an hour earlier is 01:30 EST, not the non-existent 02:30.
    due = datetime(2027, 3, 14, 3, 30, tzinfo=NEW_YORK)
    remind_at = remind_at_for(due, 60)
    assert remind_at is not None
    assert due.astimezone(UTC) - remind_at.astimezone(UTC) == timedelta(hours=1)
    assert remind_at.isoformat() == "2027-03-14T01:30:00-05:00"


def test_no_due_date_no_reminder() -> None:
    assert remind_at_for(None, 60) is None


def test_remind_at_for_checks_the_lead_even_without_a_due_date() -> None:
    with pytest.raises(ValidationError):
        remind_at_for(None, -5)


# --- is_due_for_delivery ----------------------------------------------------------------------------------------

REMIND_AT = DUE - timedelta(hours=1)


def test_not_before_remind_at() -> None:
    assert not is_due_for_delivery(REMIND_AT, DUE, REMIND_AT - timedelta(seconds=1))


def test_at_and_just_after_remind_at() -> None:
    assert is_due_for_delivery(REMIND_AT, DUE, REMIND_AT)
    assert is_due_for_delivery(REMIND_AT, DUE, REMIND_AT + timedelta(seconds=2))


def test_catch_up_delivers_when_the_task_is_at_most_a_day_past_due() -> None:
    assert is_due_for_delivery(REMIND_AT, DUE, DUE + timedelta(hours=2))
    assert is_due_for_delivery(REMIND_AT, DUE, DUE + timedelta(days=1))


def test_catch_up_drops_a_reminder_for_a_task_more_than_a_day_past_due() -> None:
    assert not is_due_for_delivery(REMIND_AT, DUE, DUE + timedelta(days=1, seconds=1))
    assert not is_due_for_delivery(REMIND_AT, DUE, DUE + timedelta(days=30))


def test_a_long_lead_reminder_found_late_still_fires_while_the_task_is_not_due() -> None:
    remind_at = DUE - timedelta(days=7)
    assert is_due_for_delivery(remind_at, DUE, remind_at + timedelta(days=5))


def test_without_a_due_date_the_reminder_time_is_judged() -> None:
    assert is_due_for_delivery(REMIND_AT, None, REMIND_AT + timedelta(hours=23))
    assert not is_due_for_delivery(REMIND_AT, None, REMIND_AT + timedelta(days=2))


def test_an_explicit_reminder_after_the_due_date_is_judged_by_its_own_time() -> None:
    remind_at = DUE + timedelta(days=3)  # "remind me on Friday about this overdue task"
    assert not is_due_for_delivery(remind_at, DUE, remind_at - timedelta(minutes=1))
    assert is_due_for_delivery(remind_at, DUE, remind_at + timedelta(seconds=1))
    assert not is_due_for_delivery(remind_at, DUE, remind_at + timedelta(days=2))


def test_no_reminder_never_fires() -> None:
    assert not is_due_for_delivery(None, DUE, DUE)


def test_max_late_is_adjustable() -> None:
    now = DUE + timedelta(hours=2)
    assert not is_due_for_delivery(REMIND_AT, DUE, now, max_late=timedelta(hours=1))
    assert is_due_for_delivery(REMIND_AT, DUE, now, max_late=timedelta(hours=3))


def test_lateness_is_real_time_even_in_one_zone_across_dst() -> None:
    # Due 00:30 EST; 00:00 EDT the next day is 22.5 real hours later (the wall clock says 23.5).
    due = datetime(2027, 3, 14, 0, 30, tzinfo=NEW_YORK)
    now = datetime(2027, 3, 15, 0, 0, tzinfo=NEW_YORK)
    assert is_due_for_delivery(due - timedelta(hours=1), due, now, max_late=timedelta(hours=23))
    assert not is_due_for_delivery(due - timedelta(hours=1), due, now, max_late=timedelta(hours=22))


# --- all-day tasks: a date without a time is due at 23:59:59; its reminder comes in the morning ------------------

PARIS = ZoneInfo("Europe/Paris")
NINE = time(9, 0)


def _end_of(day: date, zone: ZoneInfo = PARIS) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=zone)


@pytest.mark.parametrize(
    ("lead", "reminded"),
    [
        (0, datetime(2027, 3, 12, 9, 0)),
        (60, datetime(2027, 3, 12, 9, 0)),  # the default lead: the morning of the day, not 22:59 that night
        (1439, datetime(2027, 3, 12, 9, 0)),
        (1440, datetime(2027, 3, 11, 9, 0)),  # a day of lead: the morning before
        (2 * 1440 + 30, datetime(2027, 3, 10, 9, 0)),
        (7 * 1440, datetime(2027, 3, 5, 9, 0)),
    ],
)
def test_an_all_day_task_is_reminded_at_the_all_day_time(lead: int, reminded: datetime) -> None:
    due = _end_of(date(2027, 3, 12))
    remind_at = remind_at_for(due, lead, zone="Europe/Paris", all_day_at=NINE)
    assert remind_at == reminded.replace(tzinfo=PARIS)
    assert remind_at is not None and remind_at.utcoffset() == timedelta(hours=1)


def test_all_day_is_read_in_the_tasks_zone_whatever_zone_the_due_date_comes_in() -> None:
    due_in_utc = _end_of(date(2027, 3, 12)).astimezone(UTC)  # as PostgreSQL returns it
    assert remind_at_for(due_in_utc, 60, zone=PARIS, all_day_at=NINE) == datetime(2027, 3, 12, 9, 0, tzinfo=PARIS)
    assert is_all_day(due_in_utc, "Europe/Paris") and not is_all_day(due_in_utc, "UTC")
    # 23:59:59 in Paris is 22:59:59 UTC: a task kept in UTC is not all-day at that time, and counts back by its lead.
    assert remind_at_for(due_in_utc, 60, zone="UTC", all_day_at=NINE) == due_in_utc - timedelta(minutes=60)


def test_a_task_with_a_time_counts_back_by_its_lead() -> None:
    due = datetime(2027, 3, 12, 23, 59, 0, tzinfo=PARIS)  # a minute off the end of the day: a real time
    assert remind_at_for(due, 60, zone=PARIS, all_day_at=NINE) == datetime(2027, 3, 12, 22, 59, tzinfo=PARIS)


def test_without_an_all_day_time_the_end_of_the_day_counts_back_by_the_lead() -> None:
    due = _end_of(date(2027, 3, 12))
    assert remind_at_for(due, 60) == datetime(2027, 3, 12, 22, 59, 59, tzinfo=PARIS)
    assert remind_at_for(due, 60, zone=PARIS) == datetime(2027, 3, 12, 22, 59, 59, tzinfo=PARIS)


def test_an_all_day_time_a_dst_gap_skips_moves_forward_by_the_gap() -> None:
    # Paris springs forward at 02:00 on 2027-03-28: 02:30 does not exist that morning.
    remind_at = remind_at_for(_end_of(date(2027, 3, 28)), 60, zone=PARIS, all_day_at=time(2, 30))
    assert remind_at == datetime(2027, 3, 28, 3, 30, tzinfo=PARIS)
    assert remind_at is not None and remind_at.utcoffset() == timedelta(hours=2)


def test_the_all_day_reminder_keeps_its_wall_time_across_a_dst_change() -> None:
    # A week of lead across the spring change: 09:00 in winter time the week before.
    remind_at = remind_at_for(_end_of(date(2027, 4, 2)), 7 * 1440, zone=PARIS, all_day_at=NINE)
    assert remind_at == datetime(2027, 3, 26, 9, 0, tzinfo=PARIS)
    assert remind_at is not None and remind_at.utcoffset() == timedelta(hours=1)


def test_the_all_day_time_is_a_setting_with_a_morning_default() -> None:
    assert Settings.model_validate({}).all_day_reminder_time == NINE
    assert Settings.model_validate({"MCP_TODO_ALL_DAY_REMINDER_TIME": "07:30"}).all_day_reminder_time == time(7, 30)
    for wrong in ("7am", "25:00", "09:00+01:00"):
        with pytest.raises(pydantic.ValidationError, match="MCP_TODO_ALL_DAY_REMINDER_TIME must be a wall-clock"):
            Settings.model_validate({"MCP_TODO_ALL_DAY_REMINDER_TIME": wrong})
