"""Taskwarrior's `task export` JSON (an array of task objects; Taskwarrior 2.6 and 3.x write the same fields).

Kept: description → title, annotations → the description (dated lines), uuid → uid, status (pending, waiting →
pending; completed; deleted → skipped), due, entry → created, end → completed, priority H/M/L → high/medium/low
(none → medium), tags, project → category, recur (daily, weekly, 3d, 2w, monthly, quarterly, yearly, weekdays …)
with until → an RRULE. A recurring template (status "recurring") becomes one recurring task due at its earliest
pending instance; its pending instances (which carry `parent`) are that task and are skipped; its completed
instances land as completed tasks. depends (the uuids of the tasks it waits on: a list, or Taskwarrior 2's
comma-separated string) → blocked_by; `write_taskwarrior` writes the same fields back.
Lost: scheduled, wait, until of a task that does not repeat, the urgency, UDAs, and the zone (Taskwarrior
stores UTC: the instant is kept, in the user's zone).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Final

from mcp_todo.porting.jsontext import Unreadable
from mcp_todo.porting.records import FormatError, Outcome, Parsed, Record, describe

PRIORITIES: Final = {"H": "high", "M": "medium", "L": "low"}

# Taskwarrior's named periods (its `recur` values) as RRULE parts.
_NAMED: Final = {
    "daily": "FREQ=DAILY",
    "day": "FREQ=DAILY",
    "weekdays": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    "weekly": "FREQ=WEEKLY",
    "week": "FREQ=WEEKLY",
    "biweekly": "FREQ=WEEKLY;INTERVAL=2",
    "fortnight": "FREQ=WEEKLY;INTERVAL=2",
    "monthly": "FREQ=MONTHLY",
    "month": "FREQ=MONTHLY",
    "bimonthly": "FREQ=MONTHLY;INTERVAL=2",
    "quarterly": "FREQ=MONTHLY;INTERVAL=3",
    "semiannual": "FREQ=MONTHLY;INTERVAL=6",
    "annual": "FREQ=YEARLY",
    "yearly": "FREQ=YEARLY",
    "year": "FREQ=YEARLY",
    "biannual": "FREQ=YEARLY;INTERVAL=2",
    "biyearly": "FREQ=YEARLY;INTERVAL=2",
}
_UNITS: Final = {
    "d": ("DAILY", 1),
    "day": ("DAILY", 1),
    "days": ("DAILY", 1),
    "w": ("WEEKLY", 1),
    "wk": ("WEEKLY", 1),
    "wks": ("WEEKLY", 1),
    "week": ("WEEKLY", 1),
    "weeks": ("WEEKLY", 1),
    "mo": ("MONTHLY", 1),
    "mos": ("MONTHLY", 1),
    "m": ("MONTHLY", 1),
    "month": ("MONTHLY", 1),
    "months": ("MONTHLY", 1),
    "q": ("MONTHLY", 3),
    "qtr": ("MONTHLY", 3),
    "qtrs": ("MONTHLY", 3),
    "quarter": ("MONTHLY", 3),
    "quarters": ("MONTHLY", 3),
    "y": ("YEARLY", 1),
    "yr": ("YEARLY", 1),
    "yrs": ("YEARLY", 1),
    "year": ("YEARLY", 1),
    "years": ("YEARLY", 1),
}
_PERIOD = re.compile(r"(\d{1,4})\s*([a-z]+)")


def recur_rule(recur: str) -> str | None:
    """The RRULE for a Taskwarrior `recur` value, or None when it has no equivalent (hours, seconds, ISO 8601
    durations with several parts)."""
    value = recur.strip().lower()
    if value in _NAMED:
        return _NAMED[value]
    match = _PERIOD.fullmatch(value)
    if match is None or match.group(2) not in _UNITS:
        return None
    freq, factor = _UNITS[match.group(2)]
    interval = int(match.group(1)) * factor
    if interval < 1:
        return None
    return f"FREQ={freq}" + (f";INTERVAL={interval}" if interval > 1 else "")


def parse_time(value: Any) -> datetime | None:
    """A Taskwarrior date (`20270310T090000Z`, or ISO 8601 from some versions), aware in UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def looks_like_taskwarrior(document: Any) -> bool:
    if not isinstance(document, list):
        return False
    read = [item for item in document[:50] if not isinstance(item, Unreadable)]
    return (
        bool(read)
        and all(isinstance(item, dict) for item in read)
        and all("uuid" in item and "description" in item for item in read)
    )


def read_taskwarrior(document: Any) -> Parsed:
    if not isinstance(document, list):
        raise FormatError("not a Taskwarrior export: `task export` writes a JSON array of tasks")
    if not document:
        raise FormatError("the Taskwarrior export holds no tasks")
    parsed = Parsed()
    items = [item for item in document if isinstance(item, dict)]
    templates = {str(item["uuid"]): item for item in items if item.get("status") == "recurring" and "uuid" in item}
    # A template's next due date: its earliest pending instance's.
    next_due: dict[str, datetime] = {}
    for item in items:
        parent = item.get("parent")
        if item.get("status") in ("pending", "waiting") and isinstance(parent, str) and parent in templates:
            try:
                due = parse_time(item.get("due"))
            except ValueError:
                continue
            if due is not None and (parent not in next_due or due < next_due[parent]):
                next_due[parent] = due
    for index, item in enumerate(document, start=1):
        where = f"task {index}"
        uid = item.get("uuid") if isinstance(item, dict) else None
        shown = describe(where, uid if isinstance(uid, str) else None)
        if isinstance(item, Unreadable):
            parsed.rejected.append(Outcome(describe(where, item.uid), item.reason))
            continue
        if not isinstance(item, dict):
            parsed.rejected.append(Outcome(shown, "not a JSON object"))
            continue
        status = item.get("status")
        parent = item.get("parent")
        if status == "deleted":
            parsed.skipped.append(Outcome(shown, "deleted in Taskwarrior"))
            continue
        if status in ("pending", "waiting") and isinstance(parent, str) and parent in templates:
            parsed.skipped.append(Outcome(shown, f"a pending instance of recurring task {parent}, imported as it"))
            continue
        try:
            if not isinstance(uid, str) or not uid.strip():
                raise ValueError("it has no uuid")
            parsed.records.append(_record(item, where, uid, next_due.get(uid)))
        except (ValueError, TypeError) as exc:
            parsed.rejected.append(Outcome(shown, str(exc)[:200]))
    return parsed


