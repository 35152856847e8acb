"""iCalendar (RFC 5545) VTODO, read and written through the `icalendar` library.

Written (as content lines, `todo_text`): SUMMARY, DESCRIPTION, DUE with TZID (and the VTIMEZONE blocks RFC 5545 asks
for) or, due on a date alone, a DATE, PRIORITY, STATUS, COMPLETED, CREATED, CATEGORIES (the tags), RRULE, a VALARM
(TRIGGER relative to DUE for a lead, absolute otherwise; ACKNOWLEDGED, RFC 9074, once it fired),
RELATED-TO;RELTYPE=PARENT for a subtask and RELTYPE=DEPENDS-ON (RFC 9253) per blocker, and X-MCP-TODO-* properties
for what RFC 5545 has no word for (the category, repeat-from-completion, the series' first due date, the zone of a
DATE due).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import warnings
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import icalendar
from icalendar.error import GloballyUniqueTZIDGuessed

from mcp_todo import __version__
from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.reminder_times import is_all_day
from mcp_todo.domain.times import END_OF_DAY, localize, resolve_zone
from mcp_todo.porting.progress import Progress
from mcp_todo.porting.records import (
    MAX_RECORD_BYTES,
    MAX_RECORDS,
    FormatError,
    Outcome,
    Parsed,
    Record,
    Series,
    describe,
)

PRODID: Final = f"-//mcp-todo//mcp-todo {__version__}//EN"
X_CATEGORY: Final = "X-MCP-TODO-CATEGORY"
X_RECURRENCE_FROM: Final = "X-MCP-TODO-RECURRENCE-FROM"
X_SERIES: Final = "X-MCP-TODO-SERIES"
X_SERIES_START: Final = "X-MCP-TODO-SERIES-START"
X_SERIES_WALL: Final = "X-MCP-TODO-SERIES-WALL"
X_REMINDER: Final = "X-MCP-TODO-REMINDER"
# The zone of a task due on a date alone (a DATE has no TZID): where its day ends.
X_ZONE: Final = "X-MCP-TODO-ZONE"

# RFC 5545 PRIORITY: 1 highest … 9 lowest, 0 undefined; 1–4 are "high", 5 "medium", 6–9 "low" (CUA convention).
PRIORITY_OUT: Final = {"urgent": 1, "high": 3, "medium": 5, "low": 9}


def priority_in(value: int) -> str:
    if value == 1:
        return "urgent"
    if 2 <= value <= 4:
        return "high"
    if 6 <= value <= 9:
        return "low"
    return "medium"  # 5, and 0 (undefined)


# --- writing ------------------------------------------------------------------------------------------------------


def write_ics(parsed: Parsed, *, now: datetime, progress: Progress | None = None) -> str:
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", "mcp-todo")
    head: bytes = calendar.to_ical()
    head = head[: head.rindex(b"END:VCALENDAR")]
    total = len(parsed.records)
    todos: list[bytes] = []
    for done, record in enumerate(parsed.records):
        if progress is not None:
            progress(done, total)
        todos.append(todo_text(record, now))
    # TZID names are IANA names, which most readers resolve themselves; the VTIMEZONE blocks are for the others.
    zones = sorted({zone for record in parsed.records if (zone := tzid_of(record)) is not None})
    written = head + b"".join(zone_block(zone) for zone in zones) + b"".join(todos) + b"END:VCALENDAR\r\n"
    if progress is not None:
        progress(total, total)
    return written.decode("utf-8")


@functools.lru_cache(maxsize=64)
def zone_block(zone: str) -> bytes:
    """The VTIMEZONE of an IANA zone as icalendar writes it, built once per process (building one takes longer than
    a whole VTODO)."""
    calendar = icalendar.Calendar()
    todo = icalendar.Todo()
    todo.add("due", datetime(2000, 1, 1, tzinfo=UTC).astimezone(ZoneInfo(zone)))
    calendar.add_component(todo)
    calendar.add_missing_timezones()
    blocks: list[bytes] = [component.to_ical() for component in calendar.subcomponents if component.name == "VTIMEZONE"]
    return b"".join(blocks)


def tzid_of(record: Record, dated: bool | None = None) -> str | None:
    """The zone the record's DUE names (TZID), or None: no due date, a DATE, or UTC."""
    if record.due is None or not record.time_zone or record.time_zone == "UTC":
        return None
    if all_day(record) if dated is None else dated:
        return None
    return record.time_zone


