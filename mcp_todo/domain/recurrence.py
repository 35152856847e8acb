"""Recurrence rules: the supported subset of RFC 5545 RRULE, expanded on wall-clock time in the task's zone.

The series' first due date is DTSTART and always occurrence 1, even when the rule would not generate it. The rule's
own instances are generated on naive wall-clock times (so 09:00 stays 09:00 across DST) and then localized: a time
in a DST gap moves forward by the gap, an ambiguous one takes its first occurrence.

Why not expand with ``dateutil.rrule``: its loop checks UNTIL (and any bound) only when it produces an instance, so
a rule that produces nothing for a while (``FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30``) walks day by day to year 9999 —
3.7 s measured with dateutil 4.0.0 — and nothing outside the generator can stop it. It also intersects, instead of
unioning, plain and ordinal BYDAY values (``BYDAY=MO,1FR`` yields nothing). The subset here has a single time of
day, so each period (week, month, year; DAILY walks a month at a time) is a short computation. Expansion stops at a
horizon ten years past the later of ``after`` and the series start, and after ``MAX_CANDIDATES`` days of work.
The unit tests check these expansions against dateutil on rules where dateutil follows the RFC.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.times import MAX_YEAR, MIN_YEAR, localize, resolve_zone

MAX_RULE_LENGTH = 500
MAX_INTERVAL = 1000
MAX_COUNT = 1000
HORIZON_YEARS = 10
# Bounds the work of one expansion, in candidate days (~0.2 µs each, a period counting as twelve): a few ms at most.
# A rule without COUNT starts near ``after`` and meets the ten-year horizon well before this (WEEKLY, the costliest,
# needs ~10 000); only a COUNT series, walked from its start, can run out, and not within its first twenty years.
MAX_CANDIDATES = 20_000

SUPPORTED = (
    "Supported: FREQ=DAILY|WEEKLY|MONTHLY|YEARLY, INTERVAL=1..1000, BYDAY=MO,TU,WE,TH,FR,SA,SU (ordinals such as "
    "1MO or -1FR only with MONTHLY or YEARLY), BYMONTHDAY=1..31 or -31..-1, BYMONTH=1..12, BYSETPOS=1..366 or "
    "-366..-1, COUNT=1..1000 or UNTIL=YYYYMMDD[THHMMSS[Z]] (not both), WKST=MO..SU; "
    "e.g. FREQ=WEEKLY;BYDAY=MO,WE or FREQ=MONTHLY;BYDAY=-1FR;COUNT=6"
)

FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_KNOWN_UNSUPPORTED = frozenset(
    {"BYHOUR", "BYMINUTE", "BYSECOND", "BYWEEKNO", "BYYEARDAY", "BYEASTER", "RSCALE", "SKIP"}
)
_SUPPORTED_KEYS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYMONTH", "BYMONTHDAY", "BYDAY", "BYSETPOS", "WKST")

_INT = re.compile(r"[+-]?[0-9]{1,4}", re.ASCII)
_WEEKDAY = re.compile(r"([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)", re.ASCII)
_UNTIL_DATE = re.compile(r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})", re.ASCII)
_UNTIL_DATETIME = re.compile(
    r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})T([0-9]{2}):?([0-9]{2})(?::?([0-9]{2}))?(Z)?",
    re.ASCII,
)

_LAST_DAY = date(MAX_YEAR, 12, 31)
_WEEK = timedelta(days=7)
# Instants and wall times in one zone differ by less than this, whatever the DST or zone history.
_WALL_SLACK = timedelta(days=2)


@dataclass(frozen=True)
class Rule:
    """A parsed rule. ``byday`` pairs are (ordinal or None, weekday 0=Monday); ``until`` is a date (the whole day
    in the task's zone), a naive datetime (wall time in the task's zone) or an aware UTC datetime."""

    freq: str
    interval: int
    bymonth: tuple[int, ...]
    bymonthday: tuple[int, ...]
    byday: tuple[tuple[int | None, int], ...]
    bysetpos: tuple[int, ...]
    wkst: int
    count: int | None
    until: date | datetime | None
    weekdays: frozenset[int]  # the weekdays BYDAY names, ordinals aside
    week_offsets: tuple[int, ...]  # for WEEKLY: those weekdays as days after the week start, in order


def _invalid(problem: str) -> InvalidRecurrenceRuleError:
    return InvalidRecurrenceRuleError(f"{problem}. {SUPPORTED}")


def _int_in(key: str, text: str, low: int, high: int, *, signed: bool = False) -> int:
    value = int(text) if _INT.fullmatch(text) else None
    in_range = value is not None and (
        (-high <= value <= -low or low <= value <= high) if signed else low <= value <= high
    )
    if value is None or not in_range:
        span = f"{low}..{high} or -{high}..-{low}" if signed else f"{low}..{high}"
        raise _invalid(f"{key}={text} is not valid: each value must be a whole number in {span}")
    return value


def _int_list(key: str, text: str, low: int, high: int, *, signed: bool = False) -> tuple[int, ...]:
    values: list[int] = []
    for item in text.split(","):
        value = _int_in(key, item.strip(), low, high, signed=signed)
        if value not in values:
            values.append(value)
    return tuple(values)


def _parse_byday(text: str) -> tuple[tuple[int | None, int], ...]:
    values: list[tuple[int | None, int]] = []
    for item in text.split(","):
        match = _WEEKDAY.fullmatch(item.strip())
        if match is None:
            raise _invalid(
                f"BYDAY={text} is not valid: use two-letter days such as MO,WE or ordinals such as 1MO, -1FR"
            )
        ordinal = int(match.group(1)) if match.group(1) else None
        if ordinal is not None and not 1 <= abs(ordinal) <= 53:
            raise _invalid(f"BYDAY={text} is not valid: an ordinal must be 1..53 or -53..-1")
        value = (ordinal, WEEKDAY_CODES.index(match.group(2)))
        if value not in values:
            values.append(value)
    return tuple(values)


def _parse_until(text: str) -> date | datetime:
    try:
        if match := _UNTIL_DATE.fullmatch(text):
            year, month, day = (int(g) for g in match.groups())
            until: date | datetime = date(year, month, day)
        elif match := _UNTIL_DATETIME.fullmatch(text):
            year, month, day, hour, minute = (int(g) for g in match.groups()[:5])
            second = int(match.group(6) or 0)
            until = datetime(year, month, day, hour, minute, second, tzinfo=UTC if match.group(7) else None)
        else:
            raise ValueError(text)
    except ValueError:
        raise _invalid(f"UNTIL={text} is not a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS, Z for UTC)") from None
    if not MIN_YEAR <= until.year <= MAX_YEAR:
        raise _invalid(f"UNTIL={text} is out of range: the year must be {MIN_YEAR}..{MAX_YEAR}")
    return until


def _format_until(until: date | datetime) -> str:
    if not isinstance(until, datetime):
        return until.strftime("%Y%m%d")
    # strftime's %Y is not zero-padded on every platform; years here are 1970..9998 anyway.
    return until.strftime("%Y%m%dT%H%M%S") + ("Z" if until.tzinfo is not None else "")


def _format_weekday(entry: tuple[int | None, int]) -> str:
    ordinal, weekday = entry
    return f"{'' if ordinal is None else ordinal}{WEEKDAY_CODES[weekday]}"


def _split(rule: str) -> dict[str, str]:
    if len(rule) > MAX_RULE_LENGTH:
        raise _invalid(f"the rule is longer than {MAX_RULE_LENGTH} characters")
    text = rule.strip()
    if text[:6].upper() == "RRULE:":
        text = text[6:].strip()
    if not text:
        raise _invalid("the rule is empty")
    parts: dict[str, str] = {}
    for raw in text.split(";"):
        part = raw.strip()
        if not part:
            raise _invalid("the rule has an empty part (two ';' in a row, or one at the start or end)")
        key, sep, value = (piece.strip() for piece in part.partition("="))
        key, value = key.upper(), value.upper()
        if not sep or not key or not value:
            raise _invalid(f"{part[:40]!r} is not KEY=VALUE")
        if key in _KNOWN_UNSUPPORTED or key.startswith("X-"):
            raise _invalid(f"{key} is not supported")
        if key not in _SUPPORTED_KEYS:
            raise _invalid(f"{key[:40]!r} is not a recurrence rule part")
        if key in parts:
            raise _invalid(f"{key} appears more than once")
        parts[key] = value
    return parts


def _build(parts: dict[str, str]) -> Rule:
    freq = parts.get("FREQ")
    if freq is None:
        raise _invalid("FREQ is missing")
    if freq not in FREQUENCIES:
        raise _invalid(f"FREQ={freq[:20]} is not supported")
    if "COUNT" in parts and "UNTIL" in parts:
        raise _invalid("COUNT and UNTIL cannot both be given (RFC 5545)")
    wkst = parts.get("WKST")
    if wkst is not None and wkst not in WEEKDAY_CODES:
        raise _invalid(f"WKST={wkst[:20]} is not a two-letter day such as MO or SU")
    byday = _parse_byday(parts["BYDAY"]) if "BYDAY" in parts else ()
    week_start = WEEKDAY_CODES.index(wkst) if wkst is not None else 0
    weekdays = frozenset(weekday for _, weekday in byday)
    rule = Rule(
        freq=freq,
        interval=_int_in("INTERVAL", parts["INTERVAL"], 1, MAX_INTERVAL) if "INTERVAL" in parts else 1,
        bymonth=_int_list("BYMONTH", parts["BYMONTH"], 1, 12) if "BYMONTH" in parts else (),
        bymonthday=_int_list("BYMONTHDAY", parts["BYMONTHDAY"], 1, 31, signed=True) if "BYMONTHDAY" in parts else (),
        byday=byday,
        bysetpos=_int_list("BYSETPOS", parts["BYSETPOS"], 1, 366, signed=True) if "BYSETPOS" in parts else (),
        wkst=week_start,
        count=_int_in("COUNT", parts["COUNT"], 1, MAX_COUNT) if "COUNT" in parts else None,
        until=_parse_until(parts["UNTIL"]) if "UNTIL" in parts else None,
        weekdays=weekdays,
        week_offsets=tuple(sorted((weekday - week_start) % 7 for weekday in weekdays)),
    )
    ordinals = [abs(n) for n, _ in rule.byday if n is not None]
    if ordinals and freq in ("DAILY", "WEEKLY"):
        raise _invalid(f"BYDAY ordinals such as 1MO or -1FR need FREQ=MONTHLY or YEARLY, not {freq}")
    if ordinals and (freq == "MONTHLY" or rule.bymonth) and max(ordinals) > 5:
        raise _invalid("a BYDAY ordinal within a month must be 1..5 or -5..-1")
    if rule.bymonthday and freq == "WEEKLY":
        raise _invalid("BYMONTHDAY cannot be used with FREQ=WEEKLY (RFC 5545)")
    if rule.bysetpos and not (rule.bymonth or rule.bymonthday or rule.byday):
        raise _invalid("BYSETPOS needs BYDAY, BYMONTHDAY or BYMONTH to choose from (RFC 5545)")
    return rule


def _canonical(parts: dict[str, str], rule: Rule) -> str:
    rendered = {
        "FREQ": rule.freq,
        "INTERVAL": str(rule.interval),
        "COUNT": str(rule.count),
        "UNTIL": _format_until(rule.until) if rule.until is not None else "",
        "BYMONTH": ",".join(map(str, rule.bymonth)),
        "BYMONTHDAY": ",".join(map(str, rule.bymonthday)),
        "BYDAY": ",".join(map(_format_weekday, rule.byday)),
        "BYSETPOS": ",".join(map(str, rule.bysetpos)),
        "WKST": WEEKDAY_CODES[rule.wkst],
    }
    # The user's order is kept (RFC 5545 allows any), except that FREQ leads, as RFC 2445 readers expect.
    keys = ["FREQ", *(key for key in parts if key != "FREQ")]
    return ";".join(f"{key}={rendered[key]}" for key in keys)


@lru_cache(maxsize=512)
def _parse(rule: str) -> tuple[str, Rule]:
    parts = _split(rule)
    parsed = _build(parts)
    return _canonical(parts, parsed), parsed


def parse_rule(rule: str) -> Rule:
    """The parsed form of a rule; InvalidRecurrenceRuleError when it is not in the supported subset."""
    return _parse(rule)[1]


def normalize_rule(rule: str) -> str:
    """The rule in canonical form: no ``RRULE:`` prefix, upper case, FREQ first, values tidied (``+1MO`` → ``1MO``,
    ``UNTIL=2027-03-10`` → ``UNTIL=20270310``). InvalidRecurrenceRuleError when it is not in the supported subset."""
    return _parse(rule)[0]


# --- expansion -------------------------------------------------------------------------------------------------


class _Budget:
    """Candidate days an expansion may still examine; what keeps every call within a few milliseconds."""

    def __init__(self, days: int) -> None:
        self.left = days

    def spend(self, days: int) -> None:
        # A period costs about as much as twelve candidate days before it looks at any.
        self.left -= days + 12


def _month_bounds(year: int, month: int) -> tuple[date, date]:
    first = date(year, month, 1)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return first, following - timedelta(days=1)


def _weekday_days(first: date, last: date, byday: tuple[tuple[int | None, int], ...]) -> set[date]:
    """The days in [first, last] that BYDAY names, ordinals counted within that range."""
    days: set[date] = set()
    for ordinal, weekday in byday:
        first_match = first + timedelta(days=(weekday - first.weekday()) % 7)
        if ordinal is None:
            day = first_match
            while day <= last:
                days.add(day)
                day += _WEEK
        elif ordinal > 0:
            day = first_match + timedelta(days=7 * (ordinal - 1))
            if day <= last:
                days.add(day)
        else:
            last_match = last - timedelta(days=(last.weekday() - weekday) % 7)
            day = last_match - timedelta(days=7 * (-ordinal - 1))
            if day >= first:
                days.add(day)
    return days


def _monthdays(rule: Rule, first: date, last: date) -> list[date]:
    length = last.day
    numbers = {n if n > 0 else length + n + 1 for n in rule.bymonthday}
    return [first.replace(day=n) for n in sorted(numbers) if 1 <= n <= length]


def _month_days(
    rule: Rule, year: int, month: int, start: date, allowed: set[date] | None, budget: _Budget
) -> list[date]:
    """The days a MONTHLY or YEARLY rule picks in one month, before BYSETPOS. ``allowed`` is the year's BYDAY days
    when ordinals count within the year."""
    first, last = _month_bounds(year, month)
    if rule.bymonthday:
        days = _monthdays(rule, first, last)
        if rule.byday:
            allowed = allowed if allowed is not None else _weekday_days(first, last, rule.byday)
            days = [day for day in days if day in allowed]
    elif rule.byday:
        days = sorted(_weekday_days(first, last, rule.byday))
    else:
        # Neither part given: the series' own day of the month, skipped in months that lack it (RFC 5545).
        days = [first.replace(day=start.day)] if start.day <= last.day else []
    budget.spend(len(days))
    return days


def _daily_days(rule: Rule, year: int, month: int, start: date, budget: _Budget) -> list[date]:
    """The days a DAILY rule picks in one calendar month: every INTERVAL-th day from the start, filtered."""
    if rule.bymonth and month not in rule.bymonth:
        budget.spend(0)
        return []
    first, last = _month_bounds(year, month)
    if rule.bymonthday:
        candidates = _monthdays(rule, first, last)
        candidates = [day for day in candidates if (day - start).days % rule.interval == 0]
    else:
        day = first + timedelta(days=(start - first).days % rule.interval)
        step = timedelta(days=rule.interval)
        candidates = []
        while day <= last:
            candidates.append(day)
            day += step
    budget.spend(len(candidates))
    if rule.weekdays:
        return [day for day in candidates if day.weekday() in rule.weekdays]
    return candidates


def _select_positions(days: list[date], positions: tuple[int, ...]) -> list[date]:
    chosen = {days[p - 1 if p > 0 else p] for p in positions if -len(days) <= p <= len(days)}
    return sorted(chosen)


def _week_start(day: date, wkst: int) -> date:
    return day - timedelta(days=(day.weekday() - wkst) % 7)


def _months_between(earlier: date, later: date) -> int:
    return later.year * 12 + later.month - earlier.year * 12 - earlier.month


def _period_index(rule: Rule, start: date, when: date) -> int:
    """The index of the period holding ``when``, counted from the start's period. DAILY periods are calendar
    months (each holding every INTERVAL-th day), so that a month BYMONTH excludes costs one step."""
    if rule.freq == "YEARLY":
        return (when.year - start.year) // rule.interval
    if rule.freq == "MONTHLY":
        return _months_between(start, when) // rule.interval
    if rule.freq == "WEEKLY":
        return (_week_start(when, rule.wkst) - _week_start(start, rule.wkst)).days // 7 // rule.interval
    return _months_between(start, when)


def _period(rule: Rule, start: date, index: int, horizon: date, budget: _Budget) -> list[date] | None:
    """The days period ``index`` picks, sorted, before BYSETPOS; None once the period begins after ``horizon``."""
    if rule.freq == "YEARLY":
        year = start.year + index * rule.interval
        if year > horizon.year:
            return None
        if rule.byday and not rule.bymonth:
            # Ordinals count within the year here ("the 20th Monday"), within the month when BYMONTH is given.
            in_year = _weekday_days(date(year, 1, 1), date(year, 12, 31), rule.byday)
            if not rule.bymonthday:
                budget.spend(len(in_year))
                return sorted(in_year)
            return [day for month in range(1, 13) for day in _month_days(rule, year, month, start, in_year, budget)]
        months = rule.bymonth or (range(1, 13) if rule.bymonthday else (start.month,))
        return [day for month in sorted(months) for day in _month_days(rule, year, month, start, None, budget)]
    if rule.freq == "WEEKLY":
        ordinal = _week_start(start, rule.wkst).toordinal() + 7 * index * rule.interval
        if ordinal > horizon.toordinal():
            return None
        first = date.fromordinal(ordinal)
        days = [first + timedelta(days=offset) for offset in rule.week_offsets or ((start.weekday() - rule.wkst) % 7,)]
        budget.spend(len(days))
        return [day for day in days if not rule.bymonth or day.month in rule.bymonth]
    step = rule.interval if rule.freq == "MONTHLY" else 1
    year, month0 = divmod(start.year * 12 + start.month - 1 + index * step, 12)
    if (year, month0 + 1) > (horizon.year, horizon.month):
        return None
    if rule.freq == "DAILY":
        return _daily_days(rule, year, month0 + 1, start, budget)
    if rule.bymonth and month0 + 1 not in rule.bymonth:
        budget.spend(0)
        return []
    return _month_days(rule, year, month0 + 1, start, None, budget)


def _generate(rule: Rule, start: datetime, first_index: int, horizon: datetime) -> Iterator[datetime]:
    """The rule's own instances as naive wall times, strictly after ``start`` (DTSTART) and up to ``horizon``."""
    # BYSETPOS picks from the set of each DAILY period, which is a single day.
    if rule.freq == "DAILY" and rule.bysetpos and not {1, -1} & set(rule.bysetpos):
        return
    clock = start.time()
    start_day, horizon_day = start.date(), horizon.date()
    budget = _Budget(MAX_CANDIDATES)
    index = first_index
    while budget.left > 0:
        days = _period(rule, start_day, index, horizon_day, budget)
        if days is None:
            return
        if rule.bysetpos and rule.freq != "DAILY":
            days = _select_positions(days, rule.bysetpos)
        for day in days:
            wall = datetime.combine(day, clock)
            if wall > horizon:
                return
            if wall > start:
                yield wall
        index += 1


