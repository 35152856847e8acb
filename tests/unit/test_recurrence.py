"""Recurrence rules: what is accepted, how a series expands in its zone, and that no rule can make a call slow."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.recurrence import first_day, next_occurrence, next_occurrences, series_dtstart, validate_rule
from mcp_todo.domain.rrule import MAX_RULE_LENGTH, describe_rule, normalize_rule, parse_rule
from mcp_todo.domain.times import localize

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")
ZONES = [NEW_YORK, LONDON, SYDNEY, KOLKATA]
SECOND = timedelta(seconds=1)


def at(zone: ZoneInfo, *parts: int) -> datetime:
    return localize(datetime(*parts), zone)  # type: ignore[arg-type]  # year, month, day, ... as ints


def walls(results: list[datetime], zone: ZoneInfo) -> list[datetime]:
    return [r.astimezone(zone).replace(tzinfo=None) for r in results]


def series(rule: str, start: datetime, zone: ZoneInfo, limit: int = 100) -> list[datetime]:
    """The whole series from its start (occurrence 1 included), as far as the ten-year horizon."""
    return next_occurrences(rule, start, zone, start - SECOND, limit=limit)


def hours(dt: datetime) -> float:
    offset = dt.utcoffset()
    assert offset is not None
    return offset / timedelta(hours=1)


# --- DST: wall-clock time is kept --------------------------------------------------------------------------------

# (zone, a day three days before a transition, hours offset before, hours offset after)
TRANSITIONS = [
    (NEW_YORK, date(2027, 3, 11), -5, -4),
    (NEW_YORK, date(2027, 11, 4), -4, -5),
    (LONDON, date(2027, 3, 25), 0, 1),
    (LONDON, date(2027, 10, 28), 1, 0),
    (SYDNEY, date(2027, 4, 1), 11, 10),
    (SYDNEY, date(2027, 9, 30), 10, 11),
    (KOLKATA, date(2027, 3, 25), 5.5, 5.5),
]


@pytest.mark.parametrize(("zone", "first_day", "offset_before", "offset_after"), TRANSITIONS)
def test_daily_at_nine_stays_at_nine_across_dst(
    zone: ZoneInfo, first_day: date, offset_before: float, offset_after: float
) -> None:
    start = localize(datetime.combine(first_day, datetime.min.time()).replace(hour=9), zone)
    found = series("FREQ=DAILY", start, zone, limit=7)
    assert [w.time() for w in walls(found, zone)] == [start.replace(tzinfo=None).time()] * 7
    assert [w.date() for w in walls(found, zone)] == [first_day + timedelta(days=i) for i in range(7)]
    assert hours(found[0]) == offset_before
    assert hours(found[-1]) == offset_after


@pytest.mark.parametrize(
    ("zone", "start", "gap_day", "moved_to"),
    [
        (NEW_YORK, datetime(2027, 3, 12, 2, 30), date(2027, 3, 14), datetime(2027, 3, 14, 3, 30)),
        (LONDON, datetime(2027, 3, 26, 1, 30), date(2027, 3, 28), datetime(2027, 3, 28, 2, 30)),
        (SYDNEY, datetime(2027, 10, 1, 2, 30), date(2027, 10, 3), datetime(2027, 10, 3, 3, 30)),
    ],
)
def test_an_occurrence_in_the_spring_gap_moves_forward_by_the_gap(
    zone: ZoneInfo, start: datetime, gap_day: date, moved_to: datetime
) -> None:
    found = walls(series("FREQ=DAILY", localize(start, zone), zone, limit=4), zone)
    assert found[2] == moved_to
    # and the day after is back at the usual time
    assert found[3] == start.replace(day=gap_day.day + 1)


@pytest.mark.parametrize(
    ("zone", "start", "ambiguous", "first_offset"),
    [
        (NEW_YORK, datetime(2027, 11, 5, 1, 30), datetime(2027, 11, 7, 1, 30), -4),
        (LONDON, datetime(2027, 10, 29, 1, 30), datetime(2027, 10, 31, 1, 30), 1),
        (SYDNEY, datetime(2027, 4, 2, 2, 30), datetime(2027, 4, 4, 2, 30), 11),
    ],
)
def test_an_ambiguous_occurrence_takes_the_first(
    zone: ZoneInfo, start: datetime, ambiguous: datetime, first_offset: float
) -> None:
    found = series("FREQ=DAILY", localize(start, zone), zone, limit=4)
    assert walls(found, zone)[2] == ambiguous
    assert hours(found[2]) == first_offset
    # the next day's 01:30 comes after the repeated hour
    assert found[3].astimezone(UTC) - found[2].astimezone(UTC) == timedelta(hours=25)


def test_a_series_starting_on_the_second_of_a_repeated_hour_keeps_its_start_then_takes_the_first() -> None:
    second_0130 = datetime(2027, 11, 7, 6, 30, tzinfo=UTC).astimezone(NEW_YORK)  # 01:30 EST, fold=1
    found = series("FREQ=YEARLY;BYMONTH=11;BYDAY=1SU", second_0130, NEW_YORK, limit=2)
    assert found[0] == second_0130
    assert found[1].isoformat() == "2028-11-05T01:30:00-04:00"


def test_results_are_in_the_task_zone() -> None:
    start = datetime(2027, 1, 4, 14, tzinfo=UTC)  # 09:00 in New York
    found = next_occurrences("FREQ=WEEKLY", start, "America/New_York", start, limit=1)
    assert found[0].tzinfo == NEW_YORK
    assert found[0].isoformat() == "2027-01-11T09:00:00-05:00"


# --- month ends, leap days, weekdays ----------------------------------------------------------------------------


# (rule, series start, its zone, whether the start itself is listed, the dates of the first occurrences listed)
OCCURRENCE_DATES = [
    pytest.param(
        "FREQ=MONTHLY;BYMONTHDAY=31",
        at(LONDON, 2027, 1, 31, 9),
        LONDON,
        True,
        [
            date(2027, 1, 31),
            date(2027, 3, 31),
            date(2027, 5, 31),
            date(2027, 7, 31),
            date(2027, 8, 31),
            date(2027, 10, 31),
        ],
        id="bymonthday_31_skips_months_without_a_31st",
    ),
    pytest.param(
        "FREQ=MONTHLY",
        at(LONDON, 2027, 1, 31, 9),
        LONDON,
        True,
        [date(2027, 1, 31), date(2027, 3, 31), date(2027, 5, 31)],
        id="monthly_from_the_31st_without_bymonthday_skips_short_months_too",
    ),
    pytest.param(
        "FREQ=MONTHLY;BYMONTHDAY=-1",
        at(NEW_YORK, 2027, 12, 31, 18),
        NEW_YORK,
        True,
        [date(2027, 12, 31), date(2028, 1, 31), date(2028, 2, 29), date(2028, 3, 31), date(2028, 4, 30)],
        id="bymonthday_minus_one_is_every_last_day",
    ),
    pytest.param(
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR",
        at(LONDON, 2027, 3, 8, 9),  # Monday
        LONDON,
        True,
        [date(2027, 3, 8), date(2027, 3, 12), date(2027, 3, 22), date(2027, 3, 26)],
        id="weekly_on_several_days_every_other_week",
    ),
    pytest.param(
        "FREQ=MONTHLY;BYDAY=MO,1FR",
        at(KOLKATA, 2027, 3, 1, 9),  # Monday
        KOLKATA,
        True,
        [date(2027, 3, 1), date(2027, 3, 5), date(2027, 3, 8), date(2027, 3, 15), date(2027, 3, 22), date(2027, 3, 29)],
        id="plain_and_ordinal_weekdays_are_a_union",
    ),
    pytest.param(
        "FREQ=MONTHLY;BYDAY=-1FR",
        at(NEW_YORK, 2027, 3, 1, 9),
        NEW_YORK,
        False,
        [date(2027, 3, 26), date(2027, 4, 30), date(2027, 5, 28), date(2027, 6, 25), date(2027, 7, 30)],
        id="monthly_on_the_last_friday",
    ),
    pytest.param(
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        at(LONDON, 2027, 1, 1, 17),
        LONDON,
        False,
        [date(2027, 1, 29), date(2027, 2, 26), date(2027, 3, 31)],
        id="monthly_on_the_last_weekday",
    ),
]


@pytest.mark.parametrize(("rule", "start", "zone", "with_start", "expected"), OCCURRENCE_DATES)
def test_occurrence_dates(rule: str, start: datetime, zone: ZoneInfo, with_start: bool, expected: list[date]) -> None:
    after = start - SECOND if with_start else start
    found = walls(next_occurrences(rule, start, zone, after, limit=len(expected)), zone)
    assert [w.date() for w in found] == expected


def test_yearly_from_february_29_comes_back_every_four_years() -> None:
    start = at(SYDNEY, 2028, 2, 29, 9)
    found = walls(series("FREQ=YEARLY", start, SYDNEY, limit=3), SYDNEY)
    assert [w.date() for w in found] == [date(2028, 2, 29), date(2032, 2, 29), date(2036, 2, 29)]
    assert next_occurrence("FREQ=YEARLY", start, SYDNEY, start, start + timedelta(hours=1)) == at(
        SYDNEY, 2032, 2, 29, 9
    )


def test_weekly_on_monday() -> None:
    start = at(NEW_YORK, 2027, 3, 8, 9)  # a Monday
    found = walls(next_occurrences("FREQ=WEEKLY;BYDAY=MO", start, NEW_YORK, start, limit=3), NEW_YORK)
    assert found == [datetime(2027, 3, 15, 9), datetime(2027, 3, 22, 9), datetime(2027, 3, 29, 9)]


# --- DTSTART, COUNT, UNTIL --------------------------------------------------------------------------------------


def test_count_3_is_three_in_total_including_the_start() -> None:
    start = at(NEW_YORK, 2027, 3, 10, 9)
    found = series("FREQ=DAILY;COUNT=3", start, NEW_YORK)
    assert walls(found, NEW_YORK) == [datetime(2027, 3, 10, 9), datetime(2027, 3, 11, 9), datetime(2027, 3, 12, 9)]
    assert next_occurrences("FREQ=DAILY;COUNT=3", start, NEW_YORK, found[-1]) == []


def test_a_start_that_does_not_match_the_rule_is_occurrence_one() -> None:
    start = at(NEW_YORK, 2027, 3, 10, 9)  # a Wednesday
    found = series("FREQ=WEEKLY;BYDAY=MO;COUNT=3", start, NEW_YORK)
    assert walls(found, NEW_YORK) == [datetime(2027, 3, 10, 9), datetime(2027, 3, 15, 9), datetime(2027, 3, 22, 9)]


def test_a_start_that_matches_the_rule_is_not_counted_twice() -> None:
    start = at(NEW_YORK, 2027, 3, 15, 9)  # a Monday
    found = series("FREQ=WEEKLY;BYDAY=MO;COUNT=3", start, NEW_YORK)
    assert walls(found, NEW_YORK) == [datetime(2027, 3, 15, 9), datetime(2027, 3, 22, 9), datetime(2027, 3, 29, 9)]


def test_count_1_is_just_the_start() -> None:
    start = at(LONDON, 2027, 3, 10, 9)
    assert series("FREQ=DAILY;COUNT=1", start, LONDON) == [start]
    assert next_occurrence("FREQ=DAILY;COUNT=1", start, LONDON, start, start) is None


def test_a_date_only_until_is_read_in_the_zone_and_includes_that_day() -> None:
    start = at(NEW_YORK, 2027, 3, 12, 23, 30)
    found = walls(series("FREQ=DAILY;UNTIL=20270315", start, NEW_YORK), NEW_YORK)
    assert found[-1] == datetime(2027, 3, 15, 23, 30)  # 03:30 UTC the next day, still the 15th in New York
    assert len(found) == 4


def test_a_floating_until_is_wall_time_in_the_zone() -> None:
    start = at(SYDNEY, 2027, 3, 12, 9)
    assert walls(series("FREQ=DAILY;UNTIL=20270315T090000", start, SYDNEY), SYDNEY)[-1] == datetime(2027, 3, 15, 9)
    assert walls(series("FREQ=DAILY;UNTIL=20270315T085959", start, SYDNEY), SYDNEY)[-1] == datetime(2027, 3, 14, 9)


def test_a_utc_until_is_that_instant() -> None:
    start = at(NEW_YORK, 2027, 3, 12, 9)  # 09:00 EDT on the 15th is 13:00 UTC
    assert walls(series("FREQ=DAILY;UNTIL=20270315T130000Z", start, NEW_YORK), NEW_YORK)[-1].day == 15
    assert walls(series("FREQ=DAILY;UNTIL=20270315T125959Z", start, NEW_YORK), NEW_YORK)[-1].day == 14


def test_an_until_before_the_start_leaves_just_the_start() -> None:
    start = at(LONDON, 2027, 3, 12, 9)
    assert series("FREQ=DAILY;UNTIL=20270101", start, LONDON) == [start]


# --- completing an occurrence -----------------------------------------------------------------------------------


def test_a_prompt_completion_gives_the_next_occurrence() -> None:
    start = at(NEW_YORK, 2027, 3, 1, 9)
    assert next_occurrence("FREQ=DAILY", start, NEW_YORK, start, start - timedelta(hours=3)) == at(
        NEW_YORK, 2027, 3, 2, 9
    )


def test_a_completion_three_periods_late_skips_to_the_first_occurrence_after_it() -> None:
    start = at(NEW_YORK, 2027, 3, 1, 9)  # Monday
    completed = at(NEW_YORK, 2027, 3, 24, 10)  # three weeks later, a Wednesday
    assert next_occurrence("FREQ=WEEKLY", start, NEW_YORK, start, completed) == at(NEW_YORK, 2027, 3, 29, 9)


def test_late_completion_counts_the_skipped_occurrences_toward_count() -> None:
    start = at(NEW_YORK, 2027, 3, 1, 9)
    rule = "FREQ=WEEKLY;COUNT=4"  # 1, 8, 15, 22 March
    assert next_occurrence(rule, start, NEW_YORK, start, at(NEW_YORK, 2027, 3, 10, 9)) == at(NEW_YORK, 2027, 3, 15, 9)
    assert next_occurrence(rule, start, NEW_YORK, start, at(NEW_YORK, 2027, 3, 22, 9, 30)) is None


def test_a_completion_exactly_at_the_next_occurrence_moves_past_it() -> None:
    start = at(LONDON, 2027, 3, 1, 9)
    assert next_occurrence("FREQ=DAILY", start, LONDON, start, at(LONDON, 2027, 3, 2, 9)) == at(LONDON, 2027, 3, 3, 9)


def test_an_occurrence_in_the_middle_of_a_series() -> None:
    start = at(KOLKATA, 2027, 1, 1, 9)
    due = at(KOLKATA, 2029, 6, 1, 9)
    assert next_occurrence("FREQ=MONTHLY", start, KOLKATA, due, due) == at(KOLKATA, 2029, 7, 1, 9)
    # June 2029 is occurrence 30
    assert next_occurrence("FREQ=MONTHLY;COUNT=31", start, KOLKATA, due, due) == at(KOLKATA, 2029, 7, 1, 9)
    assert next_occurrence("FREQ=MONTHLY;COUNT=30", start, KOLKATA, due, due) is None


# --- normalize / validate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_rule", "normalized"),
    [
        ("FREQ=WEEKLY;BYDAY=MO;COUNT=3", "FREQ=WEEKLY;BYDAY=MO;COUNT=3"),
        ("RRULE:FREQ=DAILY", "FREQ=DAILY"),
        ("rrule:freq=weekly;byday=mo,we", "FREQ=WEEKLY;BYDAY=MO,WE"),
        ("  FREQ = DAILY ; COUNT = 3  ", "FREQ=DAILY;COUNT=3"),
        ("INTERVAL=2;FREQ=DAILY", "FREQ=DAILY;INTERVAL=2"),
        ("FREQ=MONTHLY;BYDAY=+1MO;INTERVAL=02", "FREQ=MONTHLY;BYDAY=1MO;INTERVAL=2"),
        ("FREQ=MONTHLY;BYMONTHDAY=+5,-1,5", "FREQ=MONTHLY;BYMONTHDAY=5,-1"),
        ("FREQ=DAILY;UNTIL=2027-03-10", "FREQ=DAILY;UNTIL=20270310"),
        ("FREQ=DAILY;UNTIL=2027-03-10T09:00:00Z", "FREQ=DAILY;UNTIL=20270310T090000Z"),
        ("FREQ=DAILY;UNTIL=20270310T0900", "FREQ=DAILY;UNTIL=20270310T090000"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;WKST=su", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;WKST=SU"),
    ],
)
def test_normalize_rule(given_rule: str, normalized: str) -> None:
    assert normalize_rule(given_rule) == normalized
    assert normalize_rule(normalized) == normalized


REJECTED = [
    ("FREQ=HOURLY", "FREQ=HOURLY is not supported"),
    ("FREQ=MINUTELY", "FREQ=MINUTELY is not supported"),
    ("FREQ=SECONDLY", "FREQ=SECONDLY is not supported"),
    ("FREQ=FORTNIGHTLY", "FREQ=FORTNIGHTLY is not supported"),
    ("FREQ=DAILY;BYHOUR=9", "BYHOUR is not supported"),
    ("FREQ=DAILY;BYMINUTE=30", "BYMINUTE is not supported"),
    ("FREQ=DAILY;BYSECOND=0", "BYSECOND is not supported"),
    ("FREQ=YEARLY;BYWEEKNO=20", "BYWEEKNO is not supported"),
    ("FREQ=YEARLY;BYYEARDAY=100", "BYYEARDAY is not supported"),
    ("FREQ=DAILY;X-NAME=1", "X-NAME is not supported"),
    ("FREQ=DAILY;COLOR=red", "'COLOR' is not a recurrence rule part"),
    ("FREQ=DAILY;FREQ=WEEKLY", "FREQ appears more than once"),
    ("FREQ=DAILY;COUNT=2;COUNT=3", "COUNT appears more than once"),
    ("FREQ=DAILY;;COUNT=3", "empty part"),
    ("FREQ=DAILY;", "empty part"),
    (";FREQ=DAILY", "empty part"),
    ("", "the rule is empty"),
    ("   ", "the rule is empty"),
    ("RRULE:", "the rule is empty"),
    ("FREQ", "is not KEY=VALUE"),
    ("FREQ=", "is not KEY=VALUE"),
    ("INTERVAL=2", "FREQ is missing"),
    ("FREQ=DAILY;INTERVAL=0", "INTERVAL=0 is not valid"),
    ("FREQ=DAILY;INTERVAL=1001", "INTERVAL=1001 is not valid"),
    ("FREQ=DAILY;INTERVAL=two", "INTERVAL=TWO is not valid"),
    ("FREQ=DAILY;INTERVAL=1.5", "INTERVAL=1.5 is not valid"),
    ("FREQ=DAILY;COUNT=0", "COUNT=0 is not valid"),
    ("FREQ=DAILY;COUNT=1001", "COUNT=1001 is not valid"),
    ("FREQ=DAILY;COUNT=3;UNTIL=20270310", "COUNT and UNTIL cannot both be given"),
    ("FREQ=WEEKLY;BYDAY=1MO", "ordinals such as 1MO or -1FR need FREQ=MONTHLY or YEARLY, not WEEKLY"),
    ("FREQ=DAILY;BYDAY=-1FR", "need FREQ=MONTHLY or YEARLY, not DAILY"),
    ("FREQ=MONTHLY;BYDAY=6MO", "within a month must be 1..5"),
    ("FREQ=YEARLY;BYMONTH=3;BYDAY=-6FR", "within a month must be 1..5"),
    ("FREQ=YEARLY;BYDAY=54MO", "BYDAY=54MO is not valid"),
    ("FREQ=YEARLY;BYDAY=0MO", "BYDAY=0MO is not valid"),
    ("FREQ=MONTHLY;BYDAY=MON", "BYDAY=MON is not valid"),
    ("FREQ=MONTHLY;BYDAY=MO,,TU", "BYDAY=MO,,TU is not valid"),
    ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY=0 is not valid"),
    ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY=32 is not valid"),
    ("FREQ=MONTHLY;BYMONTHDAY=-32", "BYMONTHDAY=-32 is not valid"),
    ("FREQ=YEARLY;BYMONTH=0", "BYMONTH=0 is not valid"),
    ("FREQ=YEARLY;BYMONTH=13", "BYMONTH=13 is not valid"),
    ("FREQ=YEARLY;BYMONTH=-1", "BYMONTH=-1 is not valid"),
    ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=0", "BYSETPOS=0 is not valid"),
    ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=367", "BYSETPOS=367 is not valid"),
    ("FREQ=MONTHLY;BYSETPOS=1", "BYSETPOS needs BYDAY, BYMONTHDAY or BYMONTH"),
    ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY cannot be used with FREQ=WEEKLY"),
    ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL=TOMORROW is not a date"),
    ("FREQ=DAILY;UNTIL=20271340", "UNTIL=20271340 is not a date"),
    ("FREQ=DAILY;UNTIL=20270310T250000Z", "UNTIL=20270310T250000Z is not a date"),
    ("FREQ=DAILY;UNTIL=19000101", "UNTIL=19000101 is out of range"),
    ("FREQ=DAILY;WKST=XX", "WKST=XX is not a two-letter day"),
    ("DTSTART:20270101T090000\nRRULE:FREQ=DAILY", "is not a recurrence rule part"),
    ("FREQ=DAILY;BYMONTHDAY=" + ",".join(["1"] * 250), "longer than 500 characters"),
]


@pytest.mark.parametrize(("rule", "problem"), REJECTED)
def test_unsupported_rules_say_what_is_wrong_and_what_is_supported(rule: str, problem: str) -> None:
    with pytest.raises(InvalidRecurrenceRuleError) as caught:
        normalize_rule(rule)
    message = caught.value.message
    assert problem in message
    assert "Supported: FREQ=DAILY|WEEKLY|MONTHLY|YEARLY" in message
    assert caught.value.render().startswith("INVALID_RECURRENCE_RULE: ")
    assert len(message) < 1000


def test_the_length_limit_is_500() -> None:
    assert MAX_RULE_LENGTH == 500
    assert normalize_rule("FREQ=DAILY" + " " * 490) == "FREQ=DAILY"
    with pytest.raises(InvalidRecurrenceRuleError):
        normalize_rule("FREQ=DAILY" + " " * 491)


@pytest.mark.parametrize(("rule", "problem"), REJECTED)
def test_every_function_rejects_unsupported_rules(rule: str, problem: str) -> None:
    start = at(NEW_YORK, 2027, 3, 10, 9)
    for call in (
        lambda: validate_rule(rule, start, NEW_YORK),
        lambda: next_occurrences(rule, start, NEW_YORK, start),
        lambda: next_occurrence(rule, start, NEW_YORK, start, start),
        lambda: describe_rule(rule),
    ):
        with pytest.raises(InvalidRecurrenceRuleError, match="Supported: FREQ"):
            call()


@pytest.mark.parametrize(
    ("rule", "start"),
    [
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", datetime(2027, 3, 10, 9)),
        ("FREQ=MONTHLY;BYMONTH=4,6,9,11;BYMONTHDAY=31", datetime(2027, 3, 10, 9)),
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", datetime(2027, 3, 10, 9)),
        ("FREQ=DAILY;UNTIL=20270101", datetime(2027, 3, 10, 9)),
        ("FREQ=YEARLY;INTERVAL=11", datetime(2027, 3, 10, 9)),
        ("FREQ=MONTHLY;INTERVAL=12;BYMONTH=5", datetime(2027, 3, 10, 9)),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6", datetime(2027, 3, 10, 9)),
    ],
)
def test_validate_rejects_a_rule_with_no_occurrence_in_ten_years(rule: str, start: datetime) -> None:
    with pytest.raises(InvalidRecurrenceRuleError) as caught:
        validate_rule(rule, localize(start, NEW_YORK), "America/New_York")
    assert "has no occurrence in the 10 years after the due date 2027-03-10" in caught.value.message
    assert "Supported: FREQ=DAILY|WEEKLY|MONTHLY|YEARLY" in caught.value.message


@pytest.mark.parametrize(
    ("rule", "normalized"),
    [
        ("RRULE:freq=weekly;byday=mo", "FREQ=WEEKLY;BYDAY=MO"),
        ("FREQ=DAILY;COUNT=1", "FREQ=DAILY;COUNT=1"),  # the series is this one task: valid
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"),  # 2028
        ("FREQ=YEARLY;INTERVAL=10", "FREQ=YEARLY;INTERVAL=10"),  # exactly ten years on
        ("FREQ=DAILY;UNTIL=20270311", "FREQ=DAILY;UNTIL=20270311"),
        ("FREQ=MONTHLY;BYMONTHDAY=31;BYDAY=MO;BYSETPOS=-1", "FREQ=MONTHLY;BYMONTHDAY=31;BYDAY=MO;BYSETPOS=-1"),
    ],
)
def test_validate_accepts_and_normalizes(rule: str, normalized: str) -> None:
    assert validate_rule(rule, at(NEW_YORK, 2027, 3, 10, 9), "America/New_York") == normalized


# --- describe ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        ("FREQ=WEEKLY;BYDAY=MO;COUNT=3", "every week on Monday, 3 times"),
        ("FREQ=DAILY;INTERVAL=2;UNTIL=20270310", "every 2 days until 2027-03-10"),
        ("FREQ=MONTHLY;BYDAY=-1FR", "every month on the last Friday"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "every year in February on day 29"),
        ("FREQ=MONTHLY;BYMONTHDAY=31", "every month on day 31"),
        ("FREQ=DAILY", "every day"),
        ("RRULE:FREQ=YEARLY", "every year"),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE,FR", "every 2 weeks on Monday, Wednesday and Friday"),
        ("FREQ=MONTHLY;BYMONTHDAY=1,15", "every month on days 1 and 15"),
        ("FREQ=MONTHLY;BYMONTHDAY=1,-1", "every month on day 1 and the last day"),
        ("FREQ=MONTHLY;BYMONTHDAY=-2", "every month on the second-to-last day"),
        ("FREQ=MONTHLY;BYDAY=1MO,3MO", "every month on the first Monday and the third Monday"),
        ("FREQ=MONTHLY;BYMONTHDAY=13;BYDAY=FR", "every month on day 13 if it is a Friday"),
        ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", "every month on the last weekday"),
        ("FREQ=MONTHLY;BYDAY=SA,SU;BYSETPOS=1", "every month on the first weekend day"),
        (
            "FREQ=MONTHLY;BYDAY=MO,FR;BYSETPOS=2,-1",
            "every month on Monday and Friday, only the second and last of those",
        ),
        ("FREQ=YEARLY;BYMONTH=1,7;BYDAY=1MO", "every year in January and July on the first Monday"),
        ("FREQ=YEARLY;BYDAY=20MO", "every year on the 20th Monday"),
        ("FREQ=DAILY;COUNT=1", "every day, once"),
        ("FREQ=DAILY;COUNT=2", "every day, twice"),
        ("FREQ=DAILY;UNTIL=20270310T090000", "every day until 2027-03-10 09:00"),
        ("FREQ=DAILY;UNTIL=20270310T093015Z", "every day until 2027-03-10 09:30:15 UTC"),
    ],
)
def test_describe_rule(rule: str, text: str) -> None:
    assert describe_rule(rule) == text


# --- bounded in time --------------------------------------------------------------------------------------------

HOSTILE = [
    "FREQ=DAILY;INTERVAL=1;COUNT=1000",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    "FREQ=MONTHLY;BYMONTHDAY=31;BYDAY=MO;BYSETPOS=-1",
    "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",  # dateutil walks this day by day to year 9999 (seconds)
    "FREQ=DAILY;BYMONTHDAY=31;BYDAY=MO;BYSETPOS=2",
    "FREQ=WEEKLY;BYMONTH=2;BYDAY=MO;COUNT=1000",
    "FREQ=MONTHLY;BYDAY=5MO;COUNT=1000",
    "FREQ=YEARLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYSETPOS=-1;COUNT=1000",
    "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYMONTH=2;COUNT=1000",
    "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;COUNT=1000",
    "FREQ=YEARLY;INTERVAL=1000;BYMONTH=2;BYMONTHDAY=29",
]


@pytest.mark.parametrize("rule", HOSTILE)
@pytest.mark.parametrize("after_year", [2027, 2600, 9998])
def test_no_rule_makes_a_call_slow(rule: str, after_year: int) -> None:
    start = at(NEW_YORK, 2027, 1, 1, 9)
    after = datetime(after_year, 6, 1, tzinfo=UTC)
    began = time.perf_counter()
    found = next_occurrences(rule, start, NEW_YORK, after, limit=5)
    try:
        validate_rule(rule, start, NEW_YORK)
    except InvalidRecurrenceRuleError:
        assert next_occurrences(rule, start, NEW_YORK, start) == [] or "COUNT=1;" in rule
    elapsed = time.perf_counter() - began
    # A few milliseconds on a laptop; the bound leaves room for a loaded CI runner and is far below the seconds
    # an unbounded expansion takes.
    assert elapsed < 0.1, f"{rule} took {elapsed * 1000:.1f} ms"
    assert all(f > after for f in found)


def test_a_series_far_in_the_future_is_followed_without_walking_from_its_start() -> None:
    start = at(LONDON, 2027, 1, 1, 9)
    after = at(LONDON, 9000, 6, 1, 12)
    found = next_occurrences("FREQ=DAILY", start, LONDON, after, limit=2)
    assert walls(found, LONDON) == [datetime(9000, 6, 2, 9), datetime(9000, 6, 3, 9)]
    assert next_occurrences("FREQ=DAILY", start, LONDON, datetime(9999, 6, 1, tzinfo=UTC)) == []


def test_occurrences_stop_ten_years_past_after() -> None:
    start = at(LONDON, 2027, 1, 1, 9)
    assert walls(series("FREQ=YEARLY", start, LONDON), LONDON)[-1] == datetime(2037, 1, 1, 9)


def test_limit() -> None:
    start = at(LONDON, 2027, 1, 1, 9)
    assert len(next_occurrences("FREQ=DAILY", start, LONDON, start)) == 5
    assert next_occurrences("FREQ=DAILY", start, LONDON, start, limit=0) == []
    assert len(next_occurrences("FREQ=DAILY", start, LONDON, start, limit=1000)) == 1000


def test_naive_times_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_occurrences("FREQ=DAILY", datetime(2027, 1, 1, 9), LONDON, at(LONDON, 2027, 1, 1, 9))


# --- properties -------------------------------------------------------------------------------------------------

WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


@st.composite
def supported_rules(draw: st.DrawFn, *, mixed_byday: bool = True) -> str:
    """A rule built from supported parts (which may still be rejected as a combination)."""
    freq = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]))
    parts = [f"FREQ={freq}"]
    if draw(st.booleans()):
        parts.append(f"INTERVAL={draw(st.integers(1, 3) | st.integers(1, 1000))}")
    if draw(st.booleans()):
        parts.append("BYMONTH=" + ",".join(map(str, draw(st.lists(st.integers(1, 12), min_size=1, max_size=4)))))
    if freq != "WEEKLY" and draw(st.booleans()):
        days = draw(st.lists(st.integers(1, 31) | st.integers(-31, -1), min_size=1, max_size=4))
        parts.append("BYMONTHDAY=" + ",".join(map(str, days)))
    if draw(st.booleans()):
        ordinals = freq in ("MONTHLY", "YEARLY") and draw(st.booleans())
        limit = 5 if freq == "MONTHLY" or any(p.startswith("BYMONTH=") for p in parts) else 53
        plain = st.sampled_from(WEEKDAYS)
        ordinal = st.builds(lambda n, d: f"{n}{d}", st.integers(1, limit) | st.integers(-limit, -1), plain)
        entry = (plain | ordinal if mixed_byday else ordinal) if ordinals else plain
        parts.append("BYDAY=" + ",".join(draw(st.lists(entry, min_size=1, max_size=5))))
    if len(parts) > 1 and any(p.startswith("BY") for p in parts) and draw(st.booleans()):
        positions = draw(st.lists(st.integers(1, 10) | st.integers(-10, -1), min_size=1, max_size=3))
        parts.append("BYSETPOS=" + ",".join(map(str, positions)))
    if draw(st.booleans()):
        parts.append(f"WKST={draw(st.sampled_from(WEEKDAYS))}")
    order = draw(st.permutations(parts))
    return ";".join(order)


def rule_or_none(rule: str) -> str | None:
    try:
        return normalize_rule(rule)
    except InvalidRecurrenceRuleError:
        return None


starts = st.builds(
    datetime,
    st.integers(2020, 2040),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.sampled_from([0, 30]),
)

FRAGMENTS = [
    "FREQ=DAILY",
    "FREQ=WEEKLY",
    "FREQ=MONTHLY",
    "FREQ=YEARLY",
    "FREQ=HOURLY",
    "INTERVAL=2",
    "INTERVAL=0",
    "COUNT=3",
    "UNTIL=20300101",
    "UNTIL=2030",
    "BYDAY=MO",
    "BYDAY=-1FR",
    "BYDAY=9SU",
    "BYMONTHDAY=31",
    "BYMONTHDAY=-1",
    "BYMONTH=2",
    "BYSETPOS=-1",
    "BYHOUR=9",
    "WKST=SU",
    "RRULE:",
    "=",
    "",
    " ",
]


@given(
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=6).map(";".join) | supported_rules(),
    starts,
    st.sampled_from(ZONES),
)
def test_any_text_raises_nothing_but_invalid_recurrence_rule(rule: str, start: datetime, zone: ZoneInfo) -> None:
    due = localize(start, zone)
    try:
        normalized = validate_rule(rule, due, zone)
    except InvalidRecurrenceRuleError:
        return
    assert normalize_rule(normalized) == normalized
    assert describe_rule(normalized) == describe_rule(rule)
    assert describe_rule(rule).startswith("every ")
    assert next_occurrences(rule, due, zone, due, limit=1)  # validation promised one within ten years


@settings(max_examples=200)
@given(
    supported_rules(),
    st.sampled_from(
        ["", ";COUNT=1", ";COUNT=2", ";COUNT=7", ";COUNT=1000", ";UNTIL=20310615", ";UNTIL=20290101T120000Z"]
    ),
    starts,
    st.integers(-400, 30 * 365),
    st.integers(1, 12),
    st.sampled_from(ZONES),
)
def test_occurrences_are_increasing_after_after_and_keep_the_wall_time(
    rule: str, end: str, start: datetime, after_days: int, limit: int, zone: ZoneInfo
) -> None:
    normalized = rule_or_none(rule + end)
    assume(normalized is not None)
    assert normalized is not None
    series_start = localize(start, zone)
    after = series_start + timedelta(days=after_days, hours=1)
    found = next_occurrences(normalized, series_start, zone, after, limit=limit)
    assert len(found) <= limit
    assert all(f.tzinfo == zone for f in found)
    in_utc = [f.astimezone(UTC) for f in found]
    assert all(f > after for f in in_utc)
    assert all(a < b for a, b in pairwise(in_utc))
    for f in found:
        if f.astimezone(UTC) != series_start.astimezone(UTC):
            # The start's wall time that day, moved forward if it fell in a gap.
            expected = localize(datetime.combine(f.date(), start.time()), zone)
            assert expected.astimezone(UTC) == f.astimezone(UTC)


@given(supported_rules(), starts, st.integers(0, 5 * 365), st.sampled_from(ZONES))
def test_starting_near_after_gives_what_walking_from_the_start_gives(
    rule: str, start: datetime, after_days: int, zone: ZoneInfo
) -> None:
    normalized = rule_or_none(rule)
    assume(normalized is not None)
    assert normalized is not None
    series_start = localize(start, zone)
    after = series_start + timedelta(days=after_days, hours=5)
    horizon = localize(start.replace(year=start.year + 10), zone)
    walked = [f for f in series(normalized, series_start, zone, limit=10_000) if f > after]
    near = [f for f in next_occurrences(normalized, series_start, zone, after, limit=5) if f <= horizon]
    assert near == walked[: len(near)]
    assert len(near) == min(5, len(walked))


@given(supported_rules(), starts, st.integers(1, 40), st.sampled_from(ZONES))
def test_count_keeps_the_first_occurrences_of_the_series(
    rule: str, start: datetime, count: int, zone: ZoneInfo
) -> None:
    normalized = rule_or_none(rule)
    assume(normalized is not None)
    assert normalized is not None
    series_start = localize(start, zone)
    unbounded = series(normalized, series_start, zone, limit=count)
    assert series(f"{normalized};COUNT={count}", series_start, zone, limit=1000) == unbounded[:count]
    assert unbounded[0] == series_start


@given(supported_rules(), starts, st.integers(0, 3000), st.sampled_from(ZONES))
def test_until_cuts_the_series_at_the_end_of_that_day(rule: str, start: datetime, days: int, zone: ZoneInfo) -> None:
    normalized = rule_or_none(rule)
    assume(normalized is not None)
    assert normalized is not None
    series_start = localize(start, zone)
    until = start.date() + timedelta(days=days)
    end_of_day = localize(datetime.combine(until, datetime.max.time()).replace(microsecond=0), zone)
    unbounded = series(normalized, series_start, zone, limit=10_000)
    expected = [series_start] + [f for f in unbounded[1:] if f <= end_of_day]
    bounded = series(f"{normalized};UNTIL={until:%Y%m%d}", series_start, zone, limit=10_000)
    assert bounded == expected


@settings(max_examples=200)
@given(supported_rules(mixed_byday=False), st.integers(9975, 9987), st.integers(1, 12), st.integers(1, 28))
def test_expansion_matches_dateutil(rule: str, year: int, month: int, day: int) -> None:
    """dateutil is the reference where it follows RFC 5545. It does not for BYDAY=MO,1FR (which it intersects), nor
    for BYSETPOS in a series' first week, whose set it starts at DTSTART instead of the week start: that week is
    left out of the comparison. Starts are in 9975..9987 because dateutil only stops at year 9999 when a rule goes
    quiet; the calendar repeats every 400 years, so these dates exercise the same weekdays and leap years as any."""
    normalized = rule_or_none(rule)
    assume(normalized is not None)
    assert normalized is not None
    parsed = parse_rule(normalized)
    start = datetime(year, month, day, 9, 30)
    horizon = start.replace(year=year + 10)
    compared_from = start
    if parsed.freq == "WEEKLY" and parsed.bysetpos:
        compared_from += timedelta(days=6 - (start.weekday() - parsed.wkst) % 7)
    reference = []
    instances = iter(rrulestr(normalized, dtstart=start))
    # dateutil's weeks that cross into year 10000 raise instead of ending
    with contextlib.suppress(ValueError):
        for instance in instances:
            if instance > horizon:
                break
            if instance > compared_from:
                reference.append(instance)
    ours = series(normalized, start.replace(tzinfo=UTC), ZoneInfo("UTC"), limit=10_000)
    assert ours[0].replace(tzinfo=None) == start
    assert [d.replace(tzinfo=None) for d in ours if d.replace(tzinfo=None) > compared_from] == reference


def test_bysetpos_in_the_first_week_chooses_from_the_whole_week() -> None:
    # The week of Wednesday 2027-03-10 holds Monday the 8th and Thursday the 11th: position 1 is the Monday,
    # which is before the start, so that week contributes nothing (dateutil would pick the Thursday).
    start = at(LONDON, 2027, 3, 10, 9)
    found = walls(series("FREQ=WEEKLY;BYDAY=MO,TH;BYSETPOS=1", start, LONDON, limit=3), LONDON)
    assert found == [datetime(2027, 3, 10, 9), datetime(2027, 3, 15, 9), datetime(2027, 3, 22, 9)]


# --- a series asked for a wall time its first day skips ------------------------------------------------------------


MIDNIGHT = datetime.min.time()


def skipped_wall(zone: ZoneInfo, year: int) -> datetime:
    """The first half hour that ``zone`` skips in ``year`` (its spring-forward gap), as a naive wall time."""
    day = date(year, 1, 1)
    while day.year == year:
        following = day + timedelta(days=1)
        if (
            localize(datetime.combine(following, MIDNIGHT), zone).utcoffset()
            != localize(datetime.combine(day, MIDNIGHT), zone).utcoffset()
        ):
            for minutes in range(0, 24 * 60, 30):
                wall = datetime.combine(day, MIDNIGHT) + timedelta(minutes=minutes)
                if localize(wall, zone).replace(tzinfo=None) != wall:
                    return wall
        day = following
    raise AssertionError(f"{zone} skips no time in {year}")


def test_a_series_asked_for_a_skipped_time_keeps_it_where_it_exists() -> None:
    start = datetime(2028, 3, 12, 2, 0, tzinfo=NEW_YORK)  # clocks jump from 02:00 to 03:00 that day
    found = series("FREQ=MONTHLY;BYDAY=1TH", start, NEW_YORK, limit=4)
    assert [d.isoformat() for d in found] == [
        "2028-03-12T03:00:00-04:00",  # occurrence 1 moves forward by the gap
        "2028-04-06T02:00:00-04:00",
        "2028-05-04T02:00:00-04:00",
        "2028-06-01T02:00:00-04:00",
    ]
    reference = list(rrulestr("FREQ=MONTHLY;BYDAY=1TH;COUNT=3", dtstart=start))
    assert [d.astimezone(UTC) for d in found[1:]] == [d.astimezone(UTC) for d in reference]
    # A start given as the instant it stands for (03:00, as stored) is a series at 03:00, as before.
    stored = found[0].astimezone(UTC)
    assert walls(series("FREQ=MONTHLY;BYDAY=1TH", stored, NEW_YORK, limit=2), NEW_YORK)[1] == datetime(2028, 4, 6, 3, 0)


@pytest.mark.parametrize("fold", [0, 1])
def test_a_skipped_start_moves_forward_whatever_its_fold(fold: int) -> None:
    start = datetime(2028, 3, 12, 2, 30, tzinfo=NEW_YORK, fold=fold)
    found = series("FREQ=DAILY", start, NEW_YORK, limit=2)
    assert [d.isoformat() for d in found] == ["2028-03-12T03:30:00-04:00", "2028-03-13T02:30:00-04:00"]


@settings(max_examples=150)
@given(supported_rules(mixed_byday=False), st.integers(9975, 9987), st.sampled_from([NEW_YORK, LONDON, SYDNEY]))
def test_a_start_in_a_gap_matches_dateutil(rule: str, year: int, zone: ZoneInfo) -> None:
    """As test_expansion_matches_dateutil, from a wall time the first day skips: later occurrences keep it."""
    normalized = rule_or_none(rule)
    assume(normalized is not None)
    assert normalized is not None
    parsed = parse_rule(normalized)
    wall = skipped_wall(zone, year)
    start = wall.replace(tzinfo=zone)
    horizon = start.replace(year=year + 10)
    compared_from = wall
    if parsed.freq == "WEEKLY" and parsed.bysetpos:
        compared_from += timedelta(days=6 - (wall.weekday() - parsed.wkst) % 7)
    first_compared = localize(compared_from, zone).astimezone(UTC)
    reference = []
    with contextlib.suppress(ValueError):  # dateutil's weeks that cross into year 10000 raise instead of ending
        for instance in rrulestr(normalized, dtstart=start):
            if instance > horizon:
                break
            # dateutil keeps a skipped wall time as it is; read with fold=0 it is the instant ours moves forward to.
            if instance > start and instance.astimezone(UTC) > first_compared:
                reference.append(instance.astimezone(UTC))
    ours = series(normalized, start, zone, limit=10_000)
    assert ours[0] == localize(wall, zone)
    assert [d.astimezone(UTC) for d in ours[1:] if d.astimezone(UTC) > first_compared] == reference


# --- the start a stored series is expanded from ---------------------------------------------------------------------


def test_a_stored_series_expands_from_its_skipped_wall_time() -> None:
    stored = datetime(2028, 3, 12, 7, 0, tzinfo=UTC)  # 03:00 EDT, what timestamptz keeps of 02:00 that day
    start = series_dtstart(stored, datetime(2028, 3, 12, 2, 0), NEW_YORK)
    assert start.tzinfo is NEW_YORK and start.replace(tzinfo=None) == datetime(2028, 3, 12, 2, 0)
    found = next_occurrences("FREQ=MONTHLY;BYDAY=1TH", start, NEW_YORK, stored, limit=2)
    assert [d.isoformat() for d in found] == ["2028-04-06T02:00:00-04:00", "2028-05-04T02:00:00-04:00"]


@pytest.mark.parametrize(
    ("stored", "wall"),
    [
        (datetime(2028, 3, 12, 7, 0, tzinfo=UTC), None),  # a series stored before the wall time was
        (datetime(2028, 3, 2, 14, 0, tzinfo=UTC), datetime(2028, 3, 2, 9, 0)),  # not skipped
        (datetime(2028, 3, 19, 7, 0, tzinfo=UTC), datetime(2028, 3, 12, 2, 0)),  # an anchor moved without it
        # The second 01:30 of the autumn repeat, asked with its offset: the wall time alone would be the first.
        (datetime(2028, 11, 5, 6, 30, tzinfo=UTC), datetime(2028, 11, 5, 1, 30)),
    ],
)
def test_a_stored_series_otherwise_expands_from_its_instant(stored: datetime, wall: datetime | None) -> None:
    assert series_dtstart(stored, wall, NEW_YORK) is stored


@pytest.mark.parametrize(
    ("rule", "first"),
    [
        ("FREQ=DAILY;INTERVAL=3", date(2026, 12, 2)),  # names no day: the series starts today
        ("FREQ=WEEKLY;BYDAY=WE", date(2026, 12, 2)),  # today is one of its days
        ("FREQ=WEEKLY;BYDAY=MO,FR", date(2026, 12, 4)),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO", date(2026, 12, 7)),  # the interval counts from the first day
        ("FREQ=MONTHLY;BYMONTHDAY=1", date(2027, 1, 1)),
        ("FREQ=MONTHLY;BYMONTHDAY=-1", date(2026, 12, 31)),
        ("FREQ=MONTHLY;BYDAY=-1FR", date(2026, 12, 25)),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", date(2028, 2, 29)),
        ("FREQ=DAILY;COUNT=2;BYDAY=SA", date(2026, 12, 5)),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", date(2026, 12, 2)),  # no such day: today, for validate_rule to refuse
    ],
)
def test_the_first_day_a_rule_names(rule: str, first: date) -> None:
    assert first_day(rule, date(2026, 12, 2)) == first  # a Wednesday
