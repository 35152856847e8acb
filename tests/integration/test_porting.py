"""Export and import through the real database: the round trip into an empty database (field by field), the
idempotent re-import, dry runs, bad records reported while the rest land, bad files refused with nothing changed,
and the `todo://export.ics` resource read through the MCP client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.engine import create_engine
from mcp_todo.events import Envelope, TaskCreated
from mcp_todo.handlers.next_occurrence import handle_task_completed
from mcp_todo.jobs.reminder_scheduler import ReminderScheduler
from mcp_todo.porting.files import export_text, import_file
from mcp_todo.porting.records import FormatError
from mcp_todo.service.shapes import task_out
from tests.integration.test_reminders import running
from tests.integration.tool_client import Tools, execute, outbox, row_counts, server_for, settings_for, tools_of
from tests.support.database import DatabaseFactory
from tests.support.polling import eventually

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn)) as client:
        yield client


@pytest.fixture
async def empty(db_factory: DatabaseFactory) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """A second, empty database to import into."""
    dsn = await db_factory.create()
    engine = create_engine(dsn, pool_size=2)
    yield engine, dsn
    await engine.dispose()


async def sample_tasks(tools: Tools, db: AsyncEngine) -> None:
    """Tasks with every feature an export carries, made by the tools (and the recurrer): labels, a lead and an
    absolute and a cleared reminder, a rule (a series with a past occurrence, and a subtask copied to the next one),
    repeat-from-completion, a completed task, a subtask, a DST-gap due date, a task in the trash (not exported)."""
    home = await tools.add_category(name="Home", color="#112233")
    urgent = await tools.add_tag(name="Urgent", color="#FF0000")
    errand = await tools.add_tag(name="errand")
    groceries = await tools.add_task(
        title="Buy groceries",
        description="milk, eggs;\nbread, butter",
        priority="high",
        due_date="2027-03-10T09:00",
        category_id=home["id"],
        tag_ids=[urgent["id"], errand["id"]],
        remind_before_minutes=30,
    )
    await tools.add_task(title="No date, low", priority="low")
    standup = await tools.add_task(
        title="Stand-up", due_date="2027-01-04T09:30", recurrence_rule="FREQ=WEEKLY;BYDAY=MO;COUNT=5"
    )
    absolute = await tools.add_task(title="Absolute reminder", due_date="2027-02-01", priority="urgent")
    await tools.set_reminder(task_id=absolute["id"], remind_at="2027-01-31T20:00")
    cleared = await tools.add_task(title="No reminder", due_date="2027-02-02T10:00")
    await tools.set_reminder(task_id=cleared["id"], remind_at=None)
    done = await tools.add_task(title="Done already", due_date="2026-11-01T08:00")
    await tools.complete_task(task_id=done["id"])
    await tools.add_task(title="Spring forward", due_date="2027-03-14T02:30", recurrence_rule="FREQ=DAILY;COUNT=3")
    await tools.add_task(
        title="Water plants",
        due_date="2027-01-05T18:00",
        recurrence_rule="FREQ=DAILY;INTERVAL=3",
        recurrence_from="completion",
    )
    await tools.add_task(
        title="Buy milk", due_date="2027-03-09T18:00", tag_ids=[errand["id"]], parent_id=groceries["id"]
    )
    await execute(db, "UPDATE tasks SET reminder_sent = true WHERE id = :id", id=absolute["id"])  # it fired
    # The stand-up's second occurrence, made by the real recurrer from the completion: same series, started a week
    # earlier, with a fresh copy of the first one's subtask (completed with it).
    await tools.add_task(title="Prepare notes", parent_id=standup["id"])
    await tools.complete_task(task_id=standup["id"])
    completed = Envelope.from_dict((await outbox(db))[-1]["payload"])
    assert completed.task_id == standup["id"]
    assert await handle_task_completed(db, completed) is not None
    trashed = await tools.add_task(title="In the trash")
    await tools.delete_task(task_id=trashed["id"])


_SNAPSHOT = text(
    "SELECT t.*, c.name AS category_name, c.color AS category_color, p.uid AS parent_uid, s.uid AS series_uid, "
    "(SELECT array_agg(g.name || ' ' || coalesce(g.color, '-') ORDER BY g.name) FROM task_tags tt "
    "JOIN tags g ON g.id = tt.tag_id WHERE tt.task_id = t.id) AS tag_list "
    "FROM tasks t LEFT JOIN categories c ON c.id = t.category_id LEFT JOIN tasks p ON p.id = t.parent_id "
    "LEFT JOIN LATERAL (SELECT min(o.uid) AS uid FROM tasks o WHERE o.series_id = t.series_id) s ON true "
    "WHERE t.user_id = :user AND t.deleted_at IS NULL ORDER BY t.uid"
)
COMPARED = (
    "uid",
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "time_zone",
    "category_name",
    "recurrence_rule",
    "recurrence_from",
    "series_start",
    "series_start_wall",
    "series_uid",
    "remind_before_minutes",
    "remind_at",
    "reminder_sent",
    "completed_at",
    "parent_uid",
)


async def snapshot(engine: AsyncEngine, user: str = "alice", *, colors: bool = True) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = [dict(row) for row in (await conn.execute(_SNAPSHOT, {"user": user})).mappings()]
    shown = []
    for row in rows:
        item = {name: row[name] for name in COMPARED}
        # iCalendar carries whole seconds.
        for name in ("completed_at",):
            if item[name] is not None:
                item[name] = item[name].replace(microsecond=0)
        item["created_at"] = row["created_at"].replace(microsecond=0)
        tags = row["tag_list"] or []
        item["tags"] = tags if colors else [tag.rsplit(" ", 1)[0] for tag in tags]
        if colors:
            item["category_color"] = row["category_color"]
        shown.append(item)
    return shown


@pytest.mark.parametrize("fmt", ["ics", "json"])
async def test_round_trip_into_an_empty_database_then_again(
    fmt: str, tools: Tools, db: AsyncEngine, database_dsn: str, empty: tuple[AsyncEngine, str]
) -> None:
    await sample_tasks(tools, db)
    exported = await export_text(db, "alice", fmt, now=NOW)
    assert "In the trash" not in exported
    target, target_dsn = empty
    settings = settings_for(target_dsn)
    read_as, report = await import_file(target, settings, "alice", exported.encode(), fmt="auto", now=NOW)
    assert read_as == fmt
    assert not report.failed and not report.skipped, list(report.lines())
    assert len(report.added) == 12
    source = await snapshot(db, colors=fmt == "json")
    imported = await snapshot(target, colors=fmt == "json")
    for before, after in zip(source, imported, strict=True):
        assert {k: (v, after[k]) for k, v in before.items() if after[k] != v} == {}, before["title"]
    # Every imported task announced itself as the tools would, so the workers see it (its reminder).
    events = await outbox(target)
    assert [event["event_type"] for event in events] == ["task.created"] * 12
    assert {event["payload"]["data"]["title"] for event in events} == {item["title"] for item in source}
    # Each is the snapshot the tools build (`TaskCreated`), with the subtask's parent and the repeat mode.
    async with target.connect() as conn:
        for event in events:
            row = await tasks_db.fetch(conn, "alice", event["task_id"])
            assert event["payload"]["data"] == TaskCreated.from_task(task_out(row)).model_dump(mode="json")
    by_title = {event["payload"]["data"]["title"]: event["payload"]["data"] for event in events}
    assert by_title["Buy milk"]["parent_id"] == by_title["Buy groceries"]["id"]
    assert by_title["Water plants"]["recurrence_from"] == "completion"
    assert by_title["Stand-up"]["parent_id"] is None and by_title["Stand-up"]["recurrence_from"] == "schedule"
    notes = [
        (e["payload"]["data"]["parent_id"], e["payload"]["data"]["status"])
        for e in events
        if e["payload"]["data"]["title"] == "Prepare notes"
    ]
    standups = {
        e["payload"]["data"]["status"]: e["task_id"] for e in events if e["payload"]["data"]["title"] == "Stand-up"
    }
    assert sorted(notes) == sorted([(standups["completed"], "completed"), (standups["pending"], "pending")])

    counts = await row_counts(target)
    _, again = await import_file(target, settings, "alice", exported.encode(), now=NOW + timedelta(hours=1))
    assert (len(again.added), len(again.updated), len(again.unchanged)) == (0, 0, 12), list(again.lines())
    assert await row_counts(target) == counts  # no task, label or event more


async def test_a_changed_file_updates_with_events_and_a_completion_feeds_the_recurrer(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    task = await tools.add_task(title="Pay rent", due_date="2027-01-01T10:00", recurrence_rule="FREQ=MONTHLY")
    document = json.loads(await export_text(db, "alice", "json", now=NOW))
    document["tasks"][0].update(title="Pay the rent", status="completed", completed_at="2027-01-01T11:00:00-05:00")
    before = len(await outbox(db))
    settings = settings_for(database_dsn)
    _, report = await import_file(db, settings, "alice", json.dumps(document).encode(), now=NOW)
    assert report.updated and not report.added, list(report.lines())
    events = (await outbox(db))[before:]
    assert [event["event_type"] for event in events] == ["task.updated", "task.completed"]
    assert events[0]["payload"]["data"] == {"title": "Pay the rent"}
    assert "task-recurrence" in events[1]["topics"]
    listed = await tools.list_tasks()
    assert [(t["id"], t["title"], t["status"]) for t in listed["tasks"]] == [(task["id"], "Pay the rent", "completed")]


async def test_dry_run_reports_and_changes_nothing(tools: Tools, db: AsyncEngine, database_dsn: str) -> None:
    await tools.add_task(title="Existing", due_date="2027-01-01")
    exported = await export_text(db, "alice", "ics", now=NOW)
    await execute(db, "TRUNCATE tasks, categories, tags, task_tags, outbox RESTART IDENTITY CASCADE")
    _, report = await import_file(db, settings_for(database_dsn), "alice", exported.encode(), now=NOW, dry_run=True)
    assert len(report.added) == 1
    assert next(report.lines()).startswith("dry run, nothing changed: would be 1 added")
    assert (await row_counts(db))["tasks"] == 0 and (await row_counts(db))["outbox"] == 0


BAD_RECORDS = b"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//bad records//EN
BEGIN:VTODO
UID:good-1
SUMMARY:Good one
DUE;VALUE=DATE:20270310
END:VTODO
BEGIN:VTODO
UID:no-title
DUE:20270310T090000Z
END:VTODO
BEGIN:VTODO
UID:bad-rule
SUMMARY:Hourly thing
DUE:20270310T090000Z
RRULE:FREQ=HOURLY
END:VTODO
BEGIN:VTODO
UID:good-1
SUMMARY:Same UID again
END:VTODO
BEGIN:VTODO
UID:bad-due
SUMMARY:Broken due
DUE:not-a-date
END:VTODO
BEGIN:VTODO
UID:child
SUMMARY:Orphan subtask
RELATED-TO:missing-parent
END:VTODO
END:VCALENDAR
"""