def _until_instant(until: date | datetime | None, zone: ZoneInfo) -> datetime | None:
    if until is None:
        return None
    if not isinstance(until, datetime):
        # A date-only UNTIL includes that whole day, as a date-only due date means the end of that day.
        return localize(datetime.combine(until, time.max), zone).astimezone(UTC)
    return until if until.tzinfo is not None else localize(until, zone).astimezone(UTC)


def _plus_years(wall: datetime, years: int) -> datetime:
    if wall.year + years > MAX_YEAR:
        return datetime.combine(_LAST_DAY, time.max)
    try:
        return wall.replace(year=wall.year + years)
    except ValueError:  # 29 February
        return wall.replace(year=wall.year + years, month=3, day=1)


def _expand(rule: Rule, series_start: datetime, zone: ZoneInfo, after: datetime, limit: int) -> list[datetime]:
    if series_start.tzinfo is None or after.tzinfo is None:
        raise ValueError("recurrence times must be timezone-aware")
    # Instants are compared in UTC: Python compares two times of one zone by wall clock, ignoring fold.
    start_utc, after_utc = series_start.astimezone(UTC), after.astimezone(UTC)
    if limit < 1 or after_utc.year > MAX_YEAR:
        return []
    if not MIN_YEAR <= start_utc.year <= MAX_YEAR:
        raise ValueError(f"a series must start in {MIN_YEAR}..{MAX_YEAR}")
    # fold is dropped so that every generated time resolves an ambiguous hour to its first occurrence.
    start_wall = start_utc.astimezone(zone).replace(tzinfo=None, fold=0)
    after_wall = after_utc.astimezone(zone).replace(tzinfo=None, fold=0)
    horizon = _plus_years(max(start_wall, after_wall), HORIZON_YEARS)
    until = _until_instant(rule.until, zone)

    found = [start_utc] if start_utc > after_utc else []
    # An UNTIL no later than ``after`` leaves nothing the rule generates after it.
    if len(found) < limit and rule.count != 1 and (until is None or until > after_utc):
        # Without COUNT, instances do not depend on those before them: start one period before ``after`` (a gap
        # time just before it may localize to just after it). With COUNT, every instance since the start counts.
        first_index = 0
        if rule.count is None and after_wall > start_wall:
            first_index = max(0, _period_index(rule, start_wall.date(), after_wall.date()) - 1)
        certainly_before = after_wall - _WALL_SLACK
        produced = 1  # DTSTART
        for wall in _generate(rule, start_wall, first_index, horizon):
            produced += 1
            # Localizing is most of the cost; an instance well before ``after`` (hence before UNTIL, which is
            # later than ``after`` here) only needs counting.
            if wall >= certainly_before:
                instant = wall.replace(tzinfo=zone).astimezone(UTC)  # the gap/repeat rule of ``localize``
                if until is not None and instant > until:
                    break
                # A zone that skipped a whole day (Pacific/Apia, 2011-12-30) moves its time onto the next day's.
                if instant > after_utc and (not found or instant > found[-1]):
                    found.append(instant)
                    if len(found) >= limit:
                        break
            if rule.count is not None and produced >= rule.count:
                break
    return [instant.astimezone(zone) for instant in found]


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else resolve_zone(tz)


