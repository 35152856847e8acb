"""Times in words that cannot be read for sure are refused, never guessed (mcp_todo.domain.phrases): a time part that
is no time ("13pm", "25:99"), two of them, an offset that is none, a month or year without its day, a year past
9998 — in three zones, at a pinned clock whose seconds are not zero (dateparser's guess was "that day at the current
clock time", which would show them). And the phrases near those rules still mean what they meant."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.phrases import read_phrase

ZONES = ("Europe/London", "America/Los_Angeles", "Pacific/Chatham")  # +00:00, -08:00 and +13:45 on that day
NOW_WALL = datetime(2027, 3, 10, 14, 23, 17)  # a Wednesday afternoon on the user's wall clock

# (phrase, what the refusal says): dateparser alone reads each as something, mostly as a day at the current clock time.
MALFORMED = [
    ("tomorrow 13pm", "'13pm' is not a time of day"),
    ("yesterday 25:99", "'25:99' is not a time of day"),
    ("today 99:99", "'99:99' is not a time of day"),
    ("tomorrow 0am", "'0am' is not a time of day"),
    ("monday 0pm", "'0pm' is not a time of day"),
    ("tomorrow 13:00pm", "'13:00pm' is not a time of day"),
    ("tomorrow 99am", "'99am' is not a time of day"),
    ("tomorrow 24:00", "'24:00' is not a time of day"),
    ("tomorrow 9:60", "'9:60' is not a time of day"),
    ("friday 23:60", "'23:60' is not a time of day"),
    ("tomorrow 9:30:61", "'9:30:61' is not a time of day"),
    ("tomorrow 11:59:60pm", "'11:59:60pm' is not a time of day"),
    ("tomorrow 009:00", "'009:00' is not a time of day"),
    ("tomorrow 9:5", "'9:5' is not a time of day"),
    ("tomorrow 1:2:3", "'1:2:3' is not a time of day"),
    ("today 12:00:00:00", "'12:00:00:00' is not a time of day"),
    ("at 25:00", "'25:00' is not a time of day"),
    ("tomorrow 9am 9am", "two times of day"),
    ("tomorrow 9am 5pm", "two times of day"),
    ("tomorrow 9 pm 10 pm", "two times of day"),
    ("tomorrow noon 3pm", "two times of day"),
    ("midnight 1am", "two times of day"),
    ("in 2 hours 9am", "a time of day ('9am') and a time from now"),
    ("tomorrow 9am +99:00", "'+99:00' is not a UTC offset"),
    ("tomorrow 9am -13:00", "'-13:00' is not a UTC offset"),
    ("tomorrow 9am +14:30", "'+14:30' is not a UTC offset"),
    ("tomorrow 9am +05:60", "'+05:60' is not a UTC offset"),
    ("tomorrow 9am gmt+15", "'+15' is not a UTC offset"),
    ("21:00 +25", "'+25' is not a UTC offset"),
    ("tomorrow 9am +5 +6", "two offsets"),
    ("friday +02:00", "needs a time before it"),
    ("tomorrow -5", "needs a time before it"),
    ("-1", "needs a time before it"),
    ("today 9am tomorrow", "two days"),
    ("friday monday 9am", "two days"),
    ("jan 32", "no day of the month"),
    ("december", "no day of the month"),
    ("sept", "no day of the month"),
    ("2028", "no day of the month"),
    ("jan 2028", "no day of the month"),
    ("december 9am", "no day of the month"),
    ("5 9am", "no day of the month"),
    ("jan 2028 5pm", "no day of the month"),
    ("next month on the 1st", "no day of the month"),
    ("the 1st", "no day of the month"),
    ("tomorrow 8.30pm", "'8.30pm' is not a time of day"),
    ("tomorrow 9h", "not a time it can read for sure"),
    ("tomorrow 7:00 am pm", "could not read the time '7:00 am' with the rest"),
    ("tomorrow 9am z+3", "could not read the time '9am' with the rest"),
    ("next december", "not a time it can read for sure"),
    ("dec 31 9999 23:59 -1200", "the year must be between 1970 and 9998"),
    ("dec 31 9998 23:59 -1200", "the year must be between 1970 and 9998"),
]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(("phrase", "says"), MALFORMED)
def test_a_phrase_whose_time_cannot_be_read_is_refused(zone: str, phrase: str, says: str) -> None:
    tz = ZoneInfo(zone)
    with pytest.raises(ValidationError) as caught:
        read_phrase(phrase, NOW_WALL.replace(tzinfo=tz), tz, field="due_date")
    message = caught.value.message
    assert message.startswith("due_date: ") and says in message, message
    assert f"in {phrase!r} — write a phrase such as 'tomorrow 9am'" in message and "\n" not in message


def test_the_malformed_table_is_big_enough() -> None:
    assert len(MALFORMED) >= 40


# (phrase, the wall time it means on every zone's wall at NOW_WALL): near the rules above, and read as before.
GOOD_WALL = [
    ("tomorrow 9am", "2027-03-11 09:00:00"),
    ("tomorrow 12am", "2027-03-11 00:00:00"),
    ("tomorrow 12pm", "2027-03-11 12:00:00"),
    ("tomorrow 12:30am", "2027-03-11 00:30:00"),
    ("tomorrow 00:00", "2027-03-11 00:00:00"),
    ("tomorrow 23:59:59", "2027-03-11 23:59:59"),
    ("tomorrow 9 a.m.", "2027-03-11 09:00:00"),
    ("tomorrow 9 pm", "2027-03-11 21:00:00"),
    ("tomorrow 9:30:15", "2027-03-11 09:30:15"),
    ("friday at 5pm", "2027-03-12 17:00:00"),
    ("at 5pm", "2027-03-10 17:00:00"),
    ("21:00", "2027-03-10 21:00:00"),
    ("noon", "2027-03-11 12:00:00"),
    ("midnight", "2027-03-11 00:00:00"),
    ("tomorrow noon", "2027-03-11 12:00:00"),
    ("jan 5 9am", "2028-01-05 09:00:00"),
    ("5 jan 9am", "2028-01-05 09:00:00"),
    ("dec 25 2027 9am", "2027-12-25 09:00:00"),
    ("1 jan 2028 00:00", "2028-01-01 00:00:00"),
    ("dec 31 9998 9am", "9998-12-31 09:00:00"),
    ("next month", "2027-04-10 23:59:59"),
    ("next month 9am", "2027-04-10 09:00:00"),
    ("in 2 months", "2027-05-10 23:59:59"),
    ("next year", "2028-03-10 23:59:59"),
    ("this month", "2027-03-10 23:59:59"),
    ("last month", "2027-02-10 23:59:59"),
    ("a month from now", "2027-04-10 23:59:59"),
    ("2 years ago", "2025-03-10 23:59:59"),
    ("in a year", "2028-03-10 23:59:59"),
    ("next week 9am", "2027-03-17 09:00:00"),
    ("in 2 days 9am", "2027-03-12 09:00:00"),
    ("3 days ago 9am", "2027-03-07 09:00:00"),
    ("yesterday 5pm", "2027-03-09 17:00:00"),
    ("now", "2027-03-10 14:23:17"),
    ("2 hours", "2027-03-10 16:23:17"),
    ("2027-04-01 10:00", "2027-04-01 10:00:00"),
    ("dec 31 11:59pm", "2027-12-31 23:59:00"),
]

# (phrase, the instant it means in UTC, whatever the user's zone): a phrase with an offset or a zone of its own.
GOOD_INSTANT = [
    ("tomorrow 9am +05:30", "2027-03-11T03:30:00+00:00"),
    ("tomorrow 9am +0530", "2027-03-11T03:30:00+00:00"),
    ("tomorrow 9am -05:00", "2027-03-11T14:00:00+00:00"),
    ("tomorrow 9am utc", "2027-03-11T09:00:00+00:00"),
    ("tomorrow 9am z", "2027-03-11T09:00:00+00:00"),
    ("tomorrow 9am utc+5", "2027-03-11T04:00:00+00:00"),
    ("tomorrow 9am gmt-3", "2027-03-11T12:00:00+00:00"),
    ("tomorrow 9am pst", "2027-03-11T17:00:00+00:00"),
    ("tomorrow 9am +14:00", "2027-03-10T19:00:00+00:00"),
    ("tomorrow 9am -12:00", "2027-03-11T21:00:00+00:00"),
    ("dec 31 9998 11am +12:00", "9998-12-30T23:00:00+00:00"),
]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(("phrase", "wall"), GOOD_WALL)
def test_a_clear_phrase_still_means_its_wall_time(zone: str, phrase: str, wall: str) -> None:
    tz = ZoneInfo(zone)
    moment = read_phrase(phrase, NOW_WALL.replace(tzinfo=tz), tz, field="due_date").moment(tz)
    assert moment.strftime("%Y-%m-%d %H:%M:%S") == wall


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(("phrase", "instant"), GOOD_INSTANT)
def test_a_clear_phrase_with_an_offset_still_means_its_instant(zone: str, phrase: str, instant: str) -> None:
    tz = ZoneInfo(zone)
    moment = read_phrase(phrase, NOW_WALL.replace(tzinfo=tz), tz, field="due_date").moment(tz)
    assert moment.astimezone(UTC).isoformat() == instant and moment.tzinfo == tz
