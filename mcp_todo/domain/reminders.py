"""When a task's reminder is due, and whether a late one is still worth delivering. Pure: ``now`` is an argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mcp_todo.domain.errors import ValidationError

MAX_LEAD_MINUTES = 525_600  # one year
DEFAULT_MAX_LATE = timedelta(days=1)


def validate_lead(minutes: int) -> int:
    """The lead time in minutes, checked to be 0..525 600 (one year)."""
    # bool is an int subclass; "remind_before_minutes: true" is a mistake, not one minute.
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 <= minutes <= MAX_LEAD_MINUTES:
        raise ValidationError(
            f"the reminder lead time must be a whole number of minutes from 0 to {MAX_LEAD_MINUTES} (one year), "
            f"got {minutes!r} — e.g. remind_before_minutes=60 for an hour before the due date"
        )
    return minutes


def remind_at_for(due: datetime | None, lead_minutes: int) -> datetime | None:
    """``due`` minus the lead; None for a task without a due date."""
    minutes = validate_lead(lead_minutes)
    if due is None:
        return None
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