def next_occurrences(
    rule: str, series_start: datetime, tz: str | ZoneInfo, after: datetime, limit: int = 5
) -> list[datetime]:
    """Up to ``limit`` occurrences of the series strictly after ``after``, in order, aware in ``tz``.

    ``series_start`` is occurrence 1 (DTSTART). Fewer come back when COUNT or UNTIL ends the series, or when the
    next one is more than ten years past ``after`` (and past the series start).
    """
    return _expand(parse_rule(rule), series_start, _zone(tz), after, limit)


def next_occurrence(
    rule: str, series_start: datetime, tz: str | ZoneInfo, due: datetime, completed_at: datetime
) -> datetime | None:
    """The due date of the occurrence that follows one due at ``due`` and completed at ``completed_at``.

    It is the first occurrence after both, so a late completion skips the missed ones (they still count toward
    COUNT) rather than creating a backlog. None when the series has ended.
    """
    after = max(due.astimezone(UTC), completed_at.astimezone(UTC))
    found = next_occurrences(rule, series_start, tz, after, limit=1)
    return found[0] if found else None


def validate_rule(rule: str, first_due: datetime, tz: str | ZoneInfo) -> str:
    """The normalized rule, after checking it is supported and produces an occurrence within ten years of
    ``first_due`` (COUNT=1 is accepted: the series is that one task)."""
    normalized, parsed = _parse(rule)
    zone = _zone(tz)
    if parsed.count != 1 and not _expand(parsed, first_due, zone, first_due, 1):
        day = first_due.astimezone(zone).date().isoformat()
        raise _invalid(
            f"{normalized} has no occurrence in the {HORIZON_YEARS} years after the due date {day} "
            "(it names days that never come, such as February 30, or its UNTIL is before the due date)"
        )
    return normalized