# --- one VTODO, written as text -----------------------------------------------------------------------------------
# The properties are written straight to content lines, as icalendar writes them (the names in order, values escaped
# and lines folded the same way): building icalendar objects took most of a millisecond per VTODO, which a CalDAV
# client's first query of a large collection paid a thousand times over.


def _escape(value: str) -> str:
    """A TEXT value (RFC 5545 §3.3.11)."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\r", "\\n")
        .replace("\n", "\\n")
    )


def _raw(value: str) -> str:
    """An X- property's value: written as given (icalendar's way: it knows no type to escape it for), but on one
    line."""
    return value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def _wall(value: datetime) -> str:
    """A DATE-TIME's digits (strftime takes several times as long)."""
    return f"{value.year:04d}{value.month:02d}{value.day:02d}T{value.hour:02d}{value.minute:02d}{value.second:02d}"


def _utc(value: datetime) -> str:
    return _wall(value.astimezone(UTC)) + "Z"


def _fold(line: str) -> str:
    """The content line folded at 75 octets, never right after a backslash (as icalendar folds)."""
    if len(line) < 75 and line.isascii():
        return line + "\r\n"
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for char in line:
        width = len(char.encode("utf-8"))
        if current and size + width >= 75:
            if len(current) > 1 and current[-1] in "\\^":
                carried = current.pop()
                parts.append("".join(current))
                current, size = [carried], len(carried.encode("utf-8"))
            else:
                parts.append("".join(current))
                current, size = [], 0
        current.append(char)
        size += width
    parts.append("".join(current))
    return "\r\n ".join(parts) + "\r\n"


def _due_line(record: Record, zone: ZoneInfo, dated: bool) -> str | None:
    if record.due is None:
        return None
    if dated:
        return "DUE;VALUE=DATE:" + _wall(record.due.astimezone(zone))[:8]
    if zone.key == "UTC" or record.due.tzinfo is None:
        return "DUE:" + (_utc(record.due) if record.due.tzinfo is not None else _wall(record.due))
    return f"DUE;TZID={zone.key}:" + _wall(record.due.astimezone(zone))