async def test_bad_records_are_reported_by_uid_and_the_rest_land(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    _, report = await import_file(db, settings_for(database_dsn), "alice", BAD_RECORDS, now=NOW)
    failed = {item.where: item.detail for item in report.failed}
    assert set(failed) == {"VTODO 2 (UID no-title)", "VTODO 4 (UID good-1)", "VTODO 5 (UID bad-due)"}, failed
    assert "no title" in failed["VTODO 2 (UID no-title)"]
    assert "same UID" in failed["VTODO 4 (UID good-1)"]
    partly = {item.where: item.detail for item in report.partly_kept}
    assert "FREQ=HOURLY" in partly["VTODO 3 (UID bad-rule)"] and "dropped" in partly["VTODO 3 (UID bad-rule)"]
    assert "missing-parent" in partly["VTODO 6 (UID child)"]
    titles = {t["title"]: t for t in (await tools.list_tasks())["tasks"]}
    assert set(titles) == {"Good one", "Hourly thing", "Orphan subtask"}
    # A date alone is the end of that day in the user's zone, reminded of that morning (all-day reminder time).
    assert titles["Good one"]["due_date"] == "2027-03-10T23:59:59-05:00"
    assert titles["Good one"]["remind_at"] == "2027-03-10T09:00:00-05:00"
    assert "recurrence_rule" not in titles["Hourly thing"] or titles["Hourly thing"]["recurrence_rule"] is None


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"hello, world\n", "cannot tell the format"),
        (b"BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:e\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n", "no VTODO"),
        (b"BEGIN:VCALENDAR\nBEGIN:VTODO\n", "VTODO"),
        (b"BEGIN:VCARD\nEND:VCARD\n", "cannot tell the format"),
        (b'{"tasks": []}', "neither an mcp-todo export"),
        (b'{"format": "mcp-todo", "version": 99, "tasks": []}', "version 99"),
        (b"[1, 2", "not valid JSON"),
        (b"[]", "neither"),
        (b"TYPE,CONTENT,PRIORITY\n", "no task rows"),
        (b"BEGIN:VCALENDAR\n" + b"X" * (17 * 1024 * 1024), "larger than 16 MB"),
    ],
)
async def test_bad_files_are_refused_and_change_nothing(
    content: bytes, says: str, db: AsyncEngine, database_dsn: str
) -> None:
    with pytest.raises(FormatError, match=says):
        await import_file(db, settings_for(database_dsn), "alice", content, now=NOW)
    assert (await row_counts(db))["tasks"] == 0