# --- plain English ---------------------------------------------------------------------------------------------


def _join(items: list[str], word: str = "and") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def _ordinal_word(n: int) -> str:
    words = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}
    if n < 0:
        return "last" if n == -1 else f"{_ordinal_word(-n)}-to-last"
    if n in words:
        return words[n]
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _weekday_phrase(entry: tuple[int | None, int]) -> str:
    ordinal, weekday = entry
    name = _WEEKDAY_NAMES[weekday]
    return name if ordinal is None else f"the {_ordinal_word(ordinal)} {name}"


def _monthday_phrase(days: tuple[int, ...]) -> str:
    if all(n > 0 for n in days):
        return f"day {days[0]}" if len(days) == 1 else f"days {_join([str(n) for n in sorted(days)])}"
    items = [f"day {n}" if n > 0 else f"the {_ordinal_word(n)} day" for n in days]
    return _join(items)


def _weekday_class(byday: tuple[tuple[int | None, int], ...]) -> str | None:
    """A word for a set of plain weekdays BYSETPOS chooses from ("the last weekday")."""
    if any(ordinal is not None for ordinal, _ in byday):
        return None
    weekdays = {weekday for _, weekday in byday}
    return {frozenset(range(5)): "weekday", frozenset({5, 6}): "weekend day", frozenset(range(7)): "day"}.get(
        frozenset(weekdays)
    )