def todo_text(record: Record, now: datetime, *, with_category: bool = True) -> bytes:
    """One task's VTODO as an export writes it (and CalDAV serves it: without X-MCP-TODO-CATEGORY, which the
    collection says there): SUMMARY, DESCRIPTION, DUE (a DATE when due on a date alone), PRIORITY, STATUS,
    COMPLETED, CREATED, CATEGORIES, RRULE, RELATED-TO (PARENT, DEPENDS-ON), the VALARM, and the X-MCP-TODO-*
    properties RFC 5545 has no word for."""
    zone = ZoneInfo(record.time_zone) if record.time_zone else ZoneInfo("UTC")
    props: list[tuple[str, str]] = [("UID", "UID:" + _escape(record.uid)), ("DTSTAMP", "DTSTAMP:" + _utc(now))]
    if record.created_at is not None:
        props.append(("CREATED", "CREATED:" + _utc(record.created_at)))
    props.append(("SUMMARY", "SUMMARY:" + _escape(record.title)))
    if record.description:
        props.append(("DESCRIPTION", "DESCRIPTION:" + _escape(record.description)))
    dated = all_day(record)
    due = _due_line(record, zone, dated)
    if due is not None:
        props.append(("DUE", due))
        if dated and record.time_zone:
            props.append((X_ZONE, f"{X_ZONE}:" + _raw(record.time_zone)))
    props.append(("PRIORITY", f"PRIORITY:{PRIORITY_OUT.get(record.priority, 5)}"))
    props.append(("STATUS", "STATUS:" + ("COMPLETED" if record.status == "completed" else "NEEDS-ACTION")))
    if record.completed_at is not None:
        props.append(("COMPLETED", "COMPLETED:" + _utc(record.completed_at)))
    if record.tags:
        props.append(("CATEGORIES", "CATEGORIES:" + ",".join(_escape(tag) for tag in record.tags)))
    if record.category and with_category:
        props.append((X_CATEGORY, f"{X_CATEGORY}:" + _raw(record.category)))
    if record.rule:
        props.append(("RRULE", "RRULE:" + record.rule))
        if record.recurrence_from != "schedule":
            props.append((X_RECURRENCE_FROM, f"{X_RECURRENCE_FROM}:" + _raw(record.recurrence_from)))
        series = record.series
        if series is not None:
            start_wall = series.start.astimezone(zone).replace(tzinfo=None)
            # The start is said only when DUE does not say it: a later occurrence, or a first one in a DST gap.
            skipped = series.start_wall is not None and series.start_wall != start_wall
            props.append((X_SERIES, f"{X_SERIES}:" + _raw(series.key)))  # the occurrences of one series share it
            if series.start != record.due or skipped:
                props.append((X_SERIES_START, f"{X_SERIES_START}:" + series.start.astimezone(zone).isoformat()))
                if skipped and series.start_wall is not None:
                    props.append((X_SERIES_WALL, f"{X_SERIES_WALL}:" + series.start_wall.isoformat()))
    if record.parent_uid:
        props.append(("RELATED-TO", "RELATED-TO;RELTYPE=PARENT:" + _escape(record.parent_uid)))
    for blocker in record.depends_on:  # RFC 9253: this task depends on the one named
        props.append(("RELATED-TO", "RELATED-TO;RELTYPE=DEPENDS-ON:" + _escape(blocker)))
    alarm = _alarm_text(record)
    if alarm is None and record.due is not None:
        props.append((X_REMINDER, f"{X_REMINDER}:none"))  # cleared on purpose: an importer must not give it a lead
    props.sort(key=lambda prop: prop[0])  # by name, as icalendar orders them (stable: RELATED-TO keeps its order)
    return ("BEGIN:VTODO\r\n" + "".join(_fold(line) for _, line in props) + (alarm or "") + "END:VTODO\r\n").encode()


def _alarm_text(record: Record) -> str | None:
    if record.lead is None and record.remind_at is None:
        return None
    lines = ["ACTION:DISPLAY"]
    if record.reminder_sent and record.remind_at is not None:
        lines.insert(0, "ACKNOWLEDGED:" + _utc(record.remind_at))
    lines.append("DESCRIPTION:" + _escape(record.title))
    if record.lead is not None:
        lead: bytes = icalendar.vDuration(timedelta(minutes=-record.lead)).to_ical()  # type: ignore[no-untyped-call]
        duration = lead.decode("ascii")
        lines.append("TRIGGER;RELATED=END:" + duration)
    else:
        assert record.remind_at is not None
        lines.append("TRIGGER;VALUE=DATE-TIME:" + _utc(record.remind_at))  # a DURATION unless said
    return "BEGIN:VALARM\r\n" + "".join(_fold(line) for line in lines) + "END:VALARM\r\n"


def all_day(record: Record) -> bool:
    """Whether the task is due on a date alone (the end of that day in its zone, as mcp-todo stores a date)."""
    if record.due is None:
        return False
    if record.due.tzinfo is None:
        return record.due.time() == END_OF_DAY
    return is_all_day(record.due, record.time_zone or "UTC")


# --- reading ------------------------------------------------------------------------------------------------------


