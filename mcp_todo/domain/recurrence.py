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

The rule grammar (parsing, canonical form, plain-English description) is in ``mcp_todo.domain.rrule``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mcp_todo.domain.rrule import (
    Rule,
    completion_rule,
    invalid_rule,
    normalize_rule,
    parse_normalized,
    parse_rule,
    with_count,
)
from mcp_todo.domain.times import MAX_YEAR, MIN_YEAR, localize, resolve_zone

HORIZON_YEARS = 10
# Bounds the work of one expansion, in candidate days (~0.2 µs each, a period counting as twelve): a few ms at most.
# A rule without COUNT starts near ``after`` and meets the ten-year horizon well before this (WEEKLY, the costliest,
# needs ~10 000); only a COUNT series, walked from its start, can run out, and not within its first twenty years.
MAX_CANDIDATES = 20_000

_LAST_DAY = date(MAX_YEAR, 12, 31)
_WEEK = timedelta(days=7)
# Instants and wall times in one zone differ by less than this, whatever the DST or zone history.
_WALL_SLACK = timedelta(days=2)


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
    # The series keeps the wall time it was asked for. A start given in the zone itself may be one that its day
    # skips (02:00 on the day clocks jump to 03:00): occurrence 1 moves forward by the gap, the later ones keep
    # 02:00 where it exists (RFC 5545 DTSTART). Converting through UTC first would give 03:00 for all of them.
    start_local = series_start.astimezone(zone)  # unchanged when it is in ``zone`` already
    # fold is dropped so that every generated time resolves an ambiguous hour to its first occurrence.
    start_wall = start_local.replace(tzinfo=None, fold=0)
    if start_utc.astimezone(zone).replace(tzinfo=None) != start_local.replace(tzinfo=None):
        start_utc = localize(start_wall, zone).astimezone(UTC)  # a skipped time, whatever its fold: forward
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


def series_dtstart(series_start: datetime, asked_wall: datetime | None, tz: str | ZoneInfo) -> datetime:
    """The start to expand a stored series from: ``series_start`` (an instant, as stored), or the wall time the
    series was asked to start at (naive, in ``tz``) when that is a time the day skips and stands for that instant.

    A database keeps instants, and on the day clocks jump from 02:00 to 03:00 both name the same one; the asked
    wall time, given to the expansion as a time in the zone itself, is what keeps 02:00 on the later days. Any
    other stored wall time changes nothing (an anchor moved without it, an ambiguous hour's second occurrence): the
    instant wins.
    """
    if asked_wall is None:
        return series_start
    zone = _zone(tz)
    if series_start.astimezone(zone).replace(tzinfo=None) == asked_wall:
        return series_start  # not skipped: the instant says it all
    asked = asked_wall.replace(tzinfo=zone, fold=0)
    return asked if asked.astimezone(UTC) == series_start.astimezone(UTC) else series_start


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


def first_day(rule: str, today: date) -> date:
    """The first day from `today` on that `rule` names, where a series asked for in words starts ("every friday":
    the coming Friday, or today on a Friday): `today` for a rule that names no days (FREQ and INTERVAL alone), else
    the first day its BY… parts allow, its interval and its end aside. `today` when no day within ten years fits."""
    parsed = parse_rule(rule)
    if not (parsed.byday or parsed.bymonthday or parsed.bymonth):
        return today
    # Expanded at noon UTC from the day before (occurrence 1, excluded by `after`), so today itself can be the first.
    day_before = datetime.combine(today - timedelta(days=1), time(12), tzinfo=UTC)
    every = replace(parsed, interval=1, count=None, until=None)
    found = _expand(every, day_before, ZoneInfo("UTC"), day_before, 1)
    return found[0].date() if found else today


def validate_rule(rule: str, first_due: datetime, tz: str | ZoneInfo) -> str:
    """The normalized rule, after checking it is supported and produces an occurrence within ten years of
    ``first_due`` (COUNT=1 is accepted: the series is that one task)."""
    normalized, parsed = parse_normalized(rule)
    zone = _zone(tz)
    if parsed.count != 1 and not _expand(parsed, first_due, zone, first_due, 1):
        day = first_due.astimezone(zone).date().isoformat()
        raise invalid_rule(
            f"{normalized} has no occurrence in the {HORIZON_YEARS} years after the due date {day} "
            "(it names days that never come, such as February 30, or its UNTIL is before the due date)"
        )
    return normalized


# --- repeating after completion -----------------------------------------------------------------------------------


def _plus_interval(day: date, freq: str, steps: int) -> date:
    """``day`` plus ``steps`` days, weeks, months or years; a day the month lacks becomes its last day (31 January
    plus a month is 28 or 29 February)."""
    if freq == "DAILY":
        return day + timedelta(days=steps)
    if freq == "WEEKLY":
        return day + timedelta(days=7 * steps)
    months = steps if freq == "MONTHLY" else 12 * steps
    year, month0 = divmod(day.year * 12 + day.month - 1 + months, 12)
    if year > MAX_YEAR:
        return _LAST_DAY
    last = _month_bounds(year, month0 + 1)[1].day
    return date(year, month0 + 1, min(day.day, last))


def validate_completion_rule(rule: str, first_due: datetime, tz: str | ZoneInfo) -> str:
    """The normalized rule for repeating a fixed interval after each completion: FREQ and INTERVAL, optionally
    COUNT or UNTIL (an UNTIL before the due date leaves nothing to repeat)."""
    normalized, parsed = completion_rule(rule)
    until = _until_instant(parsed.until, _zone(tz))
    if until is not None and until <= first_due.astimezone(UTC):
        raise invalid_rule(f"{normalized} ends (UNTIL) before the due date, so the task would never repeat")
    return normalized


def next_after_completion(
    rule: str, wall_clock: time, tz: str | ZoneInfo, due: datetime, completed_at: datetime
) -> tuple[datetime, str] | None:
    """The occurrence that follows one due at ``due`` and completed at ``completed_at`` when a task repeats a fixed
    interval after each completion (Todoist's ``every!``), and the rule that occurrence carries; None when the series
    has ended.

    Its day is the completion's day in the task's zone plus the rule's interval (days, weeks, months or years), at
    the series' wall-clock time (``wall_clock``: 09:00 stays 09:00 across DST; a time the day skips moves forward by
    the gap, an ambiguous one takes the first). An occurrence is always later than the one completed: an early
    completion adds intervals until it is. COUNT counts down (the next occurrence carries the ones left, so COUNT=1
    is the last); UNTIL ends the series at that time.
    """
    parsed = parse_rule(rule)
    if parsed.count == 1:
        return None
    zone = _zone(tz)
    due_utc, done_utc = due.astimezone(UTC), completed_at.astimezone(UTC)
    start_day = done_utc.astimezone(zone).date()
    until = _until_instant(parsed.until, zone)
    for steps in range(parsed.interval, parsed.interval * MAX_CANDIDATES + 1, parsed.interval):
        day = _plus_interval(start_day, parsed.freq, steps)
        candidate = localize(datetime.combine(day, wall_clock), zone)
        if until is not None and candidate.astimezone(UTC) > until:
            return None
        if candidate.astimezone(UTC) > max(due_utc, done_utc):
            following = rule if parsed.count is None else with_count(rule, parsed.count - 1)
            return candidate, normalize_rule(following)
        if day >= _LAST_DAY:
            return None
    return None
