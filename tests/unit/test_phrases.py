"""Times in the user's words (mcp_todo.domain.phrases), table-driven, with pinned clocks, in three zones and on the
days around their DST changes."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.phrases import read_phrase, trailing_time
from mcp_todo.service.inputs import time_words

ZONES = ("Europe/Paris", "America/New_York", "Australia/Sydney")
NOW_WALL = datetime(2027, 3, 10, 14, 0)  # a Wednesday, 14:00 on the user's wall clock

# (phrase, the wall time it means at NOW_WALL): the same on every zone's wall; a date alone is the end of that day.
PHRASES = [
    ("tomorrow 9am", "2027-03-11 09:00:00"),
    ("next friday", "2027-03-12 23:59:59"),
    ("in 2 hours", "2027-03-10 16:00:00"),
    ("end of month", "2027-03-31 23:59:59"),
    ("monday 14:30", "2027-03-15 14:30:00"),
    ("25 dec", "2027-12-25 23:59:59"),
    ("tomorrow", "2027-03-11 23:59:59"),
    ("today", "2027-03-10 23:59:59"),
    ("tonight", "2027-03-10 20:00:00"),
    ("tomorrow morning", "2027-03-11 09:00:00"),
    ("tomorrow noon", "2027-03-11 12:00:00"),
    ("noon", "2027-03-11 12:00:00"),
    ("midnight", "2027-03-11 00:00:00"),
    ("9am", "2027-03-11 09:00:00"),
    ("9 pm", "2027-03-10 21:00:00"),
    ("21:00", "2027-03-10 21:00:00"),
    ("6:30pm", "2027-03-10 18:30:00"),
    ("friday", "2027-03-12 23:59:59"),
    ("this friday", "2027-03-12 23:59:59"),
    ("friday at 5pm", "2027-03-12 17:00:00"),
    ("fri 5pm", "2027-03-12 17:00:00"),
    ("next monday", "2027-03-15 23:59:59"),
    ("next monday 8:00", "2027-03-15 08:00:00"),
    ("next tuesday 10am", "2027-03-16 10:00:00"),
    ("thursday 2pm", "2027-03-11 14:00:00"),
    ("wednesday", "2027-03-17 23:59:59"),
    ("sunday", "2027-03-14 23:59:59"),
    ("saturday 10:00", "2027-03-13 10:00:00"),
    ("in 30 minutes", "2027-03-10 14:30:00"),
    ("in 90 minutes", "2027-03-10 15:30:00"),
    ("in an hour", "2027-03-10 15:00:00"),
    ("in 1 hour 30 minutes", "2027-03-10 15:30:00"),
    ("in 3 hours", "2027-03-10 17:00:00"),
    ("in 3 days", "2027-03-13 23:59:59"),
    ("in 2 weeks", "2027-03-24 23:59:59"),
    ("in 1 week", "2027-03-17 23:59:59"),
    ("next week", "2027-03-17 23:59:59"),
    ("next month", "2027-04-10 23:59:59"),
    ("end of week", "2027-03-14 23:59:59"),
    ("end of next week", "2027-03-21 23:59:59"),
    ("end of the month", "2027-03-31 23:59:59"),
    ("end of next month", "2027-04-30 23:59:59"),
    ("end of year", "2027-12-31 23:59:59"),
    ("end of day", "2027-03-10 23:59:59"),
    ("end of today", "2027-03-10 23:59:59"),
    ("dec 25", "2027-12-25 23:59:59"),
    ("december 25", "2027-12-25 23:59:59"),
    ("25 december 2027", "2027-12-25 23:59:59"),
    ("25 dec 2028", "2028-12-25 23:59:59"),
    ("1 jan", "2028-01-01 23:59:59"),
    ("jan 1 9am", "2028-01-01 09:00:00"),
    ("march 31", "2027-03-31 23:59:59"),
    ("31 march 18:00", "2027-03-31 18:00:00"),
    ("29 feb", "2028-02-29 23:59:59"),
    ("april 1", "2027-04-01 23:59:59"),
    ("2027-04-01", "2027-04-01 23:59:59"),
    ("2027-04-01 10:00", "2027-04-01 10:00:00"),
    ("2027-04-01T10:00", "2027-04-01 10:00:00"),
    ("the day after tomorrow", "2027-03-12 23:59:59"),
    ("yesterday", "2027-03-09 23:59:59"),
    ("last friday", "2027-03-05 23:59:59"),
    ("on friday", "2027-03-12 23:59:59"),
    ("at 5pm", "2027-03-10 17:00:00"),
    ("by friday", "2027-03-12 23:59:59"),
    ("tomorrow 23:59", "2027-03-11 23:59:00"),
    ("today 18:00", "2027-03-10 18:00:00"),
    ("monday 9am", "2027-03-15 09:00:00"),
    ("dec 31 11:59pm", "2027-12-31 23:59:00"),
    ("in 10 minutes", "2027-03-10 14:10:00"),
    ("in 2 days", "2027-03-12 23:59:59"),
]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(("phrase", "wall"), PHRASES)
def test_a_phrase_means_the_same_wall_time_in_every_zone(zone: str, phrase: str, wall: str) -> None:
    tz = ZoneInfo(zone)
    moment = read_phrase(phrase, NOW_WALL.replace(tzinfo=tz), tz, field="due_date").moment(tz)
    assert moment.strftime("%Y-%m-%d %H:%M:%S") == wall
    assert moment.utcoffset() == datetime.fromisoformat(wall).replace(tzinfo=tz).utcoffset()


def test_the_table_is_big_enough() -> None:
    assert len(PHRASES) >= 60


# (zone, the wall clock now, phrase, the instant meant): hours count real time across a change; a wall time a change
# skips moves forward by the gap; one it repeats is its first occurrence.
DST = [
    ("America/New_York", "2027-03-13T23:30", "in 3 hours", "2027-03-14T03:30:00-04:00"),
    ("America/New_York", "2027-03-13T23:30", "tomorrow 2:30am", "2027-03-14T03:30:00-04:00"),
    ("America/New_York", "2027-03-13T23:30", "tomorrow 9am", "2027-03-14T09:00:00-04:00"),
    ("America/New_York", "2027-03-13T12:00", "in 24 hours", "2027-03-14T13:00:00-04:00"),
    ("America/New_York", "2027-03-13T12:00", "tomorrow noon", "2027-03-14T12:00:00-04:00"),
    ("America/New_York", "2027-11-06T23:00", "in 3 hours", "2027-11-07T01:00:00-05:00"),
    ("Europe/Paris", "2027-03-27T22:00", "in 5 hours", "2027-03-28T04:00:00+02:00"),
    ("Europe/Paris", "2027-03-27T22:00", "tomorrow 2:30am", "2027-03-28T03:30:00+02:00"),
    ("Europe/Paris", "2027-03-27T22:00", "end of month", "2027-03-31T23:59:59+02:00"),
    ("Europe/Paris", "2027-10-30T23:00", "in 4 hours", "2027-10-31T02:00:00+01:00"),
    ("Australia/Sydney", "2027-04-03T23:00", "in 4 hours", "2027-04-04T02:00:00+10:00"),
    ("Australia/Sydney", "2027-04-03T23:00", "tomorrow 2:30am", "2027-04-04T02:30:00+11:00"),
    ("Australia/Sydney", "2027-04-03T23:00", "tomorrow 9am", "2027-04-04T09:00:00+10:00"),
    ("Asia/Kolkata", "2027-03-10T14:00", "in 2 hours", "2027-03-10T16:00:00+05:30"),
]


@pytest.mark.parametrize(("zone", "now", "phrase", "meant"), DST)
def test_phrases_around_dst_changes(zone: str, now: str, phrase: str, meant: str) -> None:
    tz = ZoneInfo(zone)
    moment = read_phrase(phrase, datetime.fromisoformat(now).replace(tzinfo=tz), tz, field="due_date").moment(tz)
    assert moment.isoformat() == meant


@pytest.mark.parametrize(
    ("phrase", "says"),
    [
        ("tomorrow at 9", "morning or evening"),
        ("friday 5", "morning or evening"),
        ("7", "morning or evening"),
        ("03/04", "day/month or month/day"),
        ("12.05.2027", "day/month or month/day"),
        ("buy milk friday", "not a time it can read"),
        ("friday xyz", "not a time it can read"),
        ("someday", "not a time it can read"),
        ("", "no time"),
        ("\uff12\uff10\uff12\uff17-\uff10\uff11-\uff10\uff11", "digits 0-9"),
    ],
)
def test_what_could_be_read_two_ways_is_refused_with_an_iso_example(phrase: str, says: str) -> None:
    tz = ZoneInfo("Europe/Paris")
    with pytest.raises(ValidationError) as caught:
        read_phrase(phrase, NOW_WALL.replace(tzinfo=tz), tz, field="due_date")
    assert says in caught.value.message and "2027-03-12T09:00" in caught.value.message
    assert caught.value.message.startswith("due_date: ")


def test_iso_passes_through_and_a_phrase_becomes_iso_the_service_reads() -> None:
    now = datetime(2027, 3, 10, 13, 0, tzinfo=ZoneInfo("UTC"))
    assert time_words("2027-03-12T09:00", now=now, time_zone="Europe/Paris", field="due_date")[0] == "2027-03-12T09:00"
    text, moment = time_words("tomorrow 9am", now=now, time_zone="Europe/Paris", field="due_date")
    assert text == "2027-03-11T09:00:00" and moment.isoformat() == "2027-03-11T09:00:00+01:00"
    assert time_words("friday", now=now, time_zone="Europe/Paris", field="due_date")[0] == "2027-03-12"


@pytest.mark.parametrize(
    ("text", "rest", "at"),
    [
        ("every monday at 8pm", "every monday", time(20)),
        ("every weekday at 9:30am", "every weekday", time(9, 30)),
        ("weekly 7 am", "weekly", time(7)),
        ("tomorrow 18:30", "tomorrow", time(18, 30)),
        ("at noon", "", time(12)),
        ("18:30", "", time(18, 30)),
        ("every day at 13pm", "every day at 13pm", None),  # a time that names none: left for the reader to refuse
        ("every day at 9", "every day at 9", None),  # morning or evening: not a time
        ("9am every day", "9am every day", None),  # not at the end
        ("every 15th", "every 15th", None),
    ],
)
def test_the_trailing_time_is_read_by_the_clock_grammar(text: str, rest: str, at: time | None) -> None:
    assert trailing_time(text) == (rest, at)