# What icalendar raises for a malformed value; OSError too: it looks a TZID up as a file, and a name that is too
# long or a directory (`TZID=America`) is an OSError there.
_PARSE_ERRORS: Final = (ValueError, IndexError, KeyError, TypeError, OverflowError, OSError)
_MARKER: Final = re.compile(rb"^(BEGIN|END):(VTODO|VTIMEZONE|VEVENT)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_END: Final = re.compile(rb"^END:VCALENDAR", re.IGNORECASE | re.MULTILINE)
_UID_LINE: Final = re.compile(rb"^UID:([^\r\n]{0,255})", re.IGNORECASE | re.MULTILINE)
# icalendar's cost grows with a record's lines and list items more than with its bytes (a 64 KB run of commas in
# CATEGORIES takes ~150 ms, 64 KB of text ~30 ms): a record with more of them than any task needs fails alone,
# unread, which keeps every record within a few ms.
MAX_RECORD_LINES: Final = 250
MAX_RECORD_SEPARATORS: Final = 1000
_SEPARATOR: Final = re.compile(rb"(?<!\\)[,;]")
_CONTINUATION: Final = re.compile(rb"\n[ \t]")
# The VTIMEZONE blocks are read once per file, whatever the number of records: a few zones take a few hundred KB.
MAX_ZONE_BYTES: Final = 4 * 1024 * 1024


def _blocks(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """(the spans of the VTODOs, of the VTIMEZONEs, the number of VEVENTs), found by one linear scan of the lines
    that open and close them; FormatError as soon as the file holds more VTODOs than an import takes."""
    todos: list[tuple[int, int]] = []
    zones: list[tuple[int, int]] = []
    events = 0
    opened: tuple[bytes, int] | None = None
    for marker in _MARKER.finditer(data):
        verb, kind = marker.group(1).upper(), marker.group(2).upper()
        if verb == b"BEGIN":
            if kind == b"VTODO" and len(todos) + (opened is not None and opened[0] == b"VTODO") >= MAX_RECORDS:
                raise FormatError(f"the file holds more than the {MAX_RECORDS:,} records one import takes — split it")
            if kind == b"VEVENT":
                events += 1
            if opened is None:
                opened = (kind, marker.start())
            elif opened[0] == b"VTODO" and kind == b"VTODO":
                todos.append((opened[1], marker.start()))  # an unclosed VTODO: it fails alone
                opened = (kind, marker.start())
        elif opened is not None and kind == opened[0]:
            end = marker.end() + (1 if data[marker.end() : marker.end() + 1] == b"\n" else 0)
            (todos if kind == b"VTODO" else zones if kind == b"VTIMEZONE" else []).append((opened[1], end))
            opened = None
    if opened is not None and opened[0] == b"VTODO":
        todos.append((opened[1], len(data)))
    return todos, zones, events


def count_todos(data: bytes) -> int:
    """How many VTODOs the file holds (FormatError past the most an import takes), without reading them."""
    return len(_blocks(data)[0])


def _too_big(block: bytes) -> str | None:
    """Why a VTODO is not read at all, or None."""
    if len(block) > MAX_RECORD_BYTES:
        return f"it is larger than {MAX_RECORD_BYTES // 1024} KB"
    lines = block.count(b"\n") - len(_CONTINUATION.findall(block))
    if lines > MAX_RECORD_LINES:
        return f"it has {lines:,} lines, more than the {MAX_RECORD_LINES:,} a record may have"
    separators = len(_SEPARATOR.findall(block))
    if separators > MAX_RECORD_SEPARATORS:
        return f"it has {separators:,} list and parameter separators (, ;), more than {MAX_RECORD_SEPARATORS:,}"
    return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return "a TZID names no time zone"
    if isinstance(exc, OverflowError):
        return "a date is out of range"
    return str(exc)[:160] or exc.__class__.__name__


def _parse_todo(block: bytes) -> icalendar.Component | BaseException:
    """The block's VTODO, or what icalendar raised for it. Each block is parsed alone (as fast as the whole file in
    one parse), so a malformed one fails alone; the file's VTIMEZONEs were read before, into icalendar's cache."""
    try:
        with warnings.catch_warnings():
            # icalendar warns (once per TZID, then caches) when it reads `/vendor/Europe/Berlin` as Europe/Berlin;
            # `_record` reports that reading on every task it concerns instead.
            warnings.simplefilter("ignore", GloballyUniqueTZIDGuessed)
            found = icalendar.Component.from_ical(block, multiple=True)
    except _PARSE_ERRORS as exc:
        return exc
    todos = [component for component in found if component.name == "VTODO"]
    return todos[0] if len(todos) == 1 else ValueError("not one complete VTODO")


def read_ics(data: bytes) -> Parsed:
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].upper().startswith(b"BEGIN:VCALENDAR"):
        raise FormatError("not an iCalendar file: it does not start with BEGIN:VCALENDAR")
    spans, zone_spans, events = _blocks(data)
    if _END.search(data, max(0, len(data) - 4096)) is None and _END.search(data) is None:
        raise FormatError("the calendar is cut short: no END:VCALENDAR after its last VTODO — nothing was read")
    if not spans:
        raise FormatError(
            "the calendar holds no VTODO (task)" + (f"; its {events} VEVENT (events) are not tasks" if events else "")
        )
    zones = b"".join(data[start:end] for start, end in zone_spans)
    if len(zones) > MAX_ZONE_BYTES:
        raise FormatError(f"the calendar's VTIMEZONE blocks take more than {MAX_ZONE_BYTES // (1024 * 1024)} MB")
    if zones:
        # Read once, into icalendar's own cache of zones, where each VTODO's TZID finds them.
        with contextlib.suppress(*_PARSE_ERRORS):
            icalendar.Calendar.from_ical(b"BEGIN:VCALENDAR\r\n" + zones + b"END:VCALENDAR\r\n")
    parsed = Parsed()
    readable: list[int] = []
    blocks = [data[start:end] for start, end in spans]
    for index, block in enumerate(blocks):
        problem = _too_big(block)
        if problem is None:
            readable.append(index)
        else:
            parsed.rejected.append(Outcome(_where(index + 1, block), problem))
    todos = {index: _parse_todo(blocks[index]) for index in readable}
    # mcp-todo's own files say when a reminder fired (ACKNOWLEDGED); for other producers a past one counts as sent.
    ours = b"PRODID:-//MCP-TODO//" in data[:2048].upper()
    for index in readable:
        todo = todos[index]
        if isinstance(todo, BaseException):
            parsed.rejected.append(Outcome(_where(index + 1, blocks[index]), f"unreadable: {_why(todo)}"))
            continue
        uid = str(todo.get("uid", "")).strip() or None
        where = f"VTODO {index + 1}"
        try:
            record = _record(todo, where, uid, ours=ours)
        except (*_PARSE_ERRORS, AttributeError) as exc:
            parsed.rejected.append(Outcome(describe(where, uid), f"unreadable: {_why(exc)}"))
            continue
        if record is None:
            parsed.skipped.append(Outcome(describe(where, uid), "cancelled (STATUS:CANCELLED)"))
        else:
            parsed.records.append(record)
    return parsed


def _where(number: int, block: bytes) -> str:
    uid = _UID_LINE.search(block)
    return describe(f"VTODO {number}", uid.group(1).decode("utf-8", "replace").strip() if uid else None)


def _uid_for(todo: icalendar.Component) -> str:
    """A stable uid for a VTODO without one (RFC 5545 requires it; some producers forget): a hash of its content
    lines without DTSTAMP, so the same file imports the same way twice."""
    lines = [line for line in todo.to_ical().splitlines() if not line.upper().startswith(b"DTSTAMP")]
    return "ics-" + hashlib.sha256(b"\n".join(lines)).hexdigest()[:32]


def _when(value: Any) -> tuple[datetime, datetime | None, str | None]:
    """(instant or floating time, the wall time asked for, the IANA zone) of a DATE or DATE-TIME value."""
    dt = value.dt if hasattr(value, "dt") else value
    if isinstance(dt, datetime):
        if dt.tzinfo is None:
            return dt, dt, None  # floating: wall time in the user's zone
        if isinstance(dt.tzinfo, ZoneInfo) and dt.tzinfo.key != "UTC":
            try:
                zone = resolve_zone(dt.tzinfo.key)
            except ValidationError:
                # A zone icalendar found but that is not an IANA name (`posix/Europe/Berlin`): the instant is
                # exact; the zone name goes on, for `prepare` to report and replace with the user's.
                return dt.astimezone(UTC), None, dt.tzinfo.key
            wall = dt.replace(tzinfo=None)
            return localize(wall, zone), wall, dt.tzinfo.key
        return dt.astimezone(UTC), None, None
    if isinstance(dt, date):
        # A date alone is the end of that day, as everywhere in mcp-todo.
        wall = datetime.combine(dt, END_OF_DAY)
        return wall, wall, None
    raise ValueError(f"not a date or date-time: {dt!r}")


def _is_date(value: Any) -> bool:
    dt = value.dt if hasattr(value, "dt") else value
    return isinstance(dt, date) and not isinstance(dt, datetime)


def _text(todo: icalendar.Component, name: str) -> str | None:
    value = todo.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0]
    text = str(value).strip()
    return text or None


