"""The RRULE grammar: the supported subset of RFC 5545, parsed, normalized and described in plain English.

Expansion (which dates a rule produces, in the task's zone) is in ``mcp_todo.domain.recurrence``, which imports
this module; nothing here depends on expansion, and callers import the grammar's names from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.times import MAX_YEAR, MIN_YEAR

MAX_RULE_LENGTH = 500
MAX_INTERVAL = 1000
MAX_COUNT = 1000

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


def invalid_rule(problem: str) -> InvalidRecurrenceRuleError:
    """The error for a rule outside the subset; it ends with what is supported, so the caller can fix the rule."""
    return InvalidRecurrenceRuleError(f"{problem}. {SUPPORTED}")


def _int_in(key: str, text: str, low: int, high: int, *, signed: bool = False) -> int:
    value = int(text) if _INT.fullmatch(text) else None
    in_range = value is not None and (
        (-high <= value <= -low or low <= value <= high) if signed else low <= value <= high
    )
    if value is None or not in_range:
        span = f"{low}..{high} or -{high}..-{low}" if signed else f"{low}..{high}"
        raise invalid_rule(f"{key}={text} is not valid: each value must be a whole number in {span}")
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
            raise invalid_rule(
                f"BYDAY={text} is not valid: use two-letter days such as MO,WE or ordinals such as 1MO, -1FR"
            )
        ordinal = int(match.group(1)) if match.group(1) else None
        if ordinal is not None and not 1 <= abs(ordinal) <= 53:
            raise invalid_rule(f"BYDAY={text} is not valid: an ordinal must be 1..53 or -53..-1")
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
        raise invalid_rule(f"UNTIL={text} is not a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS, Z for UTC)") from None
    if not MIN_YEAR <= until.year <= MAX_YEAR:
        raise invalid_rule(f"UNTIL={text} is out of range: the year must be {MIN_YEAR}..{MAX_YEAR}")
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
        raise invalid_rule(f"the rule is longer than {MAX_RULE_LENGTH} characters")
    text = rule.strip()
    if text[:6].upper() == "RRULE:":
        text = text[6:].strip()
    if not text:
        raise invalid_rule("the rule is empty")
    parts: dict[str, str] = {}
    for raw in text.split(";"):
        part = raw.strip()
        if not part:
            raise invalid_rule("the rule has an empty part (two ';' in a row, or one at the start or end)")
        key, sep, value = (piece.strip() for piece in part.partition("="))
        key, value = key.upper(), value.upper()
        if not sep or not key or not value:
            raise invalid_rule(f"{part[:40]!r} is not KEY=VALUE")
        if key in _KNOWN_UNSUPPORTED or key.startswith("X-"):
            raise invalid_rule(f"{key} is not supported")
        if key not in _SUPPORTED_KEYS:
            raise invalid_rule(f"{key[:40]!r} is not a recurrence rule part")
        if key in parts:
            raise invalid_rule(f"{key} appears more than once")
        parts[key] = value
    return parts


def _build(parts: dict[str, str]) -> Rule:
    freq = parts.get("FREQ")
    if freq is None:
        raise invalid_rule("FREQ is missing")
    if freq not in FREQUENCIES:
        raise invalid_rule(f"FREQ={freq[:20]} is not supported")
    if "COUNT" in parts and "UNTIL" in parts:
        raise invalid_rule("COUNT and UNTIL cannot both be given (RFC 5545)")
    wkst = parts.get("WKST")
    if wkst is not None and wkst not in WEEKDAY_CODES:
        raise invalid_rule(f"WKST={wkst[:20]} is not a two-letter day such as MO or SU")
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
        raise invalid_rule(f"BYDAY ordinals such as 1MO or -1FR need FREQ=MONTHLY or YEARLY, not {freq}")
    if ordinals and (freq == "MONTHLY" or rule.bymonth) and max(ordinals) > 5:
        raise invalid_rule("a BYDAY ordinal within a month must be 1..5 or -5..-1")
    if rule.bymonthday and freq == "WEEKLY":
        raise invalid_rule("BYMONTHDAY cannot be used with FREQ=WEEKLY (RFC 5545)")
    if rule.bysetpos and not (rule.bymonth or rule.bymonthday or rule.byday):
        raise invalid_rule("BYSETPOS needs BYDAY, BYMONTHDAY or BYMONTH to choose from (RFC 5545)")
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
def parse_normalized(rule: str) -> tuple[str, Rule]:
    """The canonical text and the parsed form of a rule, together (validation needs both; cached, as every
    expansion parses its rule)."""
    parts = _split(rule)
    parsed = _build(parts)
    return _canonical(parts, parsed), parsed


def parse_rule(rule: str) -> Rule:
    """The parsed form of a rule; InvalidRecurrenceRuleError when it is not in the supported subset."""
    return parse_normalized(rule)[1]


def normalize_rule(rule: str) -> str:
    """The rule in canonical form: no ``RRULE:`` prefix, upper case, FREQ first, values tidied (``+1MO`` → ``1MO``,
    ``UNTIL=2027-03-10`` → ``UNTIL=20270310``). InvalidRecurrenceRuleError when it is not in the supported subset."""
    return parse_normalized(rule)[0]


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


COMPLETION_SUPPORTED = (
    "With recurrence_from=completion a rule is FREQ=DAILY|WEEKLY|MONTHLY|YEARLY with INTERVAL=1..1000 and "
    "optionally COUNT or UNTIL, e.g. FREQ=DAILY;INTERVAL=3 (3 days after each completion)"
)
_COMPLETION_KEYS = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL"})


def completion_rule(rule: str) -> tuple[str, Rule]:
    """The canonical text and parsed form of a rule for repeating after completion: an interval (FREQ and
    INTERVAL) and at most COUNT or UNTIL; days, months or positions to pick (BYDAY…) mean a schedule."""
    normalized, parsed = parse_normalized(rule)
    extra = sorted(set(_split(rule)) - _COMPLETION_KEYS)
    if extra:
        raise InvalidRecurrenceRuleError(
            f"{', '.join(extra)} cannot be used when repeating after completion. {COMPLETION_SUPPORTED}"
        )
    return normalized, parsed


def with_count(rule: str, count: int) -> str:
    """The canonical rule with its COUNT replaced by `count` (the rule must have a COUNT)."""
    return ";".join(f"COUNT={count}" if part.startswith("COUNT=") else part for part in normalize_rule(rule).split(";"))


_UNITS = {"DAILY": "day", "WEEKLY": "week", "MONTHLY": "month", "YEARLY": "year"}


def _count_phrase(count: int | None) -> str:
    if count is None:
        return ""
    return {1: ", once", 2: ", twice"}.get(count, f", {count} times")


def describe_rule(rule: str, *, from_completion: bool = False) -> str:
    """The rule in plain English: "every week on Monday, 3 times", "every month on the last Friday"; repeating after
    completion, the interval: "3 days after completion", "1 week after completion, twice"."""
    parsed = parse_rule(rule)
    unit = _UNITS[parsed.freq]
    if from_completion:
        text = f"{parsed.interval} {unit}{'' if parsed.interval == 1 else 's'} after completion"
        text += _count_phrase(parsed.count)
        if parsed.until is not None:
            text += f" until {_until_phrase(parsed.until)}"
        return text
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
    text += _count_phrase(parsed.count)
    if parsed.until is not None:
        text += f" until {_until_phrase(parsed.until)}"
    return text
