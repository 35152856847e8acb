"""When a task's reminder is due, and whether a late one is still worth delivering. Pure: ``now`` is an argument."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.times import END_OF_DAY, localize, resolve_zone

MAX_LEAD_MINUTES = 525_600  # one year
DEFAULT_MAX_LATE = timedelta(days=1)
MINUTES_PER_DAY = 24 * 60


def validate_lead(minutes: int) -> int:
    """The lead time in minutes, checked to be 0..525 600 (one year)."""
    # bool is an int subclass; "remind_before_minutes: true" is a mistake, not one minute.
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 <= minutes <= MAX_LEAD_MINUTES:
        raise ValidationError(
            f"the reminder lead time must be a whole number of minutes from 0 to {MAX_LEAD_MINUTES} (one year), "
            f"got {minutes!r} — e.g. remind_before_minutes=60 for an hour before the due date"
        )
    return minutes


def is_all_day(due: datetime, zone: str | ZoneInfo) -> bool:
    """Whether ``due`` is a date without a time: the end of its day (23:59:59) in the task's zone."""
    return due.astimezone(resolve_zone(zone) if isinstance(zone, str) else zone).time() == END_OF_DAY


def remind_at_for(
    due: datetime | None,
    lead_minutes: int,
    *,
    zone: str | ZoneInfo | None = None,
    all_day_at: time | None = None,
) -> datetime | None:
    """``due`` minus the lead; None for a task without a due date.

    A task due on a date without a time (``is_all_day`` in ``zone``) is reminded of at ``all_day_at`` instead, in
    the morning of the day rather than an hour before its midnight: on the due day for a lead under a day, and a day
    earlier for each whole day of lead (1440 minutes: the day before at that time). Without ``all_day_at`` (or
    ``zone``) every due date counts back by the lead.
    """
    minutes = validate_lead(lead_minutes)
    if due is None:
        return None
    if all_day_at is not None and zone is not None and is_all_day(due, zone):
        tz = resolve_zone(zone) if isinstance(zone, str) else zone
        day = due.astimezone(tz).date() - timedelta(days=minutes // MINUTES_PER_DAY)
        return localize(datetime.combine(day, all_day_at), tz)
    # In UTC: an hour before 03:30 on a spring-forward morning is 01:30, which wall-clock arithmetic in the zone
    # (what Python does for two times of one zone) would get wrong.
    remind_at = due.astimezone(UTC) - timedelta(minutes=minutes)
    return remind_at.astimezone(due.tzinfo)


def is_due_for_delivery(
    remind_at: datetime | None,
    due_date: datetime | None,
    now: datetime,
    *,
    max_late: timedelta = DEFAULT_MAX_LATE,
) -> bool:
    """Whether an unsent reminder should be delivered at ``now``.

    A reminder is delivered once ``remind_at`` has passed, unless everything it is about is stale: the task is past
    due by more than ``max_late`` (a reminder that came due while nothing was running, found at start-up). Without a
    due date, the reminder's own time is judged instead. An explicit reminder set after the due date is judged by
    its own time, so "remind me tomorrow about this overdue task" still fires. Whether the task is still pending is
    the caller's to check.
    """
    if remind_at is None:
        return False
    # In UTC: arithmetic between two times of one zone ignores a DST change between them.
    now, remind_at = now.astimezone(UTC), remind_at.astimezone(UTC)
    if remind_at > now:
        return False
    newest = remind_at if due_date is None else max(remind_at, due_date.astimezone(UTC))
    return now - newest <= max_late