def _record(todo: icalendar.Component, where: str, uid: str | None, *, ours: bool) -> Record | None:
    broken = [prop for prop, *_ in getattr(todo, "errors", ())]
    if broken:
        raise ValueError(f"malformed {', '.join(sorted(set(map(str, broken))))}")
    status = (_text(todo, "status") or "").upper()
    if status == "CANCELLED":
        return None
    record = Record(uid=uid or _uid_for(todo), title=_text(todo, "summary") or "", where=where)
    record.description = _text(todo, "description")
    lost = record.lost

    start = todo.get("dtstart")
    due_value = todo.get("due")
    if due_value is None and start is not None:
        duration = todo.get("duration")
        due_value = start.dt + duration.dt if duration is not None else start
        lost.append("no DUE: the due date is DTSTART" + (" + DURATION" if duration is not None else ""))
    if due_value is not None:
        record.due, record.due_wall, record.time_zone = _when(due_value)
        if record.time_zone is None and _is_date(due_value):
            record.time_zone = _text(todo, X_ZONE)  # where the day ends (the user's zone when not said)
        tzid = str(getattr(due_value, "params", {}).get("TZID", "")) or None
        if tzid is not None and record.time_zone is not None and tzid.strip("/") != record.time_zone:
            lost.append(f"TZID {tzid[:80]!r} read as {record.time_zone}")

    priority = todo.get("priority")
    record.priority = priority_in(int(priority)) if priority is not None else "medium"
    completed = todo.get("completed")
    percent = todo.get("percent-complete")
    if status == "COMPLETED" or completed is not None or (percent is not None and int(percent) >= 100):
        record.status = "completed"
        if completed is not None:
            record.completed_at = _when(completed)[0]
        else:
            stamp = todo.get("last-modified") or todo.get("dtstamp")
            record.completed_at = _when(stamp)[0] if stamp is not None else None
    created = todo.get("created")
    if created is not None:
        record.created_at = _when(created)[0]

    record.tags = _categories(todo)
    record.category = _text(todo, X_CATEGORY)
    _read_rule(todo, record)
    _read_parent(todo, record)
    _read_alarm(todo, record, start)
    if ours and record.reminder_given:
        record.reminder_sent = bool(record.reminder_sent)
    for name in ("location", "geo", "url", "attendee", "attach", "resources", "contact", "comment"):
        if todo.get(name) is not None:
            lost.append(f"{name.upper()} not kept")
    return record


