"""The pure parts of the handlers: sleep computation, retry backoff, reminder text, target URL checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.events import REMINDER_DUE, Envelope, ReminderDue
from mcp_todo.handlers.delivery_targets import NotifyTargets, backoff_delays
from mcp_todo.handlers.reminder_delivery import reminder_message
from mcp_todo.jobs.reminder_scheduler import _reminder_event, wait_seconds

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_wait_until_the_next_reminder_capped_by_the_poll_interval() -> None:
    assert wait_seconds(None, NOW, 30.0) == 30.0
    assert wait_seconds(NOW + timedelta(seconds=4), NOW, 30.0) == pytest.approx(4.005)
    assert wait_seconds(NOW + timedelta(hours=1), NOW, 30.0) == 30.0
    # Already due (a full batch left more behind): no sleep at all.
    assert wait_seconds(NOW - timedelta(minutes=5), NOW, 30.0) == 0.0


def test_backoff_doubles_between_attempts() -> None:
    assert backoff_delays(3, 0.5) == [0.5, 1.0]
    assert backoff_delays(1, 0.5) == []
    assert backoff_delays(0, 0.5) == []


def test_message_names_the_task_and_its_due_time_in_its_zone() -> None:
    due = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 GMT, just before London springs forward
    assert reminder_message("Pay rent", due, "Europe/London") == (
        "Reminder: “Pay rent” is due Sun 29 Mar 2026 at 00:30 (Europe/London, UTC+00:00)"
    )
    later = datetime(2026, 3, 29, 9, 0, tzinfo=ZoneInfo("Europe/London"))
    assert reminder_message("Pay rent", later, "Europe/London").endswith("at 09:00 (Europe/London, UTC+01:00)")
    assert reminder_message("Pay rent", due, "Asia/Kolkata").endswith("at 06:00 (Asia/Kolkata, UTC+05:30)")
    assert reminder_message("Pay rent", None, "Europe/London") == "Reminder: “Pay rent”"
    # An unknown zone (should never be stored) still gives a message, in UTC.
    assert reminder_message("Pay rent", due, "Nowhere/Else").endswith("(UTC, UTC+00:00)")


def test_invalid_notify_url_is_a_one_line_error_without_the_url() -> None:
    secret = "tgram://123456:SECRET-TOKEN"
    with pytest.raises(ConfigurationError) as err:
        NotifyTargets(["json://127.0.0.1:9/", "nosuchscheme://user:hunter2@host/"])
    assert "entry 2" in str(err.value)
    assert "hunter2" not in str(err.value)
    assert "\n" not in str(err.value)
    assert NotifyTargets([]).targets == ()
    assert not NotifyTargets([])
    assert len(NotifyTargets(["json://127.0.0.1:9/", secret]).targets) == 2


@pytest.mark.parametrize(
    ("zone", "due"),
    [
        ("America/New_York", datetime(2027, 3, 14, 7, 30, 0, 120000, tzinfo=UTC)),  # the day DST starts
        ("Asia/Kolkata", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("UTC", None),
    ],
)
def test_the_scheduler_writes_reminder_due_as_its_payload_model_does(zone: str, due: datetime | None) -> None:
    remind_at = datetime(2027, 3, 14, 6, 45, 30, tzinfo=UTC)
    row = SimpleNamespace(
        id=42, user_id="alice", title="Stand-up “daily”", due_date=due, remind_at=remind_at, time_zone=zone
    )
    event = _reminder_event(row)
    expected = Envelope.of(
        REMINDER_DUE,
        ReminderDue(
            task_id=42,
            title=row.title,
            due_date=None if due is None else due.astimezone(ZoneInfo(zone)),
            remind_at=remind_at.astimezone(ZoneInfo(zone)),
        ),
        user_id="alice",
        task_id=42,
    )
    assert (event.event_type, event.user_id, event.task_id) == (REMINDER_DUE, "alice", 42)
    assert json.dumps(event.data) == json.dumps(expected.data)
