"""The pure parts of the handlers: sleep computation, retry backoff, reminder text, target URL checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.handlers.reminders import reminder_message
from mcp_todo.handlers.scheduler import wait_seconds
from mcp_todo.handlers.targets import NotifyTargets, backoff_delays

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