def _rule_text(rule: icalendar.vRecur) -> str:
    """The RRULE in the order the file wrote its parts (icalendar's `to_ical` sorts them)."""
    parts = []
    for key, values in rule.items():
        kind = rule.types.get(key, icalendar.vText)
        listed = values if isinstance(values, (list, tuple)) else [values]
        parts.append(f"{key}=" + ",".join(kind(value).to_ical().decode("ascii") for value in listed))
    return ";".join(parts)


def _categories(todo: icalendar.Component) -> list[str]:
    """The names of every CATEGORIES property (a VTODO may have several, each a list)."""
    found = todo.get("categories")
    if found is None:
        return []
    names: list[str] = []
    for prop in found if isinstance(found, list) else [found]:
        names.extend(str(name).strip() for name in getattr(prop, "cats", [prop]))
    return [name for name in names if name]


def _read_rule(todo: icalendar.Component, record: Record) -> None:
    rules = todo.get("rrule")
    if rules is None:
        return
    if isinstance(rules, list):
        if len(rules) > 1:
            record.lost.append("RRULEs after the first dropped")
        rules = rules[0]
    record.rule = _rule_text(rules)
    for name in ("exdate", "rdate"):
        if todo.get(name) is not None:
            record.lost.append(f"{name.upper()} not kept (only the RRULE repeats a task)")
    record.recurrence_from = (_text(todo, X_RECURRENCE_FROM) or "schedule").lower()
    key, start = _text(todo, X_SERIES), _text(todo, X_SERIES_START)
    if key and (start or record.due is not None):
        wall = _text(todo, X_SERIES_WALL)
        try:
            record.series = Series(
                key=key,
                start=datetime.fromisoformat(start) if start else record.due,  # type: ignore[arg-type]
                start_wall=datetime.fromisoformat(wall) if wall else None,
            )
        except ValueError:
            record.lost.append(f"{X_SERIES_START} unreadable: the series starts at this task")