async def test_users_are_kept_apart(tools: Tools, db: AsyncEngine, database_dsn: str) -> None:
    await tools.add_task(title="alice's")
    exported = await export_text(db, "alice", "json", now=NOW)
    assert json.loads(await export_text(db, "bob", "json", now=NOW))["tasks"] == []
    _, report = await import_file(db, settings_for(database_dsn, "bob"), "bob", exported.encode(), now=NOW)
    # The same uid is another task for another user.
    assert len(report.added) == 1
    assert (await row_counts(db))["tasks"] == 2


async def test_export_resource_through_the_mcp_client(tools: Tools, db: AsyncEngine, database_dsn: str) -> None:
    await tools.add_task(title="Call the plumber", due_date="2027-05-01T08:00", priority="urgent")
    async with tools_of(server_for(db, database_dsn, "bob")) as bob:
        await bob.add_task(title="bob's secret")
        listed = await tools.client.list_resources()
        assert "todo://export.ics" in [str(r.uri) for r in listed.resources]
        result = await tools.client.read_resource("todo://export.ics")
        content = result.contents[0]
        assert content.mime_type == "text/calendar"
        body: str = content.text  # type: ignore[union-attr]
        assert body.startswith("BEGIN:VCALENDAR")
        assert "SUMMARY:Call the plumber" in body and "PRIORITY:1" in body
        assert "DUE;TZID=America/New_York:20270501T080000" in body
        assert "bob's secret" not in body
        assert "bob's secret" in (await bob.client.read_resource("todo://export.ics")).contents[0].text  # type: ignore[union-attr]


