"""Times as users write them: ISO 8601 in the user's zone, DST gaps and repeats, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.times import format_in_zone, localize, parse_user_time, parse_user_wall_time, resolve_zone

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")


def offset_hours(dt: datetime) -> float:
    offset = dt.utcoffset()
    assert offset is not None
    return offset / timedelta(hours=1)


# --- resolve_zone -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["America/New_York", "Europe/London", "Asia/Kolkata", "UTC", "Etc/GMT+5"])
def test_resolve_zone_accepts_iana_names(name: str) -> None:
    assert resolve_zone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name",
    ["Mars/Base", "America", "", "../etc/passwd", "/etc/localtime", "localtime", "utc", "America/New_York ", "a" * 300],
)
def test_resolve_zone_rejects_what_is_not_an_iana_zone(name: str) -> None:
    with pytest.raises(ValidationError, match=r"unknown time zone .* IANA name such as America/New_York"):
        resolve_zone(name)


# --- localize ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "wall", "expected_wall", "expected_offset"),
    [
        (NEW_YORK, datetime(2027, 3, 14, 2, 30), datetime(2027, 3, 14, 3, 30), -4),
        (LONDON, datetime(2027, 3, 28, 1, 30), datetime(2027, 3, 28, 2, 30), 1),
        (SYDNEY, datetime(2027, 10, 3, 2, 30), datetime(2027, 10, 3, 3, 30), 11),
    ],
)
def test_localize_moves_a_time_in_a_dst_gap_forward_by_the_gap(
    zone: ZoneInfo, wall: datetime, expected_wall: datetime, expected_offset: int
) -> None:
    result = localize(wall, zone)
    assert result.replace(tzinfo=None) == expected_wall
    assert offset_hours(result) == expected_offset


@pytest.mark.parametrize(
    ("zone", "wall", "first_offset"),
    [
        (NEW_YORK, datetime(2027, 11, 7, 1, 30), -4),
        (LONDON, datetime(2027, 10, 31, 1, 30), 1),
        (SYDNEY, datetime(2027, 4, 4, 2, 30), 11),
    ],
)
def test_localize_takes_the_first_of_a_repeated_time(zone: ZoneInfo, wall: datetime, first_offset: int) -> None:
    result = localize(wall, zone)
    assert result.replace(tzinfo=None) == wall
    assert offset_hours(result) == first_offset
    # Even when asked for the second one: the rule is "the first", not "whatever fold says".
    assert localize(wall.replace(fold=1), zone) == result


def test_localize_keeps_ordinary_times_and_accepts_a_zone_name() -> None:
    assert localize(datetime(2027, 7, 1, 9), "Asia/Kolkata") == datetime(2027, 7, 1, 9, tzinfo=KOLKATA)
    assert offset_hours(localize(datetime(2027, 7, 1, 9), "Asia/Kolkata")) == 5.5


def test_localize_refuses_an_aware_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        localize(datetime(2027, 7, 1, 9, tzinfo=UTC), NEW_YORK)


# --- parse_user_time --------------------------------------------------------------------------------------------


def test_a_date_alone_is_the_end_of_that_day_in_the_users_zone() -> None:
    result = parse_user_time("2027-03-10", "America/New_York", field="due_date")
    assert result.isoformat() == "2027-03-10T23:59:59-05:00"


def test_a_time_without_offset_is_wall_time_in_the_users_zone() -> None:
    assert parse_user_time("2027-03-10T09:00", NEW_YORK, field="due_date").isoformat() == "2027-03-10T09:00:00-05:00"
    assert parse_user_time("2027-07-10 09:00:30", KOLKATA, field="due_date").isoformat() == "2027-07-10T09:00:30+05:30"


@pytest.mark.parametrize(
    "text",
    ["2027-03-10T09:00+01:00", "2027-03-10T08:00Z", "2027-03-10T08:00z", "2027-03-10T08:00:00+00:00", "20270310T0800Z"],
)
def test_a_time_with_an_offset_is_that_instant(text: str) -> None:
    result = parse_user_time(text, NEW_YORK, field="due_date")
    assert result == datetime(2027, 3, 10, 8, tzinfo=UTC)
    assert result.tzinfo == NEW_YORK  # the same instant, shown in the user's zone


def test_parse_applies_the_gap_and_repeat_rules() -> None:
    assert parse_user_time("2027-03-14T02:30", NEW_YORK, field="due_date").isoformat() == "2027-03-14T03:30:00-04:00"
    assert parse_user_time("2027-11-07T01:30", NEW_YORK, field="due_date").isoformat() == "2027-11-07T01:30:00-04:00"


def test_parse_strips_surrounding_space_and_keeps_fractions() -> None:
    result = parse_user_time("  2027-03-10T09:00:00.250  ", LONDON, field="due_date")
    assert result == datetime(2027, 3, 10, 9, 0, 0, 250_000, tzinfo=LONDON)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "tomorrow",
        "next friday at 9",
        "10/03/2027",
        "2027-02-30",
        "2027-13-01",
        "2027-03-10T25:00",
        "2027-03-10T24:00",
        "2027-03-10T09:00+25:00",
        "0001-01-01",
        "1969-12-31",
        "9999-12-31",
        "9999-12-31T23:00",
        "0001-01-01T00:00+01:00",
        "\uff12\uff10\uff12\uff17-03-10",  # full-width digits
        "2027-03-10T09:00" + " " * 80 + "x",
        "x" * 10_000,
    ],
)
def test_parse_rejects_garbage_naming_the_field_and_a_valid_example(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_user_time(text, NEW_YORK, field="due_before")
    message = caught.value.message
    assert message.startswith("due_before must be ISO 8601")
    assert "2027-03-10 or 2027-03-10T09:00 or 2027-03-10T09:00+01:00" in message
    assert len(message) < 300  # a huge argument is not echoed back whole


def test_parse_rejects_an_unknown_zone_name() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        parse_user_time("2027-03-10", "Mars/Base", field="due_date")


@given(st.text(max_size=80))
def test_parse_raises_only_validation_errors(text: str) -> None:
    try:
        result = parse_user_time(text, SYDNEY, field="due_date")
    except ValidationError:
        return
    assert result.tzinfo == SYDNEY
    assert 1970 <= result.astimezone(UTC).year <= 9998


aware_times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(9997, 12, 31), timezones=st.sampled_from([UTC, NEW_YORK])
)


@given(aware_times, st.sampled_from([NEW_YORK, LONDON, SYDNEY, KOLKATA]))
def test_format_then_parse_is_the_same_instant(instant: datetime, zone: ZoneInfo) -> None:
    text = format_in_zone(instant, zone)
    assert text is not None
    # Compared in UTC: Python's == between zones is False for any time that is ambiguous in its zone (PEP 495).
    assert parse_user_time(text, "UTC", field="due_date").astimezone(UTC) == instant.astimezone(UTC)


# --- format_in_zone ---------------------------------------------------------------------------------------------


def test_format_in_zone_uses_a_numeric_offset() -> None:
    instant = datetime(2027, 3, 11, 4, 59, 59, tzinfo=UTC)
    assert format_in_zone(instant, "America/New_York") == "2027-03-10T23:59:59-05:00"
    assert format_in_zone(instant, KOLKATA) == "2027-03-11T10:29:59+05:30"
    assert format_in_zone(datetime(2027, 7, 1, 12, tzinfo=timezone(timedelta(hours=2))), "UTC") == (
        "2027-07-01T10:00:00+00:00"
    )


def test_format_in_zone_passes_none_through_and_refuses_naive() -> None:
    assert format_in_zone(None, "UTC") is None
    with pytest.raises(ValueError, match="aware"):
        format_in_zone(datetime(2027, 7, 1), "UTC")


# --- parse_user_wall_time -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "instant", "asked"),
    [
        # Skipped by the spring-forward gap: the instant moves forward by the gap, the asked wall time stays.
        ("2028-03-12T02:00", "2028-03-12T03:00:00-04:00", datetime(2028, 3, 12, 2, 0)),
        ("2028-03-12T02:30", "2028-03-12T03:30:00-04:00", datetime(2028, 3, 12, 2, 30)),
        ("2028-03-02T09:00", "2028-03-02T09:00:00-05:00", datetime(2028, 3, 2, 9, 0)),
        ("2028-03-12", "2028-03-12T23:59:59-04:00", datetime(2028, 3, 12, 23, 59, 59)),
        # With an offset it is that instant, and the wall time asked for is the instant's in the zone.
        ("2028-03-12T07:00Z", "2028-03-12T03:00:00-04:00", datetime(2028, 3, 12, 3, 0)),
        ("2028-11-05T01:30-05:00", "2028-11-05T01:30:00-05:00", datetime(2028, 11, 5, 1, 30)),
    ],
)
def test_parse_user_wall_time_keeps_the_asked_wall_time(text: str, instant: str, asked: datetime) -> None:
    parsed, wall = parse_user_wall_time(text, NEW_YORK, field="due_date")
    assert parsed.isoformat() == instant
    assert parsed == parse_user_time(text, NEW_YORK, field="due_date")
    assert wall == asked and wall.tzinfo is None and wall.fold == 0
