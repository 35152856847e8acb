"""mcp-todo's own JSON: everything a task holds, labels with their colours, versioned (`"format": "mcp-todo"`,
`"version": 1`; a reader refuses a version it does not know)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from mcp_todo import __version__
from mcp_todo.domain.errors import ValidationError
from mcp_todo.porting.jsontext import Unreadable
from mcp_todo.porting.progress import Progress
from mcp_todo.porting.records import FormatError, Outcome, Parsed, Record, Series, check_user_name, describe

FORMAT: Final = "mcp-todo"
# The values a field may take: another one is the file's mistake, reported, not read as the default.
_CHOICES: Final = {
    "status": ("pending", "completed"),
    "priority": ("low", "medium", "high", "urgent"),
    "recurrence_from": ("schedule", "completion"),
}
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
        "depends_on": record.depends_on,
    }


def write_json(parsed: Parsed, *, now: datetime, progress: Progress | None = None) -> str:
    total = len(parsed.records)
    tasks = []
    for done, record in enumerate(parsed.records):
        if progress is not None:
            progress(done, total)
        tasks.append(_task(record))
    document = {
        "format": FORMAT,
        "version": VERSION,
        "generator": f"mcp-todo {__version__}",
        "exported_at": now.isoformat(),
        "categories": [{"name": name, "color": color} for name, color in sorted(parsed.category_colors.items())],
        "tags": [{"name": name, "color": color} for name, color in sorted(parsed.tag_colors.items())],
        "tasks": tasks,
    }
    written = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if progress is not None:
        progress(total, total)
    return written


def write_backup(users: dict[str, Parsed], *, now: datetime, progress: Progress | None = None) -> str:
    """Every user's tasks in one document: version 1 with a "users" list, and a "user" on each task and label."""
    total = sum(len(parsed.records) for parsed in users.values())
    tasks: list[dict[str, Any]] = []
    categories: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    for user_id, parsed in users.items():
        for record in parsed.records:
            if progress is not None:
                progress(len(tasks), total)
            tasks.append({"user": user_id, **_task(record)})
        for name, color in sorted(parsed.category_colors.items()):
            categories.append({"user": user_id, "name": name, "color": color})
        for name, color in sorted(parsed.tag_colors.items()):
            tags.append({"user": user_id, "name": name, "color": color})
    document = {
        "format": FORMAT,
        "version": VERSION,
        "generator": f"mcp-todo {__version__}",
        "exported_at": now.isoformat(),
        "users": list(users),
        "categories": categories,
        "tags": tags,
        "tasks": tasks,
    }
    written = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if progress is not None:
        progress(total, total)
    return written


def is_backup(document: Any) -> bool:
    return is_native(document) and "users" in document


def read_backup(document: Any) -> tuple[dict[str, Parsed], list[Outcome]]:
    """Each user's records of an `--all-users` export, and the tasks that name no user of the file (they fail)."""
    if document.get("version") != VERSION:
        raise FormatError(
            f"mcp-todo export version {document.get('version')!r} is not one this version reads ({VERSION})"
        )
    users = document.get("users")
    if not isinstance(users, list) or not all(isinstance(user, str) for user in users):
        raise FormatError('an mcp-todo backup needs a "users" list of names')
    for user in users:
        try:
            check_user_name(user)
        except ValidationError as exc:
            raise FormatError(f"the backup's user {user[:40]!r} is not a user name: {exc.message}") from None
    header = {key: value for key, value in document.items() if key not in ("users", "tasks", "categories", "tags")}
    parts: dict[str, dict[str, Any]] = {user: {**header, "categories": [], "tags": []} for user in users}
    numbered: dict[str, list[tuple[int, Any]]] = {user: [] for user in users}
    for kind in ("categories", "tags"):
        for label in document.get(kind) or []:
            if isinstance(label, dict) and label.get("user") in parts:
                parts[label["user"]][kind].append(label)
    strays: list[Outcome] = []
    for index, item in enumerate(document.get("tasks") or [], start=1):
        owner = item.get("user") if isinstance(item, dict) else None
        if isinstance(owner, str) and owner in numbered:
            numbered[owner].append((index, item))
        elif isinstance(item, Unreadable):
            strays.append(Outcome(describe(f"task {index}", item.uid), item.reason))
        else:
            uid = item.get("uid") if isinstance(item, dict) else None
            shown = describe(f"task {index}", uid if isinstance(uid, str) else None)
            strays.append(Outcome(shown, 'its "user" is not one of the file\'s "users"'))
    return {user: _read(parts[user], numbered[user]) for user in users}, strays


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


def _uids(item: dict[str, Any], name: str) -> list[str]:
    value = item.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(uid, str) for uid in value):
        raise ValueError(f"{name} is not a list of UIDs")
    return list(dict.fromkeys(uid.strip() for uid in value if uid.strip()))


def read_json(document: Any) -> Parsed:
    if not is_native(document):
        raise FormatError('not an mcp-todo export (no "format": "mcp-todo")')
    if is_backup(document):
        users = document["users"] if isinstance(document["users"], list) else []
        raise FormatError(
            f"the file is a backup of {len(users)} users' tasks (mcp-todo export --all-users): restore it with "
            "mcp-todo import --all-users, which gives each user their own"
        )
    if document.get("version") != VERSION:
        raise FormatError(
            f"mcp-todo export version {document.get('version')!r} is not one this version reads ({VERSION})"
        )
    tasks = document.get("tasks")
    if not isinstance(tasks, list):
        raise FormatError('an mcp-todo export needs a "tasks" list')
    return _read(document, list(enumerate(tasks, start=1)))


def _read(document: dict[str, Any], tasks: list[tuple[int, Any]]) -> Parsed:
    """The records of the numbered tasks, with the document's label colours."""
    parsed = Parsed()
    for kind, colors in (("categories", parsed.category_colors), ("tags", parsed.tag_colors)):
        for label in document.get(kind) or []:
            if isinstance(label, dict) and isinstance(label.get("name"), str):
                color = label.get("color")
                colors[label["name"]] = color if isinstance(color, str) else None
    for index, item in tasks:
        where = f"task {index}"
        if isinstance(item, Unreadable):
            parsed.rejected.append(Outcome(describe(where, item.uid), item.reason))
            continue
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
    if sent is not None and not isinstance(sent, bool):
        raise ValueError("reminder_sent is not true, false or null")
    for name, allowed in _CHOICES.items():
        value = item.get(name)
        if value is not None and value not in allowed:
            raise ValueError(f"{name} {str(value)[:40]!r} is not one of {', '.join(allowed)}")
    series = item.get("series")
    series_value = None
    if series is not None and not isinstance(series, dict):
        raise ValueError("series is not an object")
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
        reminder_sent=sent,
        completed_at=_time(item, "completed_at"),
        created_at=_time(item, "created_at"),
        parent_uid=_optional_text(item, "parent_uid"),
        depends_on=_uids(item, "depends_on"),
    )