async def test_a_trashed_task_is_skipped_and_a_parent_link_never_closes_a_cycle(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    parent = await tools.add_task(title="Parent")
    await tools.add_task(title="Child", parent_id=parent["id"])
    gone = await tools.add_task(title="Gone")
    document = json.loads(await export_text(db, "alice", "json", now=NOW))
    uids = {task["title"]: task["uid"] for task in document["tasks"]}
    await tools.delete_task(task_id=gone["id"])
    # The file (without the child) makes the parent a subtask of its own subtask, which the account holds.
    document["tasks"] = [task for task in document["tasks"] if task["title"] != "Child"]
    document["tasks"][0]["parent_uid"] = uids["Child"]
    document["tasks"].append({"uid": "under-gone", "title": "Under gone", "parent_uid": uids["Gone"]})
    _, report = await import_file(db, settings_for(database_dsn), "alice", json.dumps(document).encode(), now=NOW)
    assert [(item.where, item.detail) for item in report.skipped] == [
        (
            f"task 2 (UID {uids['Gone']})",
            f"task {gone['id']} has this UID and is in the trash — restore it (update_task status=pending) "
            "to update it",
        )
    ]
    assert report.unchanged == [f"task 1 (UID {uids['Parent']})"], list(report.lines())
    assert [item.detail for item in report.partly_kept] == [
        f"parent UID {uids['Child']} is one of its own subtasks: kept at the top level",
        f"parent UID {uids['Gone']} is in the trash: imported as a top-level task",
    ]
    async with db.connect() as conn:
        links: dict[str, int | None] = dict(
            (await conn.execute(text("SELECT title, parent_id FROM tasks ORDER BY id"))).all()
        )
    assert links == {"Parent": None, "Child": parent["id"], "Gone": None, "Under gone": None}


async def test_an_imported_reminder_fires(db: AsyncEngine, database_dsn: str) -> None:
    """The reminder scheduler (the notifier's, or local mode's) sees an imported task like any other."""
    settings = settings_for(database_dsn).model_copy(update={"notify_urls": None})
    async with running(ReminderScheduler(db, database_dsn, settings, poll_interval_s=30)):
        async with db.connect() as conn:
            now: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        due = (now + timedelta(minutes=10, seconds=2)).astimezone(UTC)
        ics = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//reminder//EN\r\nBEGIN:VTODO\r\nUID:soon\r\n"
            f"SUMMARY:Soon\r\nDUE:{due:%Y%m%dT%H%M%SZ}\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Soon\r\n"
            "TRIGGER;RELATED=END:-PT10M\r\nEND:VALARM\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
        )
        _, report = await import_file(db, settings, "alice", ics.encode(), now=now)
        assert len(report.added) == 1, list(report.lines())

        async def fired() -> bool:
            async with db.connect() as conn:
                types: list[str] = list(
                    (await conn.execute(text("SELECT event_type FROM outbox ORDER BY id"))).scalars()
                )
            return list(types) == ["task.created", "reminder.due"]

        await eventually(fired, 10.0, "the imported task's reminder fired")


