"""Hostile records through the import, into the real database: each fails alone (named by its UID or line, with the
reason) and the good record beside it lands; wrong types and bytes that are not UTF-8 are reported, not read as
something else; a file with too many records is refused at once; and an `export --all-users` backup restores."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.porting.files import import_file
from mcp_todo.porting.records import FormatError
from tests.integration.tool_client import row_counts, settings_for

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def calendar(todo: str) -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//hostile//EN\r\n"
        "BEGIN:VTODO\r\nUID:good\r\nSUMMARY:Good one\r\nEND:VTODO\r\n"
        f"BEGIN:VTODO\r\nUID:bad\r\nSUMMARY:Bad one\r\n{todo}END:VTODO\r\n"
        "END:VCALENDAR\r\n"
    ).encode()


def taskwarrior(bad: str) -> bytes:
    return f'[{{"uuid": "good", "description": "Good one"}}, {bad}]'.encode()


def native(bad: str) -> bytes:
    good = '{"uid": "good", "title": "Good one"}'
    return f'{{"format": "mcp-todo", "version": 1, "tasks": [{good}, {bad}]}}'.encode()


TODOIST_HEAD = "TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE\r\n"


def todoist(bad_row: str) -> bytes:
    return (TODOIST_HEAD + "task,Good one,,1,1,,,,,\r\n" + bad_row + "\r\n").encode()


DEEP = "[" * 100_000 + "]" * 100_000
HUGE_NUMBER = "9" * 5000

# (file, how the failed record is named, what its reason says)
HOSTILE = {
    "TZID over 255 characters": (calendar(f"DUE;TZID={'A' * 300}:20270310T090000\r\n"), "VTODO 2 (UID bad)", "TZID"),
    "TZID naming a directory": (calendar("DUE;TZID=America:20270310T090000\r\n"), "VTODO 2 (UID bad)", "TZID"),
    "due near year 1 in a zone": (
        calendar("DUE;TZID=America/New_York:00010101T000000\r\n"),
        "VTODO 2 (UID bad)",
        "outside the years",
    ),
    "due near year 9999 in a zone": (
        calendar("DUE;TZID=Pacific/Kiritimati:99991231T235959\r\n"),
        "VTODO 2 (UID bad)",
        "outside the years",
    ),
    "reminder past year 9999": (
        calendar(
            "DUE:99981231T000000Z\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER;RELATED=END:P999999D\r\nEND:VALARM\r\n"
        ),
        "VTODO 2 (UID bad)",
        "out of range",
    ),
    "priority of 5,000 digits": (calendar(f"PRIORITY:{HUGE_NUMBER}\r\n"), "VTODO 2 (UID bad)", "unreadable"),
    "taskwarrior nested 100,000 deep": (
        taskwarrior('{"uuid": "bad", "description": "Bad one", "annotations": ' + DEEP + "}"),
        "task 2 (UID bad)",
        "larger than 32 KB",
    ),
    "taskwarrior nested deeper than a task": (
        taskwarrior('{"uuid": "bad", "description": "Bad one", "annotations": ' + "[" * 500 + "]" * 500 + "}"),
        "task 2 (UID bad)",
        "nests deeper than 16 levels",
    ),
    "taskwarrior 5,000-digit integer": (
        taskwarrior(f'{{"uuid": "bad", "description": "Bad one", "due": {HUGE_NUMBER}}}'),
        "task 2 (UID bad)",
        "5,000 digits",
    ),
    "native nested 100,000 deep": (native('{"uid": "bad", "title": ' + DEEP + "}"), "task 2 (UID bad)", "32 KB"),
    "native 5,000-digit integer": (
        native(f'{{"uid": "bad", "title": "Bad one", "remind_before_minutes": {HUGE_NUMBER}}}'),
        "task 2 (UID bad)",
        "5,000 digits",
    ),
    "todoist cell over 131,072 characters": (todoist("task," + "x" * 140_000 + ",,1,1,,,,,"), "line 3", "field limit"),
    "todoist TIMEZONE naming a directory": (
        todoist("task,Bad one,,1,1,,,tomorrow,,America"),
        "line 3",
        "not an IANA zone",
    ),
    "taskwarrior tags as a string": (
        taskwarrior('{"uuid": "bad", "description": "Bad one", "tags": "urgent"}'),
        "task 2 (UID bad)",
        "tags is not a list of names",
    ),
    "taskwarrior unknown priority": (
        taskwarrior('{"uuid": "bad", "description": "Bad one", "priority": "X"}'),
        "task 2 (UID bad)",
        "not H, M or L",
    ),
    "native unknown status": (
        native('{"uid": "bad", "title": "Bad one", "status": "done"}'),
        "task 2 (UID bad)",
        "status 'done'",
    ),
    "todoist priority out of range": (todoist("task,Bad one,,9,1,,,,,"), "line 3", "PRIORITY '9'"),
}


async def titles(db: AsyncEngine) -> list[str]:
    async with db.connect() as conn:
        return list((await conn.execute(text("SELECT title FROM tasks ORDER BY id"))).scalars())


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_a_hostile_record_fails_alone_and_the_rest_land(case: str, db: AsyncEngine, database_dsn: str) -> None:
    data, where, says = HOSTILE[case]
    _, report = await import_file(db, settings_for(database_dsn), "alice", data, now=NOW)
    failed = {item.where: item.detail for item in report.failed}
    assert list(failed) == [where], failed
    assert says in failed[where], failed
    assert len(report.added) == 1
    assert await titles(db) == ["Good one"]


async def test_a_zone_icalendar_knows_but_iana_does_not_keeps_the_instant_and_says_so(
    db: AsyncEngine, database_dsn: str
) -> None:
    data = calendar("DUE;TZID=posix/Europe/Berlin:20270310T090000\r\n")
    _, report = await import_file(db, settings_for(database_dsn), "alice", data, now=NOW)
    assert not report.failed and len(report.added) == 2
    (partly,) = report.partly_kept
    assert partly.where == "VTODO 2 (UID bad)" and "'posix/Europe/Berlin' is not an IANA zone" in partly.detail
    async with db.connect() as conn:
        due = await conn.scalar(text("SELECT due_date FROM tasks WHERE uid = 'bad'"))
    assert due == datetime(2027, 3, 10, 8, 0, tzinfo=UTC)  # 09:00 in Berlin, the instant kept


async def test_a_creation_time_out_of_range_lands_now_and_says_so(db: AsyncEngine, database_dsn: str) -> None:
    data = calendar("CREATED;TZID=America/New_York:00010101T000000\r\n")
    _, report = await import_file(db, settings_for(database_dsn), "alice", data, now=NOW)
    assert not report.failed and len(report.added) == 2
    assert [item.where for item in report.partly_kept] == ["VTODO 2 (UID bad)"]
    assert "creation time outside the years" in report.partly_kept[0].detail


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (calendar("").replace(b"SUMMARY:Bad one", b"SUMMARY:Caf\xe9"), "byte 0xE9 on line 10 is not UTF-8"),
        (todoist("task,Caf\xe9,,1,1,,,,,").decode().encode("latin-1"), "byte 0xE9 on line 3 is not UTF-8"),
        (taskwarrior('{"uuid": "bad", "description": "Caf\\u00e9"}').replace(b"\\u00e9", b"\xe9"), "byte 0xE9"),
        ("\ufeff".encode("utf-16-le") + calendar("").decode().encode("utf-16-le"), "UTF-16"),
    ],
    ids=["ics", "todoist", "taskwarrior", "utf-16"],
)
async def test_bytes_that_are_not_utf8_refuse_the_file_naming_where(
    data: bytes, says: str, db: AsyncEngine, database_dsn: str
) -> None:
    with pytest.raises(FormatError, match=says):
        await import_file(db, settings_for(database_dsn), "alice", data, now=NOW)
    assert (await row_counts(db))["tasks"] == 0


async def test_an_all_users_backup_restores_each_users_tasks(db: AsyncEngine, database_dsn: str) -> None:
    from mcp_todo.porting.files import export_backup, import_backup

    settings = settings_for(database_dsn)
    for user, title in (("alice", "Alice's"), ("bob", "Bob's")):
        data = calendar("").replace(b"Good one", title.encode()).replace(b"UID:bad", f"UID:{user}-2".encode())
        _, report = await import_file(db, settings, user, data, now=NOW)
        assert len(report.added) == 2
    backup, users = await export_backup(db, now=NOW)
    assert users == 2 and {task["user"] for task in json.loads(backup)["tasks"]} == {"alice", "bob"}
    with pytest.raises(FormatError, match="restore it with mcp-todo import --all-users"):
        await import_file(db, settings, "alice", backup.encode(), now=NOW)
    async with db.begin() as conn:
        await conn.execute(text("DELETE FROM tasks"))
    reports = await import_backup(db, settings, backup.encode(), now=NOW)
    assert [(user, report.summary()) for user, report in reports] == [
        ("alice", "2 added, 0 updated, 0 unchanged, 0 skipped, 0 failed"),
        ("bob", "2 added, 0 updated, 0 unchanged, 0 skipped, 0 failed"),
    ]
    async with db.connect() as conn:
        owners = (await conn.execute(text("SELECT user_id, title FROM tasks ORDER BY user_id, title"))).all()
    assert [tuple(row) for row in owners] == [
        ("alice", "Alice's"),
        ("alice", "Bad one"),
        ("bob", "Bad one"),
        ("bob", "Bob's"),
    ]
