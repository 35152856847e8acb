"""A task as a CalDAV resource: rendered through the export's VTODO mapping, read through the import's, and what a
client wrote that mcp-todo does not model kept as the client wrote it (its content lines, spliced back in)."""

from __future__ import annotations

import re
import threading
import warnings
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import icalendar
from icalendar.error import GloballyUniqueTZIDGuessed

from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.times import END_OF_DAY, parse_user_wall_time
from mcp_todo.porting.ics import (
    PRODID,
    all_day,
    record_from_todo,
    record_size_problem,
    todo_text,
    tzid_of,
    zone_block,
)
from mcp_todo.porting.records import MAX_RECORD_BYTES, Record
from mcp_todo.porting.source import record_of_row
from mcp_todo.service.dav_tasks import ClientTask

CONTENT_TYPE: Final = "text/calendar; charset=utf-8; component=VTODO"
# A PUT body: one VTODO and the VTIMEZONEs its times name.
MAX_BODY_BYTES: Final = 4 * MAX_RECORD_BYTES

# The properties the mapping reads into a task (and writes back from it); anything else a client wrote is kept.
MODELLED: Final = frozenset(
    {
        "UID",
        "DTSTAMP",
        "CREATED",
        "LAST-MODIFIED",
        "SEQUENCE",
        "SUMMARY",
        "DESCRIPTION",
        "DUE",
        "PRIORITY",
        "STATUS",
        "COMPLETED",
        "PERCENT-COMPLETE",
        "CATEGORIES",
        "RRULE",
    }
)
_NAME: Final = re.compile(r"^([A-Za-z0-9-]+)")


def etag(row: Any) -> str:
    """Changes whenever the row is written (its stamp is the writing transaction's id)."""
    return f'"{row["id"]}-{row["change_xid"]}"'


def href_name(row: Any) -> str:
    return str(row["href"] or f"{row['uid']}.ics")


# Rendered VTODOs by (task id, stamp): a row renders the same bytes until it is written again, which changes its stamp.
# Rendering one takes most of a millisecond, so a client's full query of a large collection is served from here after
# the first. About 1 KB each.
RENDER_CACHE_SIZE: Final = 10_000
_rendered: OrderedDict[tuple[int, int], bytes] = OrderedDict()
_rendered_lock = threading.Lock()  # rendering runs in worker threads


def render(row: Any) -> bytes:
    key = (int(row["id"]), int(row["change_xid"]))
    with _rendered_lock:
        found = _rendered.get(key)
        if found is not None:
            _rendered.move_to_end(key)
            return found
    body = _render(row)
    with _rendered_lock:
        _rendered[key] = body
        while len(_rendered) > RENDER_CACHE_SIZE:
            _rendered.popitem(last=False)
    return body


def _render(row: Any) -> bytes:
    """The VCALENDAR a client GETs: the task's VTODO (DTSTAMP its last change, so the same row renders the same
    bytes), the VTIMEZONE its DUE names, and the lines the client kept."""
    record = record_of_row(row)
    body = todo_text(record, row["updated_at"], with_category=False)  # the collection says the category
    dated = all_day(record)
    kept = row["kept"]
    if kept:
        if record.due is not None:
            kept = consistent_start(kept, record.due.astimezone(ZoneInfo(record.time_zone or "UTC")), dated)
        properties, components = _split_kept(kept)
        # RFC 5545: a VTODO's properties come before its components (the VALARM).
        alarm = body.find(b"BEGIN:VALARM\r\n")
        end = body.rstrip().rfind(b"END:VTODO")
        at = alarm if alarm >= 0 else end
        body = body[:at] + properties.encode("utf-8") + body[at:end] + components.encode("utf-8") + body[end:]
    zone = tzid_of(record, dated)
    head = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:" + PRODID.encode() + b"\r\n"
    return head + (zone_block(zone) if zone else b"") + body + b"END:VCALENDAR\r\n"


_DTSTART: Final = re.compile(r"^DTSTART(?P<params>(?:;[^:]*)?):(?P<value>[0-9]{8})(?P<time>T[0-9]{6}Z?)?$", re.I)


def consistent_start(kept: str, due: datetime, dated: bool) -> str:
    """The kept lines with a client's DTSTART of the same value type as DUE (RFC 5545 §3.8.2.4: both DATE or both
    DATE-TIME) and not after it: the due date may have changed since the client wrote DTSTART (through the tools).
    `due` is in the task's zone; `dated`: DUE is written as a DATE."""
    lines = []
    for line in _logical_lines(kept):
        match = _DTSTART.match("".join(part[1:] if i else part for i, part in enumerate(line)))
        if match is None:
            lines.extend(line)
            continue
        day = match.group("value")
        is_date = match.group("time") is None
        if dated:
            day = min(day, due.strftime("%Y%m%d"))
            if is_date and day == match.group("value"):
                lines.extend(line)
            else:
                lines.append(f"DTSTART;VALUE=DATE:{day}")
        elif is_date:
            start = min(datetime.strptime(day, "%Y%m%d").replace(tzinfo=due.tzinfo), due)
            if start.utcoffset() == timedelta(0) and str(due.tzinfo) in ("UTC", "Etc/UTC"):
                lines.append(f"DTSTART:{start.strftime('%Y%m%dT%H%M%S')}Z")
            else:
                lines.append(f"DTSTART;TZID={due.tzinfo}:{start.strftime('%Y%m%dT%H%M%S')}")
        else:
            lines.extend(line)
    return "".join(part + "\r\n" for part in lines)


