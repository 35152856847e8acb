"""Whole files: which format one is (by content, then by name), reading it into records, and the two exports."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.porting import known_users
from mcp_todo.porting import ics, jsontext, native, taskwarrior, todoist
from mcp_todo.porting.progress import Progress
from mcp_todo.porting.records import MAX_IMPORT_BYTES, MAX_RECORDS, FormatError, Outcome, Parsed
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


def decode_text(data: bytes) -> str:
    """The file as text. Every format read here is UTF-8 (RFC 5545's default, JSON's, Todoist's export): bytes
    that are not are refused with where they are, not replaced (a Latin-1 "Café" would land as "Caf\ufffd", and no
    later import could repair it), and the file can be converted and imported again."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FormatError("the file is UTF-16 text, not UTF-8 — convert it: iconv -f UTF-16 -t UTF-8 FILE > NEW")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FormatError(
            f"the file is not UTF-8: byte 0x{data[exc.start]:02X} on line {line} is not UTF-8 text (a Latin-1 or "
            "Windows-1252 file? convert it: iconv -f WINDOWS-1252 -t UTF-8 FILE > NEW)"
        ) from None


def check_file(data: bytes, fmt: str = "auto", name: str = "") -> str:
    """The format of a file that is worth reading: not empty, not too big, UTF-8, and with no more records than an
    import takes (counted without reading them, so a file of 700,000 tiny records is refused at once). Cheap enough
    to run before the database is opened; `parse` runs it again."""
    if not data.strip():
        raise FormatError("the file is empty")
    if len(data) > MAX_IMPORT_BYTES:
        raise FormatError(f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB — split it")
    text = decode_text(data)
    if fmt == "auto":
        fmt = detect(data, name)
    if fmt not in IMPORT_FORMATS:
        raise FormatError(f"unknown format {fmt!r} — one of {', '.join(IMPORT_FORMATS)}")
    if fmt == "ics":
        ics.count_todos(data)
    elif fmt == "todoist":
        todoist.count_rows(text)
    else:
        jsontext.count_elements(text)
    return fmt


def parse(data: bytes, fmt: str, *, name: str = "", now: datetime, user_zone: str) -> tuple[str, Parsed]:
    """(the format read, the records) of a file; FormatError when it is not a file of that format at all."""
    fmt = check_file(data, fmt, name)
    if fmt == "ics":
        parsed = ics.read_ics(data)
    elif fmt == "todoist":
        parsed = todoist.read_todoist(decode_text(data), now=now, user_zone=user_zone)
    else:
        document = jsontext.load(decode_text(data))
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
    progress: Progress | None = None,
) -> tuple[str, Report]:
    """Import a file for the user (FormatError, with nothing changed, when it is not a file of its format)."""
    async with engine.connect() as conn:
        zone, _lead = await user_defaults(conn, settings, user_id)
    # Reading a file of 20,000 records takes seconds of CPU: in a thread, so a server's event loop stays free.
    read_as, parsed = await asyncio.to_thread(parse, data, fmt, name=name, now=now, user_zone=zone)
    report = await import_records(engine, settings, user_id, parsed, now=now, dry_run=dry_run, progress=progress)
    return read_as, report


async def export_text(
    engine: AsyncEngine, user_id: str, fmt: str, *, now: datetime, progress: Progress | None = None
) -> str:
    """The user's tasks outside the trash as an iCalendar, mcp-todo JSON or Taskwarrior document; `progress` hears of
    each task written (from the thread that writes them)."""
    if fmt not in ("ics", "json", "taskwarrior"):
        raise FormatError(f"unknown export format {fmt!r} — ics, json or taskwarrior")
    async with engine.connect() as conn:
        parsed = await export_records(conn, user_id)
    writer = {"ics": ics.write_ics, "json": native.write_json, "taskwarrior": taskwarrior.write_taskwarrior}[fmt]
    # Writing 10,000 tasks takes a few seconds of CPU: in a thread, so a server's event loop stays free.
    return await asyncio.to_thread(writer, parsed, now=now, progress=progress)


async def export_backup(engine: AsyncEngine, *, now: datetime, progress: Progress | None = None) -> tuple[str, int]:
    """(every user's tasks outside the trash as one mcp-todo JSON document, the number of users)."""
    async with engine.connect() as conn:
        users = {user_id: await export_records(conn, user_id) for user_id in await known_users(conn)}
    return await asyncio.to_thread(native.write_backup, users, now=now, progress=progress), len(users)


def parse_backup(data: bytes) -> tuple[dict[str, Parsed], list[Outcome]]:
    """Each user's records of an `export --all-users` file, and its tasks that name no user of it; FormatError when
    it is not such a file."""
    if check_file(data, "json") != "json":
        raise FormatError("an --all-users backup is mcp-todo JSON")
    document = jsontext.load(decode_text(data))
    if not native.is_backup(document):
        raise FormatError(
            "the file holds one account's tasks, with no user names (not an export --all-users): import it with "
            "--user NAME"
        )
    return native.read_backup(document)


async def import_backup(
    engine: AsyncEngine,
    settings: Settings,
    data: bytes,
    *,
    now: datetime,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> list[tuple[str, Report]]:
    """Restore an `export --all-users` file: each user's tasks into that user's account (an import each, so one
    user's records are matched by uid against that user's tasks only). Tasks naming no user of the file fail, in a
    report of their own under the name "(no user)"."""
    users, strays = await asyncio.to_thread(parse_backup, data)
    total = sum(len(parsed.records) for parsed in users.values())
    reports: list[tuple[str, Report]] = []
    done = 0
    for user_id, parsed in users.items():

        def step(count: int, _total: int, before: int = done) -> None:
            if progress is not None:
                progress(before + count, total)

        reports.append(
            (user_id, await import_records(engine, settings, user_id, parsed, now=now, dry_run=dry_run, progress=step))
        )
        done += len(parsed.records)
    if strays:
        reports.append(("(no user)", Report(failed=strays, dry_run=dry_run)))
    return reports
