"""Times in the user's words: "tomorrow 9am", "next friday", "in 2 hours", "end of month", "monday 14:30", "25 dec".

A phrase is read in the user's zone at the given `now`, preferring the future ("friday" on a Saturday is the coming
Friday, "9am" after nine is tomorrow's). A phrase that names a day but no time means the end of that day, as an ISO
date alone does. What could be read two ways is refused, never guessed: "03/04" (which is the month?), "at 9" (morning
or evening?), a phrase with words left over ("friday xyz").

The grammar is dateparser's (a maintained library, imported on the first phrase: it costs ~100 ms, which the
server's cold start does not pay), with a few rules of ours in front: hours and minutes from now count real time
across a DST change, and the ends of a day, week, month or year, which dateparser does not read.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.times import END_OF_DAY, MAX_YEAR, MIN_YEAR, localize

ISO_EXAMPLE: Final = "2027-03-12T09:00"
MAX_PHRASE: Final = 64

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


def read_phrase(phrase: str, now: datetime, zone: ZoneInfo, *, field: str) -> ReadTime:
    """`phrase` read at `now` (aware) in `zone`; a ValidationError naming `field` when it cannot be read for sure."""
    text = _normalized(phrase)
    if not text:
        raise phrase_error(field, phrase, "no time")
    if len(text) > MAX_PHRASE:
        raise phrase_error(field, phrase, "too long")
    if not text.isascii():  # dateparser reads other scripts' digits too; a time we store is written in 0-9
        raise phrase_error(field, phrase, "only English words and the digits 0-9 are read")
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
    wall_now = local_now.replace(tzinfo=None, microsecond=0)
    data = _read(text, wall_now)
    if data is None:
        raise phrase_error(field, phrase, "not a time it can read for sure")
    parsed, period = data
    if parsed.tzinfo is not None:
        instant = parsed.astimezone(zone)
        return ReadTime(wall=None, instant=instant.replace(microsecond=0))
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise phrase_error(field, phrase, f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    if period in ("time", "part_of_day") or _TIME_WORD.search(text):
        return ReadTime(wall=parsed.replace(microsecond=0))
    return ReadTime(wall=datetime.combine(parsed.date(), END_OF_DAY), date_only=True)
