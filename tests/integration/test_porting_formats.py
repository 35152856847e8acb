"""Files other programs wrote, imported: a real `task export` of Taskwarrior (run here on a temporary database of
its own), an .ics written by another iCalendar producer (vobject), and a Todoist CSV export."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dateutil.tz
import pytest
import vobject
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.porting.files import export_text, import_file
from mcp_todo.porting.report import Report
from tests.integration.tool_client import server_for, settings_for, tools_of

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday


async def stored(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """The user's tasks by title, with their labels and parent's title."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT t.*, c.name AS category, p.title AS parent, "
                "(SELECT array_agg(g.name ORDER BY g.name) FROM task_tags tt JOIN tags g ON g.id = tt.tag_id "
                "WHERE tt.task_id = t.id) AS tags FROM tasks t LEFT JOIN categories c ON c.id = t.category_id "
                "LEFT JOIN tasks p ON p.id = t.parent_id WHERE t.user_id = 'alice'"
            )
        )
        return {row["title"]: dict(row) for row in rows.mappings()}


async def imported(engine: AsyncEngine, dsn: str, data: bytes, **options: Any) -> tuple[str, Report]:
    return await import_file(engine, settings_for(dsn), "alice", data, now=NOW, **options)


# --- Taskwarrior --------------------------------------------------------------------------------------------------


