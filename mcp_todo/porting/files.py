"""Whole files: which format one is (by content, then by name), reading it into records, and the two exports."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.porting import ics, native, taskwarrior, todoist
from mcp_todo.porting.records import MAX_IMPORT_BYTES, MAX_RECORDS, FormatError, Parsed
from mcp_todo.porting.report import Report
from mcp_todo.porting.source import export_records, user_defaults
from mcp_todo.porting.store import import_records
from mcp_todo.settings import Settings

# The command line's --format choices say the same (spelled there, so `mcp-todo --help` needs no iCalendar import).
IMPORT_FORMATS: Final = ("auto", "ics", "json", "taskwarrior", "todoist")


def detect(data: bytes, name: str = "") -> str:
    """The format of a file: its content decides, its extension breaks a tie."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:15].upper() == b"BEGIN:VCALENDAR":
        return "ics"
    if head[:1] in (b"{", b"["):
        return "json"  # native or Taskwarrior, told apart once it is read
    if todoist.looks_like_todoist(head.decode("utf-8", "replace")):
        return "todoist"
    lower = name.lower()
    for suffix, fmt in ((".ics", "ics"), (".ical", "ics"), (".json", "json"), (".csv", "todoist")):
        if lower.endswith(suffix):
            return fmt
    raise FormatError(
        "cannot tell the format: not an iCalendar file (BEGIN:VCALENDAR), JSON, or a Todoist CSV (TYPE,CONTENT,…) — "
        "give --format"
    )


def _json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"not valid JSON ({str(exc)[:120]})") from None


def parse(data: bytes, fmt: str, *, name: str = "", now: datetime, user_zone: str) -> tuple[str, Parsed]:
    """(the format read, the records) of a file; FormatError when it is not a file of that format at all."""
    if not data.strip():
        raise FormatError("the file is empty")
    if len(data) > MAX_IMPORT_BYTES:
        raise FormatError(f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB — split it")
    if fmt == "auto":
        fmt = detect(data, name)
    if fmt == "ics":
        parsed = ics.read_ics(data)
    elif fmt == "todoist":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FormatError("a Todoist CSV export must be UTF-8 text") from None
        parsed = todoist.read_todoist(text, now=now, user_zone=user_zone)
    elif fmt in ("json", "taskwarrior"):
        document = _json(data)
        if fmt == "json" and native.is_native(document):
            parsed = native.read_json(document)
        elif fmt == "taskwarrior" or taskwarrior.looks_like_taskwarrior(document):
            fmt = "taskwarrior"
            parsed = taskwarrior.read_taskwarrior(document)
        else:
            raise FormatError(
                'JSON that is neither an mcp-todo export ("format": "mcp-todo") nor a Taskwarrior '
                "`task export` (an array of tasks with uuid and description)"
            )
    else:
        raise FormatError(f"unknown format {fmt!r} — one of {', '.join(IMPORT_FORMATS)}")
    total = len(parsed.records) + len(parsed.rejected) + len(parsed.skipped)
    if total > MAX_RECORDS:
        raise FormatError(f"the file holds {total} records, more than the {MAX_RECORDS} one import takes — split it")
    return fmt, parsed


async def import_file(
    engine: AsyncEngine,
    settings: Settings,
    user_id: str,
    data: bytes,
    *,
    fmt: str = "auto",
    name: str = "",
    now: datetime,
    dry_run: bool = False,
) -> tuple[str, Report]:
    """Import a file for the user (FormatError, with nothing changed, when it is not a file of its format)."""
    async with engine.connect() as conn:
        zone, _lead = await user_defaults(conn, settings, user_id)
    read_as, parsed = parse(data, fmt, name=name, now=now, user_zone=zone)
    return read_as, await import_records(engine, settings, user_id, parsed, now=now, dry_run=dry_run)


async def export_text(engine: AsyncEngine, user_id: str, fmt: str, *, now: datetime) -> str:
    """The user's tasks outside the trash as an iCalendar or mcp-todo JSON document."""
    async with engine.connect() as conn:
        parsed = await export_records(conn, user_id)
    if fmt == "ics":
        return ics.write_ics(parsed, now=now)
    if fmt == "json":
        return native.write_json(parsed, now=now)
    raise FormatError(f"unknown export format {fmt!r} — ics or json")