def _read_parent(todo: icalendar.Component, record: Record) -> None:
    related = todo.get("related-to")
    if related is None:
        return
    for value in related if isinstance(related, list) else [related]:
        # RELTYPE defaults to PARENT (RFC 5545 §3.2.15); DEPENDS-ON (RFC 9253): this task waits on the one named.
        kind = str(value.params.get("RELTYPE", "PARENT")).upper()
        if kind == "PARENT" and str(value).strip() and record.parent_uid is None:
            record.parent_uid = str(value).strip()
        elif kind == "DEPENDS-ON" and str(value).strip() and str(value).strip() not in record.depends_on:
            record.depends_on.append(str(value).strip())


def _read_alarm(todo: icalendar.Component, record: Record, start: Any) -> None:
    if (_text(todo, X_REMINDER) or "").lower() == "none":
        record.reminder_given = True
        return
    alarms = [alarm for alarm in todo.walk("VALARM") if alarm.get("trigger") is not None]
    if not alarms:
        return
    if len(alarms) > 1:
        record.lost.append(f"{len(alarms) - 1} more VALARM dropped (a task has one reminder)")
    alarm = alarms[0]
    trigger = alarm.get("trigger")
    record.reminder_given = True
    if alarm.get("acknowledged") is not None:
        record.reminder_sent = True
    value = trigger.dt
    if isinstance(value, timedelta):
        related_end = str(trigger.params.get("RELATED", "START")).upper() == "END"
        if not related_end and start is not None:
            # Relative to DTSTART: an absolute time, since mcp-todo counts back from the due date only.
            record.remind_at = _when(start)[0] + value
        elif value <= timedelta(0) and record.due is not None:
            record.lead = round(-value.total_seconds() / 60)
        elif record.due is not None:
            record.remind_at = record.due + value
    else:
        record.remind_at = _when(trigger)[0]


# --- one VTODO at a time (the CalDAV server serves and reads tasks through the same mapping) -------------------------


def record_from_todo(todo: icalendar.Component, where: str) -> Record | None:
    """One VTODO as an import reads it (another producer's: a past reminder counts as sent); None when it is
    cancelled. ValueError saying what is wrong when it cannot be read."""
    uid = str(todo.get("uid", "")).strip() or None
    try:
        return _record(todo, where, uid, ours=False)
    except (*_PARSE_ERRORS, AttributeError) as exc:
        raise ValueError(_why(exc)) from exc


def record_size_problem(block: bytes) -> str | None:
    """Why a VTODO is too big to be read at all (the limits of an import), or None."""
    return _too_big(block)