def calendar(*todos: str) -> bytes:
    body = "".join(
        f"BEGIN:VTODO\r\n{todo.strip().replace(chr(10), chr(13) + chr(10))}\r\nEND:VTODO\r\n" for todo in todos
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//porting//EN\r\n{body}END:VCALENDAR\r\n".encode()


async def parents(engine: AsyncEngine) -> dict[str, str | None]:
    """Each task's title → its parent's title."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT t.title, p.title FROM tasks t LEFT JOIN tasks p ON p.id = t.parent_id WHERE t.user_id = 'alice'"
            )
        )
        return {str(title): None if parent is None else str(parent) for title, parent in rows.all()}


DEEP = calendar(
    "UID:trip\nSUMMARY:Plan trip",
    "UID:flights\nSUMMARY:Book flights\nRELATED-TO:trip",
    "UID:seats\nSUMMARY:Pick seats\nRELATED-TO;RELTYPE=PARENT:flights",
    "UID:aisle\nSUMMARY:Ask for the aisle\nRELATED-TO:seats",
    # Listed before its parent chain ends: the import writes parents first whatever the file's order.
    "UID:meal\nSUMMARY:Order a meal\nRELATED-TO:aisle",
)


async def test_a_deeper_hierarchy_is_flattened_onto_its_top_level_task(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    """Subtasks are one level deep: a grandchild (and deeper) joins its top-level ancestor, reported as partly kept;
    re-importing the same file changes nothing."""
    settings = settings_for(database_dsn)
    _, report = await import_file(db, settings, "alice", DEEP, now=NOW)
    assert len(report.added) == 5 and not report.failed, list(report.lines())
    assert await parents(db) == {
        "Plan trip": None,
        "Book flights": "Plan trip",
        "Pick seats": "Plan trip",
        "Ask for the aisle": "Plan trip",
        "Order a meal": "Plan trip",
    }
    partly = {item.where: item.detail for item in report.partly_kept}
    assert set(partly) == {"VTODO 3 (UID seats)", "VTODO 4 (UID aisle)", "VTODO 5 (UID meal)"}
    assert partly["VTODO 3 (UID seats)"] == (
        "parent UID flights is itself a subtask (of UID trip); subtasks are one level deep: attached to UID trip"
    )
    # What the tools see: one parent, four subtasks, and the events say so.
    trip = next(t for t in (await tools.list_tasks())["tasks"] if t["title"] == "Plan trip")
    assert trip["total_subtasks"] == 4
    created = [e["payload"]["data"] for e in await outbox(db) if e["event_type"] == "task.created"]
    assert sorted(data["parent_id"] is None for data in created) == [False] * 4 + [True]
    assert {data["parent_id"] for data in created} == {None, trip["id"]}

    counts = await row_counts(db)
    _, again = await import_file(db, settings, "alice", DEEP, now=NOW + timedelta(hours=1))
    assert (len(again.added), len(again.updated), len(again.unchanged)) == (0, 0, 5), list(again.lines())
    assert await row_counts(db) == counts


async def test_subtask_links_onto_the_account_stay_one_level_deep(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    """A file's parent that is a subtask in the account gives its own parent; a task that has subtasks in the
    account cannot become a subtask (the tools' `require_parent` says why), so it stays at the top level."""
    home = await tools.add_task(title="Home")
    kitchen = await tools.add_task(title="Kitchen", parent_id=home["id"])
    garden = await tools.add_task(title="Garden")
    await tools.add_task(title="Mow", parent_id=garden["id"])
    document = json.loads(await export_text(db, "alice", "json", now=NOW))
    uids = {task["title"]: task["uid"] for task in document["tasks"]}
    for task in document["tasks"]:
        if task["title"] == "Garden":
            task["parent_uid"] = uids["Home"]  # it has a subtask of its own
    document["tasks"].append({"uid": "sink", "title": "Fix the sink", "parent_uid": uids["Kitchen"]})
    _, report = await import_file(db, settings_for(database_dsn), "alice", json.dumps(document).encode(), now=NOW)
    assert not report.failed, list(report.lines())
    assert report.added == ["task 5 (UID sink)"]
    partly = {item.where.split(" (")[0]: item.detail for item in report.partly_kept}
    assert partly["task 5"].startswith(f"parent UID {uids['Kitchen']} is itself a subtask (of UID {uids['Home']})")
    assert partly["task 3"] == (
        f"parent UID {uids['Home']} not kept: task {garden['id']} has subtasks of its own, so it cannot become a "
        "subtask (one level deep)"
    )
    assert await parents(db) == {
        "Home": None,
        "Kitchen": "Home",
        "Garden": None,
        "Mow": "Garden",
        "Fix the sink": "Home",
    }
    assert kitchen["id"] != garden["id"]


SUBTASK_WITH_RULE = calendar(
    "UID:laundry\nSUMMARY:Laundry\nDUE:20270104T090000Z\nRRULE:FREQ=WEEKLY",
    "UID:fold\nSUMMARY:Fold\nDUE:20270104T100000Z\nRRULE:FREQ=DAILY\nRELATED-TO:laundry",
    "UID:orphan\nSUMMARY:Orphan with a rule\nDUE:20270104T100000Z\nRRULE:FREQ=DAILY\nRELATED-TO:nowhere",
)


async def test_a_subtask_with_a_rule_keeps_the_task_and_drops_the_rule(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    """add_task refuses a subtask with a rule (it repeats with its parent); an import keeps the subtask and drops
    its rule, reported. A subtask whose parent is not found is top-level, and keeps its rule."""
    parent = await tools.add_task(title="p")
    refused = await tools.error(
        "add_task",
        {"title": "x", "due_date": "2027-01-04T10:00", "recurrence_rule": "FREQ=DAILY", "parent_id": parent["id"]},
    )
    assert "VALIDATION_ERROR" in refused and "repeats with its parent" in refused
    _, report = await import_file(db, settings_for(database_dsn), "alice", SUBTASK_WITH_RULE, now=NOW)
    assert len(report.added) == 3 and not report.failed, list(report.lines())
    partly = {item.where: item.detail for item in report.partly_kept}
    assert partly["VTODO 2 (UID fold)"] == (
        "repeat rule 'FREQ=DAILY' dropped: a subtask repeats with its parent (a recurring parent's next occurrence "
        "gets fresh copies of its subtasks), so it has no recurrence_rule of its own"
    )
    assert "nowhere not found" in partly["VTODO 3 (UID orphan)"]
    async with db.connect() as conn:
        rows = await conn.execute(
            text("SELECT uid, parent_id IS NOT NULL, recurrence_rule, series_id IS NOT NULL FROM tasks WHERE uid <> ''")
        )
        stored = {uid: rest for uid, *rest in rows.all()}
    assert stored["laundry"] == [False, "FREQ=WEEKLY", True]
    assert stored["fold"] == [True, None, False]
    assert stored["orphan"] == [False, "FREQ=DAILY", True]
    listed = {t["title"]: t for t in (await tools.list_tasks())["tasks"]}
    assert listed["Laundry"]["total_subtasks"] == 1


COMPLETION_RULES = calendar(
    "UID:gym\nSUMMARY:Gym\nDUE:20270104T090000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO,TH\nX-MCP-TODO-RECURRENCE-FROM:completion",
    "UID:filter\nSUMMARY:Change the filter\nDUE:20270104T090000Z\nRRULE:FREQ=MONTHLY;INTERVAL=3;COUNT=4\n"
    "X-MCP-TODO-RECURRENCE-FROM:completion",
    "UID:call\nSUMMARY:Call mum\nDUE:20270104T090000Z\nRRULE:FREQ=WEEKLY;BYDAY=SU",
)


async def test_a_completion_rule_is_checked_as_the_tools_check_it(
    tools: Tools, db: AsyncEngine, database_dsn: str
) -> None:
    """Repeating after completion takes FREQ and INTERVAL (with COUNT or UNTIL): a BYDAY rule in that mode is what
    add_task refuses with INVALID_RECURRENCE_RULE, so the record lands without repeating, with that reason."""
    refused = await tools.error(
        "add_task",
        {
            "title": "Gym",
            "due_date": "2027-01-04T09:00",
            "recurrence_rule": "FREQ=WEEKLY;BYDAY=MO,TH",
            "recurrence_from": "completion",
        },
    )
    assert "INVALID_RECURRENCE_RULE" in refused
    _, report = await import_file(db, settings_for(database_dsn), "alice", COMPLETION_RULES, now=NOW)
    assert len(report.added) == 3 and not report.failed, list(report.lines())
    partly = {item.where: item.detail for item in report.partly_kept}
    assert set(partly) == {"VTODO 1 (UID gym)"}, partly
    assert partly["VTODO 1 (UID gym)"].startswith(
        "repeat rule 'FREQ=WEEKLY;BYDAY=MO,TH' (repeating after completion) dropped: "
    )
    listed = {t["title"]: t for t in (await tools.list_tasks())["tasks"]}
    assert listed["Gym"].get("recurrence_rule") is None
    assert listed["Change the filter"]["recurrence_rule"] == "FREQ=MONTHLY;INTERVAL=3;COUNT=4"
    assert listed["Change the filter"]["recurrence_from"] == "completion"
    assert listed["Call mum"]["recurrence_rule"] == "FREQ=WEEKLY;BYDAY=SU"
    created = {e["payload"]["data"]["title"]: e["payload"]["data"] for e in await outbox(db)}
    assert (created["Gym"]["recurrence_rule"], created["Gym"]["recurrence_from"]) == (None, "schedule")
    assert created["Change the filter"]["recurrence_from"] == "completion"
