"""Todoist's CSV export of a project (`TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,
TIMEZONE,…`).

Kept: task rows (CONTENT → title with its `@labels` → tags, DESCRIPTION, PRIORITY 4/3/2/1 = p1/p2/p3/p4 → urgent/
high/medium/low, INDENT → subtasks of the task above, DATE → the due date: ISO dates, "Mar 10 [2027] [9am]",
"10 Mar …", "today", "tomorrow", and the common repeating phrases "every day|N days|other week|month|year|weekday|
monday, friday|15th …", `every!` → repeat after completion; TIMEZONE → the task's zone), section rows → the category
of the tasks under them, note rows → appended to the task's description.
Lost: AUTHOR, RESPONSIBLE, DURATION, DEADLINE (used as the due date only when DATE is empty), and any DATE phrase not
listed above (kept in the description, reported as partly kept). Todoist writes no id: a task's uid is derived from
its content, its parent's and how many identical ones come before it, so re-importing the same file matches.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.times import END_OF_DAY, resolve_zone
from mcp_todo.porting.records import MAX_RECORD_BYTES, MAX_RECORDS, FormatError, Outcome, Parsed, Record

PRIORITIES: Final = {"4": "urgent", "3": "high", "2": "medium", "1": "low"}
_WEEKDAYS: Final = {
    "monday": "MO",
    "mon": "MO",
    "tuesday": "TU",
    "tue": "TU",
    "tues": "TU",
    "wednesday": "WE",
    "wed": "WE",
    "thursday": "TH",
    "thu": "TH",
    "thurs": "TH",
    "friday": "FR",
    "fri": "FR",
    "saturday": "SA",
    "sat": "SA",
    "sunday": "SU",
    "sun": "SU",
}
_DAY_INDEX: Final = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_MONTHS: Final = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_UNITS: Final = {"day": "DAILY", "week": "WEEKLY", "month": "MONTHLY", "year": "YEARLY"}
_ALIASES: Final = {"daily": "day", "weekly": "week", "monthly": "month", "yearly": "year", "annually": "year"}
_TIME = re.compile(r"(?:\s+at)?\s+(\d{1,2})(?::(\d{2}))?\s*(am|pm)?$")
_LABEL = re.compile(r"(?:^|\s)@([^\s@]+)")
_REQUIRED: Final = ("TYPE", "CONTENT")


def looks_like_todoist(text: str) -> bool:
    header = text.lstrip("\ufeff").split("\n", 1)[0].upper()
    return header.startswith("TYPE,") and "CONTENT" in header


def _time_of(phrase: str) -> tuple[str, time | None]:
    """The phrase without its trailing time ("… at 9am", "… 18:30"), and that time."""
    match = _TIME.search(phrase)
    if match is None or (match.group(2) is None and match.group(3) is None):
        return phrase, None
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if match.group(3) == "pm" and hour < 12:
        hour += 12
    elif match.group(3) == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        return phrase, None
    return phrase[: match.start()].strip(), time(hour, minute)


def _date_of(phrase: str, today: date) -> date | None:
    words = phrase.replace(",", " ").split()
    if phrase in ("today", "tod"):
        return today
    if phrase in ("tomorrow", "tom"):
        return today + timedelta(days=1)
    try:
        return date.fromisoformat(phrase)
    except ValueError:
        pass
    if len(words) in (2, 3):
        month_first = words[0] in _MONTHS and words[1].isdigit()
        day_first = words[0].isdigit() and words[1] in _MONTHS
        if month_first or day_first:
            month = _MONTHS[words[0] if month_first else words[1]]
            day = int(words[1] if month_first else words[0])
            year = int(words[2]) if len(words) == 3 and words[2].isdigit() else None
            try:
                found = date(year or today.year, month, day)
                if year is None and found < today:
                    found = date(today.year + 1, month, day)
            except ValueError:
                return None
            return found
    return None


def _rule_of(body: str) -> str | None:
    """The RRULE for what follows "every" in a Todoist phrase, or None."""
    body = _ALIASES.get(body, body)
    if body in ("weekday", "workday", "weekdays", "workdays"):
        return "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
    if body in ("weekend", "weekends"):
        return "FREQ=WEEKLY;BYDAY=SA,SU"
    match = re.fullmatch(r"(?:(\d{1,3}|other)\s+)?(day|week|month|year)s?", body)
    if match is not None:
        count = match.group(1)
        interval = 2 if count == "other" else int(count or 1)
        if interval < 1:
            return None
        return f"FREQ={_UNITS[match.group(2)]}" + (f";INTERVAL={interval}" if interval > 1 else "")
    days = [word for word in re.split(r"[\s,]+|\band\b", body) if word]
    if days and all(word in _WEEKDAYS for word in days):
        codes = sorted({_WEEKDAYS[word] for word in days}, key=_DAY_INDEX.__getitem__)
        return "FREQ=WEEKLY;BYDAY=" + ",".join(codes)
    match = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?", body)
    if match is not None and 1 <= int(match.group(1)) <= 31:
        return f"FREQ=MONTHLY;BYMONTHDAY={int(match.group(1))}"
    if body in ("last day", "last day of the month"):
        return "FREQ=MONTHLY;BYMONTHDAY=-1"
    return None


def _first_day(rule: str, today: date) -> date:
    """The first day from today on that the rule names (today for a rule without days)."""
    byday = re.search(r"BYDAY=([A-Z,]+)", rule)
    bymonthday = re.search(r"BYMONTHDAY=(-?\d+)", rule)
    for offset in range(0, 62):
        day = today + timedelta(days=offset)
        if byday is not None and day.weekday() not in {_DAY_INDEX[code] for code in byday.group(1).split(",")}:
            continue
        if bymonthday is not None:
            wanted = int(bymonthday.group(1))
            last = ((day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day
            if day.day != (last if wanted == -1 else wanted):
                continue
        return day
    return today


def interpret_date(text: str, today: date) -> tuple[datetime | None, str | None, str]:
    """(the due date as a naive wall time, the RRULE, "schedule" or "completion") of a Todoist DATE; (None, None,
    …) when the phrase is not understood."""
    phrase = " ".join(text.strip().lower().split())
    phrase, at = _time_of(phrase)
    wall_time = at or END_OF_DAY
    mode = "schedule"
    if phrase.split(" ", 1)[0] in _ALIASES:
        phrase = "every " + phrase  # "daily", "weekly at 9am": Todoist's short forms
    match = re.fullmatch(r"(every!|every|after)\s+(.+?)(?:\s+(?:starting|from)\s+(.+))?", phrase)
    if match is not None:
        if match.group(1) != "every":
            mode = "completion"
        rule = _rule_of(match.group(2))
        if rule is None:
            return None, None, mode
        start = _date_of(match.group(3), today) if match.group(3) else None
        first = start or _first_day(rule, today)
        return datetime.combine(first, wall_time), rule, mode
    day = _date_of(phrase, today)
    if day is None:
        return None, None, mode
    return datetime.combine(day, wall_time), None, mode


def _uid(content: str, parent_uid: str | None, nth: int) -> str:
    key = f"{content}\x1f{parent_uid or ''}\x1f{nth}".encode()
    return "todoist-" + hashlib.sha256(key).hexdigest()[:32]


def _rows(text: str) -> Iterator[tuple[int, list[str] | str]]:
    """(the line a row starts on, its cells, or why it cannot be read) for each CSV row: a cell over the csv
    module's limit (131,072 characters) fails its row alone, and the reader goes on at the next line."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    while True:
        line = reader.line_num + 1
        try:
            yield line, next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, f"unreadable CSV: {str(exc)[:120]}"


