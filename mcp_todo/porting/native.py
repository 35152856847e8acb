"""mcp-todo's own JSON: everything a task holds, labels with their colours, versioned (`"format": "mcp-todo"`,
`"version": 1`; a reader refuses a version it does not know)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from mcp_todo import __version__
from mcp_todo.porting.records import FormatError, Outcome, Parsed, Record, Series, describe

FORMAT: Final = "mcp-todo"
VERSION: Final = 1


def _iso(dt: datetime | None, zone: ZoneInfo | None = None) -> str | None:
    if dt is None:
        return None
    return (dt.astimezone(zone) if zone is not None and dt.tzinfo is not None else dt).isoformat()


def _task(record: Record) -> dict[str, Any]:
    zone = ZoneInfo(record.time_zone) if record.time_zone else None
    series = record.series
    return {
        "uid": record.uid,
        "title": record.title,
        "description": record.description,
        "status": record.status,
        "priority": record.priority,
        "due_date": _iso(record.due, zone),
        "time_zone": record.time_zone,
        "category": record.category,
        "tags": record.tags,
        "recurrence_rule": record.rule,
        "recurrence_from": record.recurrence_from,
        "series": None
        if series is None or record.rule is None
        else {"key": series.key, "start": _iso(series.start, zone), "start_wall": _iso(series.start_wall)},
        "remind_before_minutes": record.lead,
        "remind_at": _iso(record.remind_at, zone),
        "reminder_sent": record.reminder_sent,
        "completed_at": _iso(record.completed_at, zone),
        "created_at": _iso(record.created_at, zone),
        "parent_uid": record.parent_uid,
    }


def write_json(parsed: Parsed, *, now: datetime) -> str:
    document = {
        "format": FORMAT,
        "version": VERSION,
        "generator": f"mcp-todo {__version__}",
        "exported_at": now.isoformat(),
        "categories": [{"name": name, "color": color} for name, color in sorted(parsed.category_colors.items())],
        "tags": [{"name": name, "color": color} for name, color in sorted(parsed.tag_colors.items())],
        "tasks": [_task(record) for record in parsed.records],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def is_native(document: Any) -> bool:
    return isinstance(document, dict) and document.get("format") == FORMAT


def _time(item: dict[str, Any], name: str) -> datetime | None:
    value = _optional_text(item, name)
    return None if value is None else datetime.fromisoformat(value)


def _optional_text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a string")
    return value


def read_json(document: Any) -> Parsed:
    if not is_native(document):
        raise FormatError('not an mcp-todo export (no "format": "mcp-todo")')
    if document.get("version") != VERSION:
        raise FormatError(
            f"mcp-todo export version {document.get('version')!r} is not one this version reads ({VERSION})"
        )
    tasks = document.get("tasks")
    if not isinstance(tasks, list):
        raise FormatError('an mcp-todo export needs a "tasks" list')
    parsed = Parsed()
    for kind, colors in (("categories", parsed.category_colors), ("tags", parsed.tag_colors)):
        for label in document.get(kind) or []:
            if isinstance(label, dict) and isinstance(label.get("name"), str):
                color = label.get("color")
                colors[label["name"]] = color if isinstance(color, str) else None
    for index, item in enumerate(tasks, start=1):
        where = f"task {index}"
        uid = item.get("uid") if isinstance(item, dict) else None
        try:
            if not isinstance(item, dict):
                raise ValueError("not an object")
            if not isinstance(uid, str):
                raise ValueError("uid is missing or not a string")
            parsed.records.append(_record(item, where, uid))
        except (ValueError, TypeError) as exc:
            parsed.rejected.append(Outcome(describe(where, uid if isinstance(uid, str) else None), str(exc)[:200]))
    return parsed


def _record(item: dict[str, Any], where: str, uid: str) -> Record:
    tags = item.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError("tags is not a list of names")
    lead = item.get("remind_before_minutes")
    if lead is not None and (isinstance(lead, bool) or not isinstance(lead, int)):
        raise ValueError("remind_before_minutes is not a whole number")
    sent = item.get("reminder_sent")
    series = item.get("series")
    series_value = None
    if isinstance(series, dict) and isinstance(series.get("key"), str) and series.get("start"):
        start = _time(series, "start")
        assert start is not None
        series_value = Series(key=series["key"], start=start, start_wall=_time(series, "start_wall"))
    return Record(
        uid=uid,
        title=_optional_text(item, "title") or "",
        where=where,
        description=_optional_text(item, "description"),
        status=_optional_text(item, "status") or "pending",
        priority=_optional_text(item, "priority") or "medium",
        due=_time(item, "due_date"),
        time_zone=_optional_text(item, "time_zone"),
        category=_optional_text(item, "category"),
        tags=tags,
        rule=_optional_text(item, "recurrence_rule"),
        recurrence_from=_optional_text(item, "recurrence_from") or "schedule",
        series=series_value,
        lead=lead,
        remind_at=_time(item, "remind_at"),
        reminder_given=True,
        reminder_sent=sent if isinstance(sent, bool) else None,
        completed_at=_time(item, "completed_at"),
        created_at=_time(item, "created_at"),
        parent_uid=_optional_text(item, "parent_uid"),
    )