def _split_kept(kept: str) -> tuple[str, str]:
    """(the kept properties, the kept components), each as written."""
    properties: list[str] = []
    components: list[str] = []
    depth = 0
    for line in _logical_lines(kept):
        upper = line[0].upper()
        if upper.startswith("BEGIN:"):
            depth += 1
        (components if depth else properties).extend(line)
        if upper.startswith("END:") and depth:
            depth -= 1
    return "".join(part + "\r\n" for part in properties), "".join(part + "\r\n" for part in components)


def _logical_lines(block: str) -> list[list[str]]:
    """The content lines of `block`, each as the physical lines it was folded into."""
    lines: list[list[str]] = []
    for physical in block.replace("\r\n", "\n").split("\n"):
        if physical[:1] in (" ", "\t") and lines:
            lines[-1].append(physical)
        elif physical:
            lines.append([physical])
    return lines


def kept_lines(body: str) -> str | None:
    """The content lines of the (first) VTODO that the mapping does not read, as written (folded, CRLF): unmodelled
    properties, RELATED-TO other than a parent or a dependency, every component but the first VALARM with a TRIGGER."""
    kept: list[str] = []
    depth = 0
    inside = False
    component: list[str] = []
    alarm_read = False
    for line in _logical_lines(body):
        first = line[0]
        upper = first.upper()
        if not inside:
            inside = upper.startswith("BEGIN:VTODO")
            continue
        if upper.startswith("BEGIN:"):
            depth += 1
        if depth > 0:
            component.extend(line)
            if upper.startswith("END:"):
                depth -= 1
                if depth == 0:
                    is_alarm = component[0].upper().startswith("BEGIN:VALARM")
                    has_trigger = any(part.upper().startswith("TRIGGER") for part in component)
                    if is_alarm and has_trigger and not alarm_read:
                        alarm_read = True
                    else:
                        kept.extend(component)
                    component = []
            continue
        if upper.startswith("END:VTODO"):
            break
        match = _NAME.match(first)
        name = match.group(1).upper() if match else ""
        if name in MODELLED or name.startswith("X-MCP-TODO-"):
            continue
        if name == "RELATED-TO":
            params = first.split(":", 1)[0].upper()
            if "RELTYPE=" not in params or "RELTYPE=PARENT" in params or "RELTYPE=DEPENDS-ON" in params:
                continue  # read: the parent, and the to-dos it waits on (RFC 9253)
        kept.extend(line)
    return "".join(part + "\r\n" for part in kept) or None


def _due_text(record: Record) -> str | None:
    due = record.due
    if due is None:
        return None
    if due.tzinfo is not None:
        return due.isoformat()
    if due.time() == END_OF_DAY:
        return due.date().isoformat()  # a DATE: all day, as a date alone is everywhere in mcp-todo
    return due.isoformat()  # floating: a wall time in the user's zone


def read_put(body: bytes, zone: str) -> ClientTask:
    """The task a PUT body describes, for the user whose zone is `zone`; ValidationError saying what is wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise ValidationError(f"the calendar object is larger than {MAX_BODY_BYTES // 1024} KB")
    text = body.decode("utf-8", "replace")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GloballyUniqueTZIDGuessed)
            calendar = icalendar.Calendar.from_ical(body)
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, OSError) as err:
        raise ValidationError(f"not a readable iCalendar object: {str(err)[:160]}") from err
    if calendar.name != "VCALENDAR":
        raise ValidationError("the body is not a VCALENDAR")
    todos = [component for component in calendar.subcomponents if component.name == "VTODO"]
    if any(component.name == "VEVENT" for component in calendar.subcomponents):
        raise ValidationError("this collection holds to-dos (VTODO) only, not events (VEVENT)")
    if len(todos) != 1:
        raise ValidationError(
            f"a calendar object here holds exactly one VTODO, not {len(todos)} (RECURRENCE-ID overrides are not kept)"
        )
    block = todos[0].to_ical()
    problem = record_size_problem(block)
    if problem is not None:
        raise ValidationError(f"the VTODO is not read: {problem}")
    try:
        record = record_from_todo(todos[0], "the VTODO")
    except ValueError as err:
        raise ValidationError(f"the VTODO is not readable: {err}") from err
    if record is None:
        raise ValidationError("STATUS:CANCELLED is not kept: delete the to-do instead")
    if not str(todos[0].get("uid", "")).strip():
        raise ValidationError("the VTODO has no UID")
    due_date = _due_text(record)
    # A date or a floating time is in the task's zone when the VTODO says it (X-MCP-TODO-ZONE), else the user's.
    due_zone = record.time_zone or zone
    due = parse_user_wall_time(due_date, due_zone, field="DUE")[0] if due_date is not None else None
    remind_at = None
    if record.lead is None and record.remind_at is not None:
        remind_at = record.remind_at.isoformat()
    return ClientTask(
        uid=record.uid,
        title=record.title,
        description=record.description,
        priority=record.priority,
        due=due,
        due_date=due_date,
        tags=record.tags,
        rule=record.rule,
        recurrence_from=record.recurrence_from if record.rule else "schedule",
        lead=record.lead if due is not None else None,
        remind_at=remind_at,
        reminder_given=record.reminder_given,
        completed=record.status == "completed",
        parent_uid=record.parent_uid,
        depends_on=[uid for uid in record.depends_on if uid != record.uid],
        kept=kept_lines(text),
    )