def count_rows(text: str) -> int:
    """How many rows follow the header (FormatError past the most an import takes), read without interpreting them."""
    count = -1
    for count, _row in enumerate(_rows(text)):
        if count > MAX_RECORDS:
            raise FormatError(f"the file holds more than the {MAX_RECORDS:,} records one import takes — split it")
    return max(count, 0)


def read_todoist(text: str, *, now: datetime, user_zone: str) -> Parsed:
    rows = _rows(text)
    header = next(rows, (1, []))[1]
    fields = [name.strip().upper() for name in header] if isinstance(header, list) else []
    if not all(name in fields for name in _REQUIRED):
        raise FormatError("not a Todoist CSV export: the first line must name the columns TYPE and CONTENT")
    parsed = Parsed()
    section: str | None = None
    parents: list[Record] = []  # the last task at each indent level
    last: Record | None = None
    seen: dict[tuple[str, str | None], int] = {}
    for line, cells in rows:
        where = f"line {line}"
        if isinstance(cells, str):
            parsed.rejected.append(Outcome(where, cells))
            continue
        if sum(map(len, cells)) > MAX_RECORD_BYTES:
            parsed.rejected.append(Outcome(where, f"the row is larger than {MAX_RECORD_BYTES // 1024} KB"))
            continue
        row = {name: value.strip() for name, value in zip(fields, cells, strict=False)}
        kind = row.get("TYPE", "").lower()
        if kind == "section":
            section = row.get("CONTENT") or None
            continue
        if kind == "note":
            if last is not None and row.get("CONTENT"):
                last.description = ((last.description + "\n\n") if last.description else "") + row["CONTENT"]
            continue
        if kind != "task":
            if kind or any(row.values()):
                parsed.rejected.append(Outcome(where, f"unknown row TYPE {kind[:20]!r}"))
            continue
        try:
            record = _task(row, where, now, user_zone, section, parents, seen)
        except (ValueError, ValidationError) as exc:
            parsed.rejected.append(Outcome(where, str(exc)[:200]))
            continue
        parsed.records.append(record)
        last = record
    if not parsed.records and not parsed.rejected:
        raise FormatError("the Todoist CSV export holds no task rows")
    return parsed