def taskwarrior_export(tmp_path: Path) -> bytes:
    """A `task export` of a few tasks added with the real `task` (Debian's taskwarrior package)."""
    task = shutil.which("task")
    if task is None:
        if os.environ.get("CI"):
            pytest.fail("taskwarrior is not installed (.ci/run installs it)")
        pytest.skip("taskwarrior is not installed: apt-get install taskwarrior")
    rc = tmp_path / "taskrc"
    rc.write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TASKRC": str(rc),
        "TASKDATA": str(tmp_path / "data"),
        "TZ": "America/New_York",
    }

    def run(*args: str) -> str:
        result = subprocess.run(
            [task, "rc.confirmation=off", "rc.verbose=nothing", "rc.hooks=off", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout

    run("add", "Buy milk", "due:2027-03-10T09:00", "priority:H", "+shop", "+errand", "project:Home")
    run("1", "annotate", "ask Bob about oat milk")
    run("add", "Water plants", "due:2027-03-11T18:00", "recur:weekly")
    run("add", "Every three days", "due:2027-03-12T08:00", "recur:3d", "until:2027-06-01")
    run("add", "Old thing", "priority:L")
    run("add", "Gone", "priority:M")
    run("list")  # makes the pending instances of the recurring templates
    uuids = {item["description"]: item["uuid"] for item in json.loads(run("export"))}
    run(uuids["Old thing"], "done")
    run(uuids["Gone"], "delete")
    return run("export").encode()


async def test_a_real_taskwarrior_export(db: AsyncEngine, database_dsn: str, tmp_path: Path) -> None:
    data = taskwarrior_export(tmp_path)
    statuses = sorted(item["status"] for item in json.loads(data))
    assert statuses == ["completed", "deleted", "pending", "pending", "pending", "recurring", "recurring"]

    read_as, report = await imported(db, database_dsn, data)
    assert read_as == "taskwarrior"
    assert not report.failed, list(report.lines())
    assert len(report.added) == 4
    templates = sorted(item["uuid"] for item in json.loads(data) if item["status"] == "recurring")
    assert sorted(item.detail for item in report.skipped) == [
        *(f"a pending instance of recurring task {uuid}, imported as it" for uuid in templates),
        "deleted in Taskwarrior",
    ]

    tasks = await stored(db)
    assert set(tasks) == {"Buy milk", "Water plants", "Every three days", "Old thing"}
    milk = tasks["Buy milk"]
    assert milk["due_date"] == datetime(2027, 3, 10, 14, 0, tzinfo=UTC)
    assert (milk["priority"], milk["category"], milk["tags"]) == ("high", "Home", ["errand", "shop"])
    assert milk["description"].endswith(": ask Bob about oat milk")
    assert milk["time_zone"] == "America/New_York"
    assert milk["remind_at"] == milk["due_date"] - timedelta(minutes=60)
    water = tasks["Water plants"]
    assert (water["recurrence_rule"], water["due_date"]) == ("FREQ=WEEKLY", datetime(2027, 3, 11, 23, 0, tzinfo=UTC))
    assert water["series_id"] == water["id"]
    assert tasks["Every three days"]["recurrence_rule"] == "FREQ=DAILY;INTERVAL=3;UNTIL=20270601T040000Z"
    old = tasks["Old thing"]
    assert (old["status"], old["priority"]) == ("completed", "low")
    assert old["completed_at"] is not None

    _, again = await imported(db, database_dsn, data)
    assert (len(again.added), len(again.updated), len(again.unchanged)) == (0, 0, 4)


# --- another iCalendar producer -----------------------------------------------------------------------------------


def vobject_calendar() -> bytes:
    calendar = vobject.iCalendar()
    passport = calendar.add("vtodo")
    passport.add("uid").value = "vobject-1"
    passport.add("summary").value = "Renew passport"
    passport.add("description").value = "two photos, the old one"
    passport.add("due").value = datetime(2027, 4, 1, 10, 0, tzinfo=dateutil.tz.gettz("Europe/Paris"))
    passport.add("priority").value = "2"
    passport.add("categories").value = ["papers", "admin"]
    passport.add("rrule").value = "FREQ=YEARLY;INTERVAL=10"
    alarm = passport.add("valarm")
    alarm.add("action").value = "DISPLAY"
    alarm.add("description").value = "passport"
    trigger = alarm.add("trigger")
    trigger.value = timedelta(days=-1)
    trigger.params["RELATED"] = ["END"]
    photos = calendar.add("vtodo")
    photos.add("uid").value = "vobject-2"
    photos.add("summary").value = "Get photos"
    photos.add("status").value = "COMPLETED"
    photos.add("completed").value = datetime(2026, 11, 20, 8, 0, tzinfo=dateutil.tz.UTC)
    photos.add("related-to").value = "vobject-1"
    day = calendar.add("vtodo")
    day.add("uid").value = "vobject-3"
    day.add("summary").value = "A date alone"
    day.add("due").value = date(2027, 5, 2)
    day.add("priority").value = "9"
    cancelled = calendar.add("vtodo")
    cancelled.add("uid").value = "vobject-4"
    cancelled.add("summary").value = "Cancelled"
    cancelled.add("status").value = "CANCELLED"
    serialized: str = calendar.serialize()
    return serialized.encode()


async def test_an_ics_file_written_by_vobject(db: AsyncEngine, database_dsn: str) -> None:
    data = vobject_calendar()
    assert b"PRODID:-//PYVOBJECT" in data
    read_as, report = await imported(db, database_dsn, data)
    assert read_as == "ics"
    assert not report.failed, list(report.lines())
    assert len(report.added) == 3
    assert [item.detail for item in report.skipped] == ["cancelled (STATUS:CANCELLED)"]
    tasks = await stored(db)
    passport = tasks["Renew passport"]
    assert passport["due_date"] == datetime(2027, 4, 1, 8, 0, tzinfo=UTC)
    assert (passport["priority"], passport["tags"]) == ("high", ["admin", "papers"])
    assert passport["recurrence_rule"] == "FREQ=YEARLY;INTERVAL=10"
    assert (passport["remind_before_minutes"], passport["remind_at"]) == (1440, datetime(2027, 3, 31, 8, 0, tzinfo=UTC))
    photos = tasks["Get photos"]
    assert (photos["status"], photos["parent"]) == ("completed", "Renew passport")
    assert photos["completed_at"] == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    alone = tasks["A date alone"]
    # A date alone is the end of that day in the user's zone.
    assert (alone["due_date"], alone["priority"]) == (datetime(2027, 5, 3, 3, 59, 59, tzinfo=UTC), "low")

    _, again = await imported(db, database_dsn, data)
    assert (len(again.added), len(again.updated), len(again.unchanged)) == (0, 0, 3)


# --- Todoist ------------------------------------------------------------------------------------------------------

TODOIST_HEADER = (
    "TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE,DURATION,DURATION_UNIT,"
    "DEADLINE,DEADLINE_LANG\n"
)
TODOIST = (
    TODOIST_HEADER
    + """\
task,Plan trip @travel @family,Flights and hotel,4,1,Ann (1),,2027-03-10,en,Europe/London,,,,
task,Book flights,,3,2,Ann (1),,Mar 1 2027 9am,en,Europe/London,,,,
task,Book hotel,,1,2,Ann (1),,every! 3 days,en,Europe/London,,,,
task,Pack passport,,1,3,Ann (1),,,en,Europe/London,,,,
,,,,,,,,,,,,,
section,Work,,,,,,,,,,,,
task,Stand-up,,2,1,Ann (1),,every weekday at 9:30am,en,Europe/London,,,,
note,Bring the numbers,,,,,,,,,,,,
task,Moon watch,,1,1,Ann (1),,every other full moon,en,Europe/London,,,,
task,@only-a-label,,1,1,Ann (1),,,en,Europe/London,,,,
task,Water the cactus,,1,1,Ann (1),,every! monday,en,Europe/London,,,,
"""
)


async def test_a_todoist_csv_export(db: AsyncEngine, database_dsn: str) -> None:
    read_as, report = await imported(db, database_dsn, TODOIST.encode(), name="Inbox.csv")
    assert read_as == "todoist"
    assert [item.where.split(" (")[0] for item in report.failed] == ["line 11"]
    assert "no title" in report.failed[0].detail
    assert len(report.added) == 7
    partly = {item.where.split(" (")[0]: item.detail for item in report.partly_kept}
    assert set(partly) == {"line 4", "line 5", "line 10", "line 12"}, partly
    assert "every other full moon" in partly["line 10"]
    # A subtask repeats with its parent: its own rule is dropped, as add_task refuses one.
    assert partly["line 4"].startswith("repeat rule 'FREQ=DAILY;INTERVAL=3' dropped: a subtask repeats with its parent")
    # INDENT 3 is a subtask of a subtask: subtasks are one level deep, so it joins the top-level task.
    assert "is itself a subtask" in partly["line 5"] and "one level deep" in partly["line 5"]
    # After completion only an interval repeats (the tools' own check): "every! monday" lands without repeating.
    assert "'FREQ=WEEKLY;BYDAY=MO' (repeating after completion) dropped" in partly["line 12"], partly["line 12"]

    tasks = await stored(db)
    trip = tasks["Plan trip"]
    assert (trip["priority"], trip["tags"], trip["time_zone"]) == ("urgent", ["family", "travel"], "Europe/London")
    assert trip["due_date"] == datetime(2027, 3, 10, 23, 59, 59, tzinfo=UTC)
    flights = tasks["Book flights"]
    assert (flights["parent"], flights["priority"]) == ("Plan trip", "high")
    assert flights["due_date"] == datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
    hotel = tasks["Book hotel"]
    assert (hotel["parent"], hotel["priority"], hotel["recurrence_rule"], hotel["recurrence_from"]) == (
        "Plan trip",
        "low",
        None,
        "schedule",
    )
    assert hotel["due_date"] == datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC)
    assert tasks["Pack passport"]["parent"] == "Plan trip"
    cactus = tasks["Water the cactus"]
    assert (cactus["recurrence_rule"], cactus["recurrence_from"], cactus["parent"]) == (None, "schedule", None)
    assert cactus["due_date"] is not None
    standup = tasks["Stand-up"]
    assert (standup["category"], standup["description"]) == ("Work", "Bring the numbers")
    assert standup["recurrence_rule"] == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
    assert standup["due_date"] == datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    moon = tasks["Moon watch"]
    assert moon["due_date"] is None and moon["description"] == "Todoist date: every other full moon"

    _, again = await imported(db, database_dsn, TODOIST.encode())
    assert (len(again.added), len(again.updated), len(again.unchanged)) == (0, 0, 7), list(again.lines())


# --- dependencies -------------------------------------------------------------------------------------------------


async def edges(engine: AsyncEngine, user: str) -> set[tuple[str, str]]:
    """The user's dependencies as (title, title it waits on)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT t.title AS task, b.title AS blocker FROM task_dependencies d "
                "JOIN tasks t ON t.id = d.task_id JOIN tasks b ON b.id = d.blocker_id WHERE d.user_id = :user"
            ),
            {"user": user},
        )
        return {(row.task, row.blocker) for row in rows}


@pytest.mark.parametrize("fmt", ["ics", "json", "taskwarrior"])
async def test_dependencies_survive_an_export_and_import(db: AsyncEngine, database_dsn: str, fmt: str) -> None:
    async with tools_of(server_for(db, database_dsn, "alice")) as tools:
        pour = await tools.add_task(title="Pour the foundation")
        walls = await tools.add_task(title="Build the walls", blocked_by=[pour["id"]])
        await tools.add_task(title="Roof", blocked_by=[walls["id"], pour["id"]])
        done = await tools.add_task(title="Order bricks")
        await tools.update_task(task_id=pour["id"], blocked_by=[done["id"]])
        await tools.complete_task(task_id=done["id"])  # a completed blocker is exported too
    wanted = {
        ("Build the walls", "Pour the foundation"),
        ("Roof", "Build the walls"),
        ("Roof", "Pour the foundation"),
        ("Pour the foundation", "Order bricks"),
    }
    assert await edges(db, "alice") == wanted
    text_out = await export_text(db, "alice", fmt, now=NOW)
    if fmt == "ics":
        assert text_out.count("RELATED-TO;RELTYPE=DEPENDS-ON:") == 4
    if fmt == "taskwarrior":
        assert sum(len(item.get("depends", [])) for item in json.loads(text_out)) == 4
    # Into another user: every dependency by its UID, whatever the order of the tasks in the file.
    data = text_out.encode()
    read_as, report = await import_file(db, settings_for(database_dsn, "bob"), "bob", data, now=NOW)
    assert read_as == fmt and not report.failed and not report.partly_kept, list(report.lines())
    assert await edges(db, "bob") == wanted
    # Importing it again changes nothing.
    _, again = await import_file(db, settings_for(database_dsn, "bob"), "bob", data, now=NOW)
    assert not again.partly_kept and await edges(db, "bob") == wanted


async def test_taskwarrior_depends_in_both_of_its_spellings(db: AsyncEngine, database_dsn: str) -> None:
    a, b, c = ("a0000000-0000-4000-8000-00000000000" + str(i) for i in range(3))
    document = [
        {"uuid": a, "description": "First", "status": "pending", "entry": "20261201T100000Z"},
        # Taskwarrior 2 writes a comma-separated string, Taskwarrior 3 a list.
        {"uuid": b, "description": "Second", "status": "pending", "entry": "20261201T100000Z", "depends": a},
        {"uuid": c, "description": "Third", "status": "pending", "entry": "20261201T100000Z", "depends": [a, b]},
        {
            "uuid": "a0000000-0000-4000-8000-000000000009",
            "description": "Waits on nothing known",
            "status": "pending",
            "entry": "20261201T100000Z",
            "depends": "b0000000-0000-4000-8000-000000000000",
        },
    ]
    read_as, report = await imported(db, database_dsn, json.dumps(document).encode())
    assert read_as == "taskwarrior" and len(report.added) == 4
    assert [item.detail for item in report.partly_kept] == [
        "depends on UID b0000000-0000-4000-8000-000000000000, which is not an imported task: not kept"
    ]
    assert await edges(db, "alice") == {("Second", "First"), ("Third", "First"), ("Third", "Second")}


async def test_an_ics_dependency_cycle_is_reported_not_kept(db: AsyncEngine, database_dsn: str) -> None:
    calendar = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        "BEGIN:VTODO\r\nUID:one\r\nSUMMARY:One\r\nRELATED-TO;RELTYPE=DEPENDS-ON:two\r\nEND:VTODO\r\n"
        "BEGIN:VTODO\r\nUID:two\r\nSUMMARY:Two\r\nRELATED-TO;RELTYPE=DEPENDS-ON:one\r\nEND:VTODO\r\n"
        "END:VCALENDAR\r\n"
    )
    _, report = await imported(db, database_dsn, calendar.encode())
    assert len(report.added) == 2
    [cycle] = report.partly_kept
    assert "close a cycle" in cycle.detail and "UID two" in cycle.where
    assert await edges(db, "alice") == {("One", "Two")}
