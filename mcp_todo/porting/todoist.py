"""Todoist's CSV export of a project (`TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,
TIMEZONE,…`).

Kept: task rows (CONTENT → title with its `@labels` → tags, DESCRIPTION, PRIORITY 4/3/2/1 = p1/p2/p3/p4 → urgent/
high/medium/low, INDENT → subtasks of the task above, DATE → the due date and repeat, read by the tools' own
grammars of times and of rules in words: ISO dates, "Mar 10 [2027] [9am]", "10 Mar …", "today", "tomorrow", and the
repeating phrases "every day|N days|other week|month|year|weekday|monday, friday|15th …", `every!` → repeat after
completion; TIMEZONE → the task's zone), section rows → the category of the tasks under them, note rows → appended to
the task's description.
Lost: AUTHOR, RESPONSIBLE, DURATION, DEADLINE (used as the due date only when DATE is empty), and any DATE phrase
those grammars do not read (kept in the description, reported as partly kept). Todoist writes no id: a task's uid
is derived from its content, its parent's and how many identical ones come before it, so re-importing the same file
matches.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from mcp_todo.domain.errors import InvalidRecurrenceRuleError, ValidationError
from mcp_todo.domain.phrases import read_phrase, trailing_time
from mcp_todo.domain.recurrence import first_day
from mcp_todo.domain.rrule import MAX_RULE_LENGTH
from mcp_todo.domain.rrule_phrases import rule_in_words
from mcp_todo.domain.times import END_OF_DAY, resolve_zone
from mcp_todo.porting.records import MAX_RECORD_BYTES, MAX_RECORDS, FormatError, Outcome, Parsed, Record

PRIORITIES: Final = {"4": "urgent", "3": "high", "2": "medium", "1": "low"}
# Todoist's short words, in the words the phrase grammar reads.
_SHORT_WORDS: Final = {"tod": "today", "tom": "tomorrow"}
_REPEAT = re.compile(r"(every!|every|after) (.+?)(?: (?:starting|from) (.+))?")
_LABEL = re.compile(r"(?:^|\s)@([^\s@]+)")
_REQUIRED: Final = ("TYPE", "CONTENT")


def looks_like_todoist(text: str) -> bool:
    header = text.lstrip("\ufeff").split("\n", 1)[0].upper()
    return header.startswith("TYPE,") and "CONTENT" in header


@functools.lru_cache(maxsize=4096)
def _wall(phrase: str, now: datetime, zone: ZoneInfo) -> datetime | None:
    """The naive wall time in `zone` that a date phrase names (a date alone: the end of its day), or None. ISO 8601
    is read directly; anything else by the tools' phrase grammar (an export repeats its phrases, hence the cache)."""
    try:
        return datetime.combine(date.fromisoformat(phrase), END_OF_DAY)
    except ValueError:
        pass
    try:
        iso = datetime.fromisoformat(phrase)
        return iso.astimezone(zone).replace(tzinfo=None) if iso.tzinfo is not None else iso
    except ValueError:
        pass
    try:
        read = read_phrase(phrase, now, zone, field="DATE")
    except ValidationError:
        return None
    return read.wall if read.wall is not None else read.moment(zone).replace(tzinfo=None)


def interpret_date(text: str, now: datetime, zone: ZoneInfo) -> tuple[datetime | None, str | None, str]:
    """(the due date as a naive wall time in `zone`, the RRULE, "schedule" or "completion") of a Todoist DATE read at
    `now`; (None, None, …) when the phrase is not understood.

    A DATE is a date phrase ("Mar 10 9am", "tomorrow") or a repeating one ("every monday, friday at 8pm",
    "every! 3 days" — after completion —, "every day starting jan 4", "weekly"): dates and times are read by the
    tools' grammar of times in words (`domain.phrases`), repeats by their grammar of rules in words
    (`domain.rrule_phrases`), and a repeat starts on the first day its rule names (`domain.recurrence.first_day`).
    """
    phrase = " ".join(_SHORT_WORDS.get(word, word) for word in text.lower().split())
    if not phrase or len(phrase) > MAX_RULE_LENGTH:
        return None, None, "schedule"
    words, at = trailing_time(phrase)
    match = _REPEAT.fullmatch(words)
    if match is None:
        rule = rule_in_words(words)  # "daily", "weekly at 9am": a repeat without "every"
        if rule is None:
            return _wall(phrase, now, zone), None, "schedule"
        mode, start = "schedule", None
    else:
        kind, body, start = match.groups()
        mode = "schedule" if kind == "every" else "completion"
        rule = rule_in_words(f"every {body}") or rule_in_words(body)
        if rule is None:
            return None, None, mode
    begins = _wall(start, now, zone) if start else None
    try:
        first = begins.date() if begins is not None else first_day(rule, now.astimezone(zone).date())
    except InvalidRecurrenceRuleError:  # words the grammar reads into a rule outside the subset ("every 32nd")
        return None, None, mode
    return datetime.combine(first, at or END_OF_DAY), rule, mode


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
    phrase = row.get("DATE") or ""
    if not phrase and row.get("DEADLINE"):
        phrase = row["DEADLINE"]
        record.lost.append("DEADLINE used as the due date")
    elif row.get("DEADLINE"):
        record.lost.append(f"DEADLINE {row['DEADLINE'][:40]!r} not kept")
    if phrase:
        due, rule, mode = interpret_date(phrase, now, zone)
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
