"""calendar-query filters (RFC 4791 §9.7) over the stored rows: comp-filter, prop-filter (is-not-defined,
text-match), time-range (§9.9, for VTODO). A property mcp-todo does not model is looked for among the lines the
client kept."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from mcp_todo.caldav.davxml import CALDAV, tag
from mcp_todo.domain.errors import ValidationError

_COMP = tag(CALDAV, "comp-filter")
_PROP = tag(CALDAV, "prop-filter")
_TIME = tag(CALDAV, "time-range")
_UNDEFINED = tag(CALDAV, "is-not-defined")
_TEXT = tag(CALDAV, "text-match")


def _utc(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as err:
        raise ValidationError(f"time-range takes UTC times like 20270310T090000Z, not {text[:40]!r}") from err


def _values(row: Any, name: str) -> list[str] | None:
    """The property's values as text (None when the task does not have it)."""
    simple = {
        "UID": row["uid"],
        "SUMMARY": row["title"],
        "DESCRIPTION": row["description"],
        "RRULE": row["recurrence_rule"],
        "STATUS": "COMPLETED" if row["status"] == "completed" else "NEEDS-ACTION",
        "PRIORITY": None,
        "DUE": row["due_date"].isoformat() if row["due_date"] is not None else None,
        "COMPLETED": row["completed_at"].isoformat() if row["completed_at"] is not None else None,
        "CREATED": row["created_at"].isoformat(),
        "DTSTAMP": row["updated_at"].isoformat(),
    }
    if name in simple:
        value = simple[name] if name != "PRIORITY" else row["priority"]
        return None if value is None else [str(value)]
    if name == "CATEGORIES":
        return list(row["tag_names"]) if row["tag_names"] else None
    if name == "RELATED-TO":
        return [row["parent_uid"]] if row["parent_uid"] else None
    kept = row["kept"] or ""
    found = [
        line.split(":", 1)[1] if ":" in line else ""
        for line in kept.replace("\r\n ", "").split("\r\n")
        if line.upper().split(";", 1)[0].split(":", 1)[0] == name
    ]
    return found or None


def _text_matches(node: ET.Element, values: list[str]) -> bool:
    wanted = node.text or ""
    collation = node.get("collation", "i;ascii-casemap")
    match_type = node.get("match-type", "contains")
    negate = node.get("negate-condition", "no") == "yes"

    def one(value: str) -> bool:
        a, b = (value, wanted) if collation == "i;octet" else (value.casefold(), wanted.casefold())
        if match_type == "equals":
            return a == b
        if match_type == "starts-with":
            return a.startswith(b)
        if match_type == "ends-with":
            return a.endswith(b)
        return b in a

    hit = any(one(value) for value in values)
    return hit != negate


def _todo_in_range(row: Any, start: datetime | None, end: datetime | None) -> bool:
    """RFC 4791 §9.9 for a VTODO, which here has DUE and no DTSTART."""
    lo = start or datetime.min.replace(tzinfo=UTC)
    hi = end or datetime.max.replace(tzinfo=UTC)
    due: datetime | None = row["due_date"]
    completed: datetime | None = row["completed_at"]
    created: datetime | None = row["created_at"]
    if due is not None:
        return lo <= due and due <= hi
    if completed is not None and created is not None:
        return (lo <= created or lo <= completed) and (hi >= created or hi >= completed)
    if completed is not None:
        return lo <= completed <= hi
    if created is not None:
        return hi > created
    return True


def _prop_matches(row: Any, node: ET.Element) -> bool:
    name = (node.get("name") or "").upper()
    values = _values(row, name)
    if node.find(_UNDEFINED) is not None:
        return values is None
    if values is None:
        return False
    time_range = node.find(_TIME)
    if time_range is not None and name in ("DUE", "COMPLETED", "CREATED", "DTSTAMP"):
        column = {"DUE": "due_date", "COMPLETED": "completed_at", "CREATED": "created_at", "DTSTAMP": "updated_at"}
        at = row[column[name]]
        start, end = _utc(time_range.get("start")), _utc(time_range.get("end"))
        if (start is not None and at < start) or (end is not None and at >= end):
            return False
    text = node.find(_TEXT)
    return text is None or _text_matches(text, values)


def _todo_matches(row: Any, node: ET.Element) -> bool:
    if node.find(_UNDEFINED) is not None:
        return False
    time_range = node.find(_TIME)
    if time_range is not None and not _todo_in_range(row, _utc(time_range.get("start")), _utc(time_range.get("end"))):
        return False
    for prop in node.findall(_PROP):
        if not _prop_matches(row, prop):
            return False
    for nested in node.findall(_COMP):
        has_alarm = row["remind_at"] is not None or row["remind_before_minutes"] is not None
        if (nested.get("name") or "").upper() == "VALARM" and nested.find(_UNDEFINED) is not None and has_alarm:
            return False
    return True


def matches(row: Any, query_filter: ET.Element | None) -> bool:
    """Whether the task passes the query's `filter` element (None: no filter)."""
    if query_filter is None:
        return True
    calendar = query_filter.find(_COMP)
    if calendar is None or (calendar.get("name") or "").upper() != "VCALENDAR":
        raise ValidationError("a calendar-query filter starts with comp-filter name=VCALENDAR")
    if calendar.find(_UNDEFINED) is not None:
        return False
    components = calendar.findall(_COMP)
    if not components:
        return True
    for component in components:
        name = (component.get("name") or "").upper()
        if name == "VTODO":
            if not _todo_matches(row, component):
                return False
        elif component.find(_UNDEFINED) is None:
            return False  # a VEVENT, VJOURNAL…: no task is one
    return True