def _record(item: dict[str, Any], where: str, uid: str, next_due: datetime | None) -> Record:
    description = item.get("description")
    if not isinstance(description, str):
        raise ValueError("its description is missing")
    _check_types(item)
    record = Record(uid=uid, title=description, where=where)
    lost = record.lost
    notes = []
    for note in item.get("annotations") or []:
        entry = parse_time(note.get("entry"))
        notes.append(f"{entry:%Y-%m-%d}: {note['description']}" if entry else note["description"])
    record.description = "\n".join(notes) or None
    status = item.get("status")
    record.status = "completed" if status == "completed" else "pending"
    record.due = parse_time(item.get("due"))
    record.created_at = parse_time(item.get("entry"))
    if record.status == "completed":
        record.completed_at = parse_time(item.get("end"))
    priority = item.get("priority")
    record.priority = PRIORITIES[priority] if priority else "medium"
    record.tags = list(item.get("tags") or [])
    record.category = item.get("project") or None
    recur = item.get("recur")
    until = parse_time(item.get("until"))
    if status == "recurring" and isinstance(recur, str):
        rule = recur_rule(recur)
        if next_due is not None:
            record.due = next_due
        if rule is None:
            lost.append(f"recur:{recur[:40]} has no RRULE equivalent: imported without repeating")
        else:
            record.rule = rule + (f";UNTIL={until.astimezone(UTC):%Y%m%dT%H%M%SZ}" if until is not None else "")
    elif until is not None and not item.get("parent"):
        lost.append("until (expiry) not kept")
    record.depends_on = _depends(item.get("depends"))
    for name in ("scheduled", "wait"):
        if item.get(name):
            lost.append(f"{name} not kept")
    return record


def _depends(value: Any) -> list[str]:
    """Taskwarrior 3's list of uuids, or Taskwarrior 2's comma-separated string."""
    if value is None or value == "":
        return []
    uids = value.split(",") if isinstance(value, str) else value
    if not isinstance(uids, list) or not all(isinstance(uid, str) for uid in uids):
        raise ValueError("depends is not a list of uuids")
    return list(dict.fromkeys(uid.strip() for uid in uids if uid.strip()))


_LETTERS: Final = {"high": "H", "medium": "M", "low": "L", "urgent": "H"}


def _tw_time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def write_taskwarrior(parsed: Parsed, *, now: datetime, progress: Any = None) -> str:
    """The records as Taskwarrior's `task import` JSON: uuid, description, status, entry, due, end, priority (urgent
    → H), tags, project and depends (uuids). A rule is not written: Taskwarrior's recurrence is its own templates."""
    tasks = []
    for done, record in enumerate(parsed.records):
        if progress is not None:
            progress(done, len(parsed.records))
        task: dict[str, Any] = {
            "uuid": record.uid,
            "description": record.title,
            "status": record.status,
            "entry": _tw_time(record.created_at or now),
        }
        optional = {
            "due": _tw_time(record.due),
            "end": _tw_time(record.completed_at),
            "priority": _LETTERS.get(record.priority) if record.priority != "medium" else None,
            "project": record.category,
            "tags": record.tags or None,
            "depends": record.depends_on or None,
            "annotations": [{"entry": _tw_time(record.created_at or now), "description": record.description}]
            if record.description
            else None,
        }
        task.update({name: value for name, value in optional.items() if value is not None})
        tasks.append(task)
    return json.dumps(tasks, ensure_ascii=False, indent=1) + "\n"


# Taskwarrior's own types for the fields read here; a value of another type (`"tags": "urgent"`, which read as a
# list would be six one-letter tags) fails its task with the reason instead of being read as something else.
_STRINGS: Final = ("status", "project", "recur", "parent", "priority")
_STATUSES: Final = ("pending", "waiting", "completed", "deleted", "recurring")


def _check_types(item: dict[str, Any]) -> None:
    for name in _STRINGS:
        if item.get(name) is not None and not isinstance(item[name], str):
            raise ValueError(f"{name} is not a string")
    if item.get("status") is not None and item["status"] not in _STATUSES:
        raise ValueError(f"status {item['status'][:20]!r} is not one of {', '.join(_STATUSES)}")
    if item.get("priority") and item["priority"] not in PRIORITIES:
        raise ValueError(f"priority {item['priority'][:20]!r} is not H, M or L")
    tags = item.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)):
        raise ValueError("tags is not a list of names")
    notes = item.get("annotations")
    if notes is not None and not (
        isinstance(notes, list)
        and all(isinstance(note, dict) and isinstance(note.get("description"), str) for note in notes)
    ):
        raise ValueError("annotations is not a list of objects with a description")
