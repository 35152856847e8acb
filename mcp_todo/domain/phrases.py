"""Times in the user's words: "tomorrow 9am", "next friday", "in 2 hours", "end of month", "monday 14:30", "25 dec".

A phrase is read in the user's zone at the given `now`, preferring the future ("friday" on a Saturday is the coming
Friday, "9am" after nine is tomorrow's). A phrase that names a day but no time means the end of that day, as an ISO
date alone does. What could be read two ways is refused, never guessed: "03/04" (which is the month?), "at 9" (morning
or evening?), a phrase with words left over ("friday xyz"), a time or offset that is none ("13pm", "+99:00"), two
times ("9am 9am") or days, a month or year without its day ("jan 32", "december").

The grammar is dateparser's (a maintained library, imported on the first phrase: it costs ~100 ms, which the
server's cold start does not pay), with a few rules of ours in front: hours and minutes from now count real time
across a DST change, and the ends of a day, week, month or year, which dateparser does not read.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.times import END_OF_DAY, MAX_YEAR, MIN_YEAR, localize

ISO_EXAMPLE: Final = "2027-03-12T09:00"
MAX_PHRASE: Final = 64
# dateparser's time grows with the words it is given (~1 ms a word here, 20-30 ms for 64 characters of one word or
# many on a loaded machine); the longest phrase it needs to read ("the day after tomorrow at 9:30 pm +05:30") has 8
# words, and its longest word is an ISO date and time with an offset.
MAX_WORDS: Final = 8
MAX_WORD: Final = 25

_NUMBERS: Final = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10, "half an": 0}
_IN_CLOCK = re.compile(
    r"in (\d{1,4}|an?|one|two|three|four|five|ten|half an) (minute|min|hour|hr)s?"
    r"(?: (?:and )?(\d{1,2}) (?:minute|min)s?)?"
)
_END_OF = re.compile(r"(?:by )?(?:the )?end of (?:the )?(this |next )?(day|today|week|month|year)")
_NUMERIC_DATE = re.compile(r"\b\d{1,2}[/.]\d{1,2}(?:[/.]\d{2,4})?\b")
# "at 9", "9" alone: morning or evening? (9am, 9:00, 21:00 and 9 pm are all clear.)
_DAY_WORDS = (
    r"today|tomorrow|tonight|(?:next |this )?(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|nesday|sday|urday)?"
)
_BARE_HOUR = re.compile(rf"(?:^|\bat |\b(?:{_DAY_WORDS}) )(\d{{1,2}})(?:$| at\b| on\b)")
_ISO_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}")
# dateparser calls a time that equals its base time ("noon" asked at noon) a day; these words always name a time.
_TIME_WORD = re.compile(
    r"\d\s*[ap]\.?m\b|\d:\d\d|\bnoon\b|\bmidnight\b|\bmorning\b|\bafternoon\b|\bevening\b|\btonight\b"
)
# dateparser reads a day whose time it cannot read ("tomorrow 13pm", "today 99:99", "tomorrow 9am +99:00") as that
# day at the current clock time, and an absolute month or year without a day ("jan 32": January 2032) as that month's
# day of today: so whatever looks like a clock time (digits with am/pm, digits around a colon) or like an offset must
# read exactly as one, before dateparser sees it, and dateparser's answer must carry that time and offset.
_CLOCK_LIKE = re.compile(
    r"(?<![\d+\-:.])\d+(?:[:.]\d+)*\s?[ap]\.?m\b\.?|(?<![\d+\-:.])\d+(?::\d+)+|\bnoon\b|\bmidnight\b"
)
_CLOCK = re.compile(r"(\d{1,2})(?::(\d{2})(?::(\d{2}))?)?\s?([ap])\.?m\.?|(\d{1,2}):(\d{2})(?::(\d{2}))?")
_OFFSET_LIKE = re.compile(r"(?:^|(?<=\s)|(?<=utc)|(?<=gmt))[+-]\d[\d:]*")
_OFFSET = re.compile(r"([+-])(?:(\d{1,2})|(\d{2}):?(\d{2}))")
# The offsets in use (Etc/GMT+12 to Pacific/Kiritimati); ISO 8601 itself allows ±23:59, which dateparser does not read.
MIN_OFFSET: Final = timedelta(hours=-12)
MAX_OFFSET: Final = timedelta(hours=14)
# A month or a year from now keeps today's day of the month ("next month": the 10th, on the 10th); any other phrase
# that dateparser reads as a month or a year names no day ("december", "2028") or one it drops ("next month on the
# 1st").
_MONTH_OR_YEAR_FROM_NOW = re.compile(
    r"(?:next|last|this|(?:in )?(?:a|an|one|two|three|\d{1,4})) (?:months?|years?)(?: ago| from now| from today)?"
)
# Without these words (or a clock time) a phrase that dateparser reads as a time of day is a guess ("tomorrow 9h").
_TIME_FROM_NOW = re.compile(r"\b(?:now|hours?|hrs?|minutes?|mins?|seconds?|secs?)\b")
_DAY_WORD = re.compile(rf"\b(?:yesterday|{_DAY_WORDS})\b")


@dataclass(frozen=True)
class ReadTime:
    """A phrase as read: the wall time in the user's zone (`date_only`: the end of `wall`'s day), or an exact
    instant (hours or minutes from now)."""

    wall: datetime | None
    instant: datetime | None = None
    date_only: bool = False

    def moment(self, zone: ZoneInfo) -> datetime:
        if self.instant is not None:
            return self.instant.astimezone(zone)
        assert self.wall is not None
        return localize(self.wall, zone)

    def argument(self) -> str:
        """The ISO 8601 text the service reads as this time (a wall time without offset is in the user's zone)."""
        if self.instant is not None:
            return self.instant.isoformat(timespec="seconds")
        assert self.wall is not None
        return self.wall.date().isoformat() if self.date_only else self.wall.isoformat(timespec="seconds")


def phrase_error(field: str, phrase: str, problem: str) -> ValidationError:
    shown = phrase if len(phrase) <= MAX_PHRASE else phrase[:MAX_PHRASE] + "…"
    return ValidationError(
        f"{field}: {problem} in {shown!r} — write a phrase such as 'tomorrow 9am', 'next friday', 'in 2 hours', "
        f"or ISO 8601 such as {ISO_EXAMPLE}"
    )


def _normalized(phrase: str) -> str:
    text = " ".join(phrase.lower().replace(",", " ").split()).rstrip(".")
    return text.removeprefix("on ").removeprefix("at ").removeprefix("by ") if text not in ("at", "on") else text


def _end_of(kind: str, which: str, today: date) -> date:
    if kind in ("day", "today"):
        return today + timedelta(days=1) if which == "next " else today
    if kind == "week":  # ISO weeks end on Sunday
        sunday = today + timedelta(days=6 - today.weekday())
        return sunday + timedelta(days=7) if which == "next " else sunday
    if kind == "month":
        year, month = today.year, today.month
        if which == "next ":
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return date(year, month, calendar.monthrange(year, month)[1])
    return date(today.year + (1 if which == "next " else 0), 12, 31)


def _read(text: str, wall_now: datetime) -> tuple[datetime, str] | None:
    """dateparser's reading of `text` at `wall_now` (naive, the user's wall clock): the time and what it named
    ("time", "day", "week", "month", "year"), or None."""
    # ~100 ms of import, paid on the first phrase only; dateparser ships no type hints.
    from dateparser.date import DateDataParser  # type: ignore[import-untyped]

    settings = {"PREFER_DATES_FROM": "future", "RELATIVE_BASE": wall_now, "RETURN_TIME_AS_PERIOD": True}
    result = DateDataParser(languages=["en"], settings=settings).get_date_data(text)
    if result.date_obj is None:
        return None
    return result.date_obj, result.period or "day"


class _Reader:
    warm = False


def warm_phrase_reader() -> None:
    """Pay dateparser's one-time costs: its import and the time-zone expressions it compiles on its first reading
    (~0.5 s, holding the GIL). A server calls this in a worker thread before its first phrase, not on its loop."""
    _read("tomorrow 9am", datetime(2000, 1, 1))
    _Reader.warm = True


def phrase_reader_warm() -> bool:
    return _Reader.warm


def read_phrase(phrase: str, now: datetime, zone: ZoneInfo, *, field: str) -> ReadTime:
    """`phrase` read at `now` (aware) in `zone`; a ValidationError naming `field` when it cannot be read for sure."""
    text = _normalized(phrase)
    if not text:
        raise phrase_error(field, phrase, "no time")
    if len(text) > MAX_PHRASE:
        raise phrase_error(field, phrase, "too long")
    if not text.isascii():  # dateparser reads other scripts' digits too; a time we store is written in 0-9
        raise phrase_error(field, phrase, "only English words and the digits 0-9 are read")
    words = text.split()
    if len(words) > MAX_WORDS or max(len(word) for word in words) > MAX_WORD:
        raise phrase_error(field, phrase, f"more than {MAX_WORDS} words, or a word over {MAX_WORD} characters")
    local_now = now.astimezone(zone)
    if match := _IN_CLOCK.fullmatch(text):
        count, unit, extra = match.groups()
        amount = _NUMBERS[count] if count in _NUMBERS else int(count)
        minutes = amount * (60 if unit.startswith("h") else 1) + int(extra or 0) + (30 if count == "half an" else 0)
        # In UTC: an aware datetime's own arithmetic is wall-clock arithmetic, which a DST change would bend.
        instant = now.astimezone(UTC) + timedelta(minutes=minutes)
        return ReadTime(wall=None, instant=instant.astimezone(zone).replace(microsecond=0))
    if match := _END_OF.fullmatch(text):
        which, kind = match.groups()
        day = _end_of(kind, which or "", local_now.date())
        return ReadTime(wall=datetime.combine(day, END_OF_DAY), date_only=True)
    if (numeric := _NUMERIC_DATE.search(text)) and not _ISO_LIKE.search(text):
        raise phrase_error(field, phrase, f"{numeric.group()!r} could be day/month or month/day")
    if bare := _BARE_HOUR.search(text):
        raise phrase_error(
            field, phrase, f"{bare.group(1)!r} could be morning or evening (say {bare.group(1)}am or {bare.group(1)}pm)"
        )
    clock, offset = _clock_and_offset(text, field, phrase)
    wall_now = local_now.replace(tzinfo=None, microsecond=0)
    data = _read(text, wall_now)
    if data is None:
        raise phrase_error(field, phrase, "not a time it can read for sure")
    parsed, period = data
    if clock is not None and parsed.time().replace(microsecond=0) != clock[1]:
        raise phrase_error(field, phrase, f"could not read the time {clock[0]!r} with the rest")
    if offset is not None and parsed.utcoffset() != offset[1]:
        raise phrase_error(field, phrase, f"could not read the offset {offset[0]!r} with the rest")
    if clock is None and period == "time" and not (_TIME_WORD.search(text) or _TIME_FROM_NOW.search(text)):
        raise phrase_error(field, phrase, "not a time it can read for sure")
    date_words = _without_clock(text)
    if clock is not None and date_words:
        # With a time, dateparser calls every reading a time or a day ("december 9am"): its date part alone says.
        date_part = _read(date_words, wall_now)
        date_period = date_part[1] if date_part else "day"
    else:
        date_period = period
    if date_period in ("month", "year") and not _MONTH_OR_YEAR_FROM_NOW.fullmatch(date_words):
        raise phrase_error(field, phrase, "no day of the month it can read (say e.g. 'jan 5')")
    if parsed.tzinfo is not None:
        return ReadTime(wall=None, instant=_instant(parsed, zone, field, phrase))
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise phrase_error(field, phrase, f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    if period in _TIMES_OF_DAY or _TIME_WORD.search(text):
        return ReadTime(wall=parsed.replace(microsecond=0))
    return ReadTime(wall=datetime.combine(parsed.date(), END_OF_DAY), date_only=True)


_TIMES_OF_DAY: Final = ("time", "part_of_day")


def _clock_time(token: str) -> time | None:
    """The time of day `token` (a `_CLOCK_LIKE` match) names, or None when it names none ("13pm", "0am", "9:60")."""
    if token in ("noon", "midnight"):
        return time(12) if token == "noon" else time(0)
    match = _CLOCK.fullmatch(token)
    if match is None:
        return None
    hour_12, minute_12, second_12, half, hour_24, minute_24, second_24 = match.groups()
    if half:
        hour = int(hour_12)
        if not 1 <= hour <= 12:
            return None
        hour, minute, second = hour % 12 + (12 if half == "p" else 0), int(minute_12 or 0), int(second_12 or 0)
    else:
        hour, minute, second = int(hour_24), int(minute_24), int(second_24 or 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    return time(hour, minute, second)


def _clock_and_offset(
    text: str, field: str, phrase: str
) -> tuple[tuple[str, time] | None, tuple[str, timedelta] | None]:
    """The clock time and the UTC offset `text` gives, each with the words that gave it; a ValidationError when
    something looks like one but is none, or when it gives two ("9am 9am") or names two days."""
    clocks = [token.group() for token in _CLOCK_LIKE.finditer(text)]
    offsets = [token.group() for token in _OFFSET_LIKE.finditer(text)]
    if len(clocks) > 1:
        raise phrase_error(field, phrase, f"two times of day ({clocks[0]!r} and {clocks[1]!r})")
    if len(offsets) > 1:
        raise phrase_error(field, phrase, f"two offsets ({offsets[0]!r} and {offsets[1]!r})")
    if clocks and (relative := _TIME_FROM_NOW.search(text)):
        raise phrase_error(field, phrase, f"a time of day ({clocks[0]!r}) and a time from now ({relative.group()!r})")
    if len(days := _DAY_WORD.findall(text)) > 1:
        raise phrase_error(field, phrase, f"two days ({days[0]!r} and {days[1]!r})")
    clock = None
    if clocks:
        if (read := _clock_time(clocks[0])) is None:
            raise phrase_error(
                field,
                phrase,
                f"{clocks[0]!r} is not a time of day (hours 1-12 with am/pm or 0-23 with a colon, minutes 0-59)",
            )
        clock = (clocks[0], read)
    offset = None
    if offsets:
        match = _OFFSET.fullmatch(offsets[0])
        hours, minutes = (int(match.group(2) or match.group(3)), int(match.group(4) or 0)) if match else (99, 0)
        amount = timedelta(hours=hours, minutes=minutes) * (-1 if offsets[0][0] == "-" else 1)
        if minutes > 59 or not MIN_OFFSET <= amount <= MAX_OFFSET:
            raise phrase_error(field, phrase, f"{offsets[0]!r} is not a UTC offset (-12:00 to +14:00)")
        if clock is None:
            raise phrase_error(field, phrase, f"{offsets[0]!r} reads as a UTC offset, which needs a time before it")
        offset = (offsets[0], amount)
    return clock, offset


def trailing_time(text: str) -> tuple[str, time | None]:
    """`text` (lower case, single spaces) without the time of day it ends with, and that time, read by the phrases'
    own clock grammar: "every monday at 8pm" is ("every monday", 20:00). (text, None) when it ends in no time, or in
    one that names none ("13pm")."""
    clocks = list(_CLOCK_LIKE.finditer(text))
    last = clocks[-1] if clocks else None
    if last is None or text[last.end() :].strip():
        return text, None
    clock = _clock_time(last.group())
    if clock is None:
        return text, None
    rest = text[: last.start()].rstrip()
    return (rest.removesuffix(" at") if rest != "at" else "").strip(), clock


def _without_clock(text: str) -> str:
    """`text` without its clock time, offset and the words that join them to the date ("friday at 5pm": "friday")."""
    rest = _OFFSET_LIKE.sub(" ", _CLOCK_LIKE.sub(" ", text))
    return " ".join(word for word in rest.split() if word not in ("at", "on", "utc", "gmt", "z"))


def _instant(parsed: datetime, zone: ZoneInfo, field: str, phrase: str) -> datetime:
    """An aware reading as the instant in `zone`, within the years a task may have."""
    try:
        instant = parsed.astimezone(UTC)
        if not MIN_YEAR <= instant.year <= MAX_YEAR:
            raise OverflowError
        return instant.astimezone(zone).replace(microsecond=0)
    except OverflowError:  # "dec 31 9999 23:59 -1200" is in the year 10000
        raise phrase_error(field, phrase, f"the year must be between {MIN_YEAR} and {MAX_YEAR}") from None