def _until_phrase(until: date | datetime) -> str:
    if not isinstance(until, datetime):
        return until.isoformat()
    clock = until.strftime("%H:%M:%S" if until.second else "%H:%M")
    return f"{until.date().isoformat()} {clock}" + (" UTC" if until.tzinfo is not None else "")


def describe_rule(rule: str) -> str:
    """The rule in plain English: "every week on Monday, 3 times", "every month on the last Friday"."""
    parsed = parse_rule(rule)
    unit = {"DAILY": "day", "WEEKLY": "week", "MONTHLY": "month", "YEARLY": "year"}[parsed.freq]
    text = f"every {unit}" if parsed.interval == 1 else f"every {parsed.interval} {unit}s"
    if parsed.bymonth:
        text += " in " + _join([_MONTH_NAMES[m - 1] for m in sorted(parsed.bymonth)])
    weekday_class = _weekday_class(parsed.byday) if parsed.bysetpos and not parsed.bymonthday else None
    in_order = sorted(parsed.bysetpos, key=lambda p: (p < 0, abs(p)))  # "first and last", not "last and first"
    positions = _join([_ordinal_word(p) for p in in_order]) if in_order else ""
    if weekday_class is not None:
        text += f" on the {positions} {weekday_class}"
    else:
        days = ""
        if parsed.bymonthday:
            days = _monthday_phrase(parsed.bymonthday)
            if parsed.byday:
                kinds = [_weekday_phrase(e) if e[0] is not None else f"a {_weekday_phrase(e)}" for e in parsed.byday]
                days += " if it is " + _join(kinds, "or")
        elif parsed.byday:
            days = _join([_weekday_phrase(e) for e in parsed.byday])
        if days:
            text += f" on {days}"
        if parsed.bysetpos:
            text += f", only the {positions} of those"
    if parsed.count is not None:
        text += {1: ", once", 2: ", twice"}.get(parsed.count, f", {parsed.count} times")
    if parsed.until is not None:
        text += f" until {_until_phrase(parsed.until)}"
    return text