def _task(
    row: dict[str, str],
    where: str,
    now: datetime,
    user_zone: str,
    section: str | None,
    parents: list[Record],
    seen: dict[tuple[str, str | None], int],
) -> Record:
    content = row.get("CONTENT", "")
    tags = _LABEL.findall(content)
    title = _LABEL.sub(" ", content).strip()
    indent_text = row.get("INDENT") or "1"
    if not indent_text.isdigit() or not 1 <= int(indent_text) <= 10:
        raise ValueError(f"INDENT {indent_text[:10]!r} is not a level from 1 to 10")
    indent = int(indent_text)
    del parents[indent - 1 :]
    parent_uid = parents[-1].uid if parents else None
    nth = seen.get((content, parent_uid), 0) + 1
    seen[(content, parent_uid)] = nth
    record = Record(uid=_uid(content, parent_uid, nth), title=title, where=where, parent_uid=parent_uid)
    record.description = row.get("DESCRIPTION") or None
    priority = row.get("PRIORITY") or "1"
    if priority not in PRIORITIES:
        raise ValueError(f"PRIORITY {priority[:10]!r} is not 1 to 4")
    record.priority = PRIORITIES[priority]
    record.tags = tags
    record.category = section
    zone_name = row.get("TIMEZONE") or user_zone
    try:
        zone: ZoneInfo = resolve_zone(zone_name)
        record.time_zone = zone_name
    except ValidationError:
        if row.get("DATE") or row.get("DEADLINE"):
            raise ValueError(f"TIMEZONE {zone_name[:64]!r} is not an IANA zone: its DATE cannot be placed") from None
        record.lost.append(f"TIMEZONE {zone_name[:64]!r} is not an IANA zone: not kept")
        zone = resolve_zone(user_zone)
    today = now.astimezone(zone).date()
    phrase = row.get("DATE") or ""
    if not phrase and row.get("DEADLINE"):
        phrase = row["DEADLINE"]
        record.lost.append("DEADLINE used as the due date")
    elif row.get("DEADLINE"):
        record.lost.append(f"DEADLINE {row['DEADLINE'][:40]!r} not kept")
    if phrase:
        due, rule, mode = interpret_date(phrase, today)
        if due is None:
            record.description = (
                (record.description + "\n\n") if record.description else ""
            ) + f"Todoist date: {phrase}"
            record.lost.append(f"DATE {phrase[:60]!r} not understood: kept in the description")
        else:
            record.due, record.due_wall, record.rule, record.recurrence_from = due, due, rule, mode
    for name in ("RESPONSIBLE", "DURATION"):
        if row.get(name):
            record.lost.append(f"{name} not kept")
    parents.append(record)
    return record
