"""Recurrence in words (mcp_todo.domain.rrule_phrases): each phrase, the RRULE stored, and the dates it gives in three
zones across their DST changes."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from mcp_todo.domain import recurrence, rrule
from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.rrule_phrases import rule_from_words, rule_in_words

RULES = [
    ("daily", "FREQ=DAILY"),
    ("every day", "FREQ=DAILY"),
    ("every 3 days", "FREQ=DAILY;INTERVAL=3"),
    ("weekly", "FREQ=WEEKLY"),
    ("every other week", "FREQ=WEEKLY;INTERVAL=2"),
    ("fortnightly on friday", "FREQ=WEEKLY;INTERVAL=2;BYDAY=FR"),
    ("every weekday", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
    ("weekdays", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
    ("every weekend", "FREQ=WEEKLY;BYDAY=SA,SU"),
    ("every monday", "FREQ=WEEKLY;BYDAY=MO"),
    ("each tuesday", "FREQ=WEEKLY;BYDAY=TU"),
    ("every mon, wed and fri", "FREQ=WEEKLY;BYDAY=MO,WE,FR"),
    ("every 2 weeks on monday and thursday", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH"),
    ("weekly on sunday", "FREQ=WEEKLY;BYDAY=SU"),
    ("monthly", "FREQ=MONTHLY"),
    ("monthly on the last friday", "FREQ=MONTHLY;BYDAY=-1FR"),
    ("every first monday of the month", "FREQ=MONTHLY;BYDAY=1MO"),
    ("every 2 months on the 2nd tuesday", "FREQ=MONTHLY;INTERVAL=2;BYDAY=2TU"),
    ("every month on the 15th", "FREQ=MONTHLY;BYMONTHDAY=15"),
    ("monthly on the 1st and 15th", "FREQ=MONTHLY;BYMONTHDAY=1,15"),
    ("every month on the last day", "FREQ=MONTHLY;BYMONTHDAY=-1"),
    ("yearly", "FREQ=YEARLY"),
    ("every year on 29 feb", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"),
    ("yearly on march 3", "FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=3"),
    ("every 25 dec", "FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=25"),
    ("every day, 10 times", "FREQ=DAILY;COUNT=10"),
    ("every week until 2027-12-31", "FREQ=WEEKLY;UNTIL=20271231"),
    ("Every Weekday.", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
    ("FREQ=WEEKLY;BYDAY=MO", "FREQ=WEEKLY;BYDAY=MO"),
]


@pytest.mark.parametrize(("words", "rule"), RULES)
def test_words_become_the_rule(words: str, rule: str) -> None:
    assert rule_from_words(words) == rule
    rrule.describe_rule(rule)  # a rule the RRULE grammar accepts


def test_the_table_is_big_enough() -> None:
    assert len(RULES) >= 20


@pytest.mark.parametrize(
    ("zone", "start", "words", "dates"),
    [
        ("America/New_York", "2027-03-12T09:00", "every weekday", ["2027-03-15T09:00:00-04:00"]),
        ("Europe/Paris", "2027-03-26T09:00", "daily", ["2027-03-27T09:00:00+01:00", "2027-03-28T09:00:00+02:00"]),
        ("Australia/Sydney", "2027-04-03T09:00", "daily", ["2027-04-04T09:00:00+10:00"]),
        ("Europe/Paris", "2027-01-29T18:00", "monthly on the last friday", ["2027-02-26T18:00:00+01:00"]),
        ("America/New_York", "2028-02-29T08:00", "every year on 29 feb", ["2032-02-29T08:00:00-05:00"]),
    ],
)
def test_the_rule_keeps_the_wall_time_across_dst(zone: str, start: str, words: str, dates: list[str]) -> None:
    tz = ZoneInfo(zone)
    first = datetime.fromisoformat(start).replace(tzinfo=tz)
    upcoming = recurrence.next_occurrences(rule_from_words(words), first, tz, first, limit=len(dates))
    assert [d.isoformat() for d in upcoming] == dates


@pytest.mark.parametrize(
    "words", ["every blue moon", "monthly on monday", "every 0 days", "sometimes", "every week on the 15th", "weekly x"]
)
def test_anything_else_shows_the_rrule_form(words: str) -> None:
    with pytest.raises(InvalidRecurrenceRuleError) as caught:
        rule_from_words(words)
    assert "FREQ=" in caught.value.message and "every weekday" in caught.value.message


@pytest.mark.parametrize("day", ["tues", "thurs", "tuesdays", "mon"])
def test_a_long_list_of_days_is_read_in_linear_time(day: str) -> None:
    # "tues" and "thurs" each match the day pattern two ways ("tues" and "tue" + "s"): as one regex, a list of 24
    # of them with a bad end takes seconds, doubling with each day, and the longest list a rule allows (500
    # characters) never ends. Read item by item, the longest takes well under a millisecond of CPU time (the
    # thread's: a loaded machine's scheduler adds wall time to any call): 50 ms is room, not a measure.
    for ending in (" x", "", ", x", " and"):
        words = "every week on " + ", ".join([day] * 90)
        words = (words[: 500 - len(ending)].rsplit(",", 1)[0] + ending).strip()
        started = time.thread_time()
        try:
            rule = rule_from_words(words)
        except InvalidRecurrenceRuleError:
            assert ending
        else:
            assert not ending and rule == "FREQ=WEEKLY;BYDAY=" + {"tues": "TU", "thurs": "TH", "tuesdays": "TU"}.get(
                day, "MO"
            )
        assert time.thread_time() - started < 0.05, words


@pytest.mark.parametrize(
    ("words", "rule"),
    [
        ("every tues, thurs and sats", "FREQ=WEEKLY;BYDAY=TU,TH,SA"),
        ("every week on tuesdays & thursdays", "FREQ=WEEKLY;BYDAY=TU,TH"),
        ("every mon,wed, and fri", "FREQ=WEEKLY;BYDAY=MO,WE,FR"),
        ("weekly on mon and mon", "FREQ=WEEKLY;BYDAY=MO"),
    ],
)
def test_day_lists_read_item_by_item_mean_what_they_did(words: str, rule: str) -> None:
    assert rule_from_words(words) == rule


@pytest.mark.parametrize("words", ["every mon,, wed", "every mon and", "every mon x wed", "every , mon", "every s"])
def test_a_day_list_with_a_gap_or_a_stray_word_is_refused(words: str) -> None:
    with pytest.raises(InvalidRecurrenceRuleError):
        rule_from_words(words)


def test_the_reader_for_other_apps_answers_none_instead_of_refusing() -> None:
    assert rule_in_words("every monday and friday") == "FREQ=WEEKLY;BYDAY=MO,FR"
    assert rule_in_words("weekly") == "FREQ=WEEKLY"
    assert rule_in_words("every full moon") is None
    assert rule_in_words("every 0 days") is None
    # An RRULE or an over-long text is not words: rule_from_words passes them through, this reader does not.
    assert rule_in_words("FREQ=DAILY") is None
    assert rule_in_words("every " + "monday and " * 60) is None
