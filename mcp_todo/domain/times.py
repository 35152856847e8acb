"""User-facing times: parsing ISO 8601 arguments in the user's zone, and wall-clock to instant conversion.

Pure functions; nothing here reads the clock.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcp_todo.domain.errors import ValidationError

# Every stored time must round-trip through PostgreSQL timestamptz and survive "+ ten years" arithmetic
# (recurrence horizons) without overflowing Python's year 9999.
MIN_YEAR = 1970
MAX_YEAR = 9998

END_OF_DAY = time(23, 59, 59)

_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*")
# "localtime" resolves to whatever the host is set to, so the same task would mean different instants on
# different machines; it and "posixrules" are system files, not IANA zones, and "Factory" is tzdata's placeholder.
# `posix/…` and `right/…` are copies of the zone files that some systems install (`right/` counts leap seconds).
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_NOT_ZONE_PREFIXES = ("posix/", "right/")
_MAX_TIME_TEXT = 64


def resolve_zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; ValidationError when there is none."""
    if (
        len(name) <= _MAX_TIME_TEXT
        and _ZONE_NAME.fullmatch(name)
        and name not in _NOT_ZONES
        and not name.startswith(_NOT_ZONE_PREFIXES)
    ):
        try:
            return ZoneInfo(name)
        # ZoneInfo reports a missing key, a directory (``America``) and a malformed file in three different ways.
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise ValidationError(
        f"unknown time zone {name[:_MAX_TIME_TEXT]!r} — use an IANA name such as America/New_York, Europe/London or UTC"
    )


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else resolve_zone(tz)


def localize(naive: datetime, tz: str | ZoneInfo) -> datetime:
    """The instant a wall-clock time in ``tz`` stands for.

    A time skipped by a DST gap moves forward by the length of the gap (02:30 → 03:30); a repeated time takes its
    first occurrence. Going through UTC gives exactly that: fold=0 reads a gap time with the offset in force before
    the transition, and converting back yields the real wall time.
    """
    if naive.tzinfo is not None:
        raise ValueError("localize() takes a naive wall-clock time")
    zone = _zone(tz)
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC).astimezone(zone)


def _time_error(field: str, value: str, reason: str) -> ValidationError:
    shown = value if len(value) <= _MAX_TIME_TEXT else value[:_MAX_TIME_TEXT] + "…"
    return ValidationError(
        f"{field} must be ISO 8601, e.g. 2027-03-10 or 2027-03-10T09:00 or 2027-03-10T09:00+01:00 ({reason}: {shown!r})"
    )


def parse_user_time(value: str, tz: str | ZoneInfo, *, field: str) -> datetime:
    """Parse a time argument the way the contract reads it, as an aware datetime in the user's zone.

    With an offset (or Z) it is that instant; without one it is wall-clock time in ``tz``; a date alone is the end
    of that day (23:59:59) in ``tz``.
    """
    return parse_user_wall_time(value, tz, field=field)[0]


def parse_user_wall_time(value: str, tz: str | ZoneInfo, *, field: str) -> tuple[datetime, datetime]:
    """``parse_user_time``'s instant, and the naive wall time in ``tz`` that was asked for.

    The two differ only for a wall time that a DST gap skips: ``2028-03-12T02:00`` in America/New_York is the
    instant 03:00 EDT, but a series asked to start then keeps 02:00 on the days that have it (RFC 5545 DTSTART),
    and the instant alone cannot say so.
    """
    zone = _zone(tz)
    text = value.strip()
    if not text:
        raise _time_error(field, value, "empty")
    if len(text) > _MAX_TIME_TEXT:
        raise _time_error(field, value, "too long")
    # fromisoformat (3.11) takes "Z" but not "z"; LLM hosts write both.
    if text[-1] == "z":
        text = text[:-1] + "Z"
    try:
        parsed = datetime.combine(date.fromisoformat(text), END_OF_DAY)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise _time_error(field, value, "not a date or date-time") from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise _time_error(field, value, f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    try:
        result = localize(parsed, zone) if parsed.tzinfo is None else parsed.astimezone(zone)
        utc_year = result.astimezone(UTC).year
    except OverflowError:
        raise _time_error(field, value, "out of range") from None
    if not MIN_YEAR <= utc_year <= MAX_YEAR:
        raise _time_error(field, value, f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    asked = parsed if parsed.tzinfo is None else result.replace(tzinfo=None, fold=0)
    return result, asked


def format_in_zone(dt: datetime | None, tz: str | ZoneInfo) -> str | None:
    """ISO 8601 in ``tz`` with a numeric offset (``2027-03-10T23:59:59-05:00``); None stays None."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        raise ValueError("format_in_zone() takes an aware datetime")
    return dt.astimezone(_zone(tz)).isoformat()
