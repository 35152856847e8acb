"""The CalDAV server's pieces that need no database: a stored row rendered as a VTODO and read back (the export's
mapping), the lines a client wrote that mcp-todo does not model (kept verbatim), and calendar-query filters."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from mcp_todo.caldav.calendar_filters import matches
from mcp_todo.caldav.davxml import parse
from mcp_todo.caldav.vtodo import kept_lines, read_put, render
from mcp_todo.domain.errors import ValidationError
from mcp_todo.porting.ics import read_ics, write_ics
from mcp_todo.porting.prepare import prepare
from mcp_todo.porting.records import Parsed
from mcp_todo.porting.source import record_of_row

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def row(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 7,
        "uid": "u-7",
        "title": "call the plumber",
        "description": None,
        "status": "pending",
        "priority": "high",
        "due_date": datetime(2027, 3, 2, 8, 0, tzinfo=UTC),
        "time_zone": "Europe/Berlin",
        "category_id": None,
        "recurrence_rule": None,
        "series_id": None,
        "series_start": None,
        "series_start_wall": None,
        "recurrence_from": "schedule",
        "remind_before_minutes": 15,
        "remind_at": datetime(2027, 3, 2, 7, 45, tzinfo=UTC),
        "reminder_sent": False,
        "completed_at": None,
        "created_at": NOW - timedelta(days=1),
        "updated_at": NOW,
        "deleted_at": None,
        "parent_id": None,
        "change_xid": 1234,
        "category_name": None,
        "parent_uid": None,
        "tag_names": ["home"],
        "href": None,
        "kept": None,
        "depends_on": None,
    }
    return base | overrides


def test_a_rendered_task_carries_its_zone_alarm_and_tags_and_reads_back_the_same() -> None:
    body = render(row())
    calendar: Any = icalendar.Calendar.from_ical(body)
    todo: Any = next(c for c in calendar.subcomponents if c.name == "VTODO")
    assert [c.name for c in calendar.subcomponents] == ["VTIMEZONE", "VTODO"]
    assert todo["due"].params["TZID"] == "Europe/Berlin"
    assert todo["due"].dt == datetime(2027, 3, 2, 8, 0, tzinfo=UTC)
    assert [str(c) for c in todo["categories"].cats] == ["home"]
    assert todo.walk("VALARM")[0]["trigger"].dt == timedelta(minutes=-15)
    assert render(row()) == body  # the same row renders the same bytes (DTSTAMP is its last change)

    task = read_put(body, "Asia/Kolkata")
    assert (task.uid, task.title, task.priority, task.tags, task.lead) == (
        "u-7",
        "call the plumber",
        "high",
        ["home"],
        15,
    )
    assert task.due == datetime(2027, 3, 2, 8, 0, tzinfo=UTC)
    assert not task.completed and task.kept is None


def test_unmodelled_lines_are_kept_as_written_and_spliced_back() -> None:
    body = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VTODO\r\nUID:a\r\nSUMMARY:pack\r\n"
        "LOCATION;LANGUAGE=en:the attic\r\nX-APPLE-SORT-ORDER:42\r\n"
        "DESCRIPTION:a long one\r\n  folded\r\n"
        "RELATED-TO;RELTYPE=DEPENDS-ON:other\r\nRELATED-TO:parent-uid\r\n"
        "DUE:20270302T080000Z\r\n"
        "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER;RELATED=END:-PT15M\r\nEND:VALARM\r\n"
        "BEGIN:VALARM\r\nACTION:AUDIO\r\nTRIGGER;RELATED=END:-PT5M\r\nEND:VALARM\r\n"
        "END:VTODO\r\nEND:VCALENDAR\r\n"
    )
    kept = kept_lines(body)
    properties = "LOCATION;LANGUAGE=en:the attic\r\nX-APPLE-SORT-ORDER:42\r\n"
    alarm = "BEGIN:VALARM\r\nACTION:AUDIO\r\nTRIGGER;RELATED=END:-PT5M\r\nEND:VALARM\r\n"
    assert kept == properties + alarm
    task = read_put(body.encode(), "UTC")
    assert task.parent_uid == "parent-uid" and task.lead == 15 and task.description == "a long one folded"
    assert task.depends_on == ["other"]  # RFC 9253 DEPENDS-ON: a dependency, not a kept line
    rendered = render(row(kept=kept, uid="a", change_xid=1235))  # storing kept lines is a write: a new stamp
    # The properties before the VTODO's components (RFC 5545 puts them first), the kept VALARM after its own.
    assert rendered.index(properties.encode()) < rendered.index(b"BEGIN:VALARM") < rendered.index(alarm.encode())
    assert rendered.index(alarm.encode()) < rendered.index(b"END:VTODO")
    assert len(_todo_of(rendered).walk("VALARM")) == 2 and str(_todo_of(rendered)["location"]) == "the attic"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not a calendar", "not a readable iCalendar object"),
        (
            b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:e\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            r"to-dos \(VTODO\) only",
        ),
        (
            b"BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nUID:a\r\nEND:VTODO\r\nBEGIN:VTODO\r\nUID:a\r\nEND:VTODO\r\n"
            b"END:VCALENDAR\r\n",
            "exactly one VTODO",
        ),
        (b"BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nSUMMARY:x\r\nEND:VTODO\r\nEND:VCALENDAR\r\n", "no UID"),
        (
            b"BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nUID:a\r\nSTATUS:CANCELLED\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
            "CANCELLED",
        ),
        (b"BEGIN:VCALENDAR\r\n" + b"X:" + b"y" * 300_000 + b"\r\nEND:VCALENDAR\r\n", "larger than"),
    ],
)
def test_a_body_that_is_not_one_readable_vtodo_is_refused_saying_why(body: bytes, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        read_put(body, "UTC")


def test_an_all_day_due_date_is_a_date_in_the_users_zone() -> None:
    body = b"BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nUID:a\r\nSUMMARY:x\r\nDUE;VALUE=DATE:20270310\r\n"
    body += b"END:VTODO\r\nEND:VCALENDAR\r\n"
    task = read_put(body, "Asia/Kolkata")
    assert task.due_date == "2027-03-10"
    assert task.due == datetime(2027, 3, 10, 18, 29, 59, tzinfo=UTC)


def _filter(inner: str) -> ET.Element:
    root = parse(
        (
            '<c:calendar-query xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:d="DAV:"><c:filter>'
            f'<c:comp-filter name="VCALENDAR">{inner}</c:comp-filter></c:filter></c:calendar-query>'
        ).encode()
    )
    assert root is not None
    found = root.find("{urn:ietf:params:xml:ns:caldav}filter")
    assert found is not None
    return found


def test_calendar_query_filters_select_open_todos_time_ranges_and_text() -> None:
    open_task = row()
    done = row(status="completed", completed_at=NOW)
    undated = row(due_date=None)
    not_completed = _filter(
        '<c:comp-filter name="VTODO"><c:prop-filter name="COMPLETED"><c:is-not-defined/></c:prop-filter>'
        "</c:comp-filter>"
    )
    assert [matches(r, not_completed) for r in (open_task, done)] == [True, False]
    status = _filter(
        '<c:comp-filter name="VTODO"><c:prop-filter name="STATUS">'
        '<c:text-match negate-condition="yes">COMPLETED</c:text-match></c:prop-filter></c:comp-filter>'
    )
    assert [matches(r, status) for r in (open_task, done)] == [True, False]
    march_2 = _filter(
        '<c:comp-filter name="VTODO"><c:time-range start="20270302T000000Z" end="20270303T000000Z"/></c:comp-filter>'
    )
    march_5 = _filter(
        '<c:comp-filter name="VTODO"><c:time-range start="20270305T000000Z" end="20270306T000000Z"/></c:comp-filter>'
    )
    assert [matches(r, march_2) for r in (open_task, undated)] == [True, True]  # undated: created before the end
    assert matches(open_task, march_5) is False
    events = _filter('<c:comp-filter name="VEVENT"/>')
    assert matches(open_task, events) is False
    summary = _filter(
        '<c:comp-filter name="VTODO"><c:prop-filter name="SUMMARY"><c:text-match>PLUMBER</c:text-match>'
        "</c:prop-filter></c:comp-filter>"
    )
    assert matches(open_task, summary) is True
    location = _filter('<c:comp-filter name="VTODO"><c:prop-filter name="LOCATION"/></c:comp-filter>')
    assert [matches(r, location) for r in (open_task, row(kept="LOCATION:attic\r\n"))] == [False, True]


def test_xml_with_a_dtd_is_refused_before_it_is_parsed() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><d:propfind xmlns:d="DAV:">&a;</d:propfind>'
    with pytest.raises(ValidationError, match="DTD"):
        parse(bomb)
    with pytest.raises(ValidationError, match="well-formed"):
        parse(b"<d:propfind")


def _todo_of(body: bytes) -> Any:
    calendar: Any = icalendar.Calendar.from_ical(body)
    return next(c for c in calendar.subcomponents if c.name == "VTODO")


def test_an_all_day_task_renders_its_due_as_a_date_and_reads_back_the_same_instant() -> None:
    # Due on 10 March, all day in New York (the end of that day there), for a user in Kolkata.
    due = datetime(2027, 3, 11, 4, 59, 59, tzinfo=UTC)
    stored = row(due_date=due, time_zone="America/New_York", remind_before_minutes=None, remind_at=None)
    body = render(stored | {"change_xid": 2001})
    assert b"DUE;VALUE=DATE:20270310\r\n" in body
    assert b"BEGIN:VTIMEZONE" not in body  # a DATE names no zone
    assert _todo_of(body)["due"].dt == date(2027, 3, 10)
    task = read_put(body, "Asia/Kolkata")
    assert task.due_date == "2027-03-10" and task.due == due


def test_a_clients_dtstart_takes_the_value_type_of_due() -> None:
    kept = "DTSTART;TZID=Europe/Berlin:20270305T090000\r\nLOCATION:home\r\n"
    dated = render(row(due_date=datetime(2027, 3, 10, 22, 59, 59, tzinfo=UTC), kept=kept, change_xid=2002))
    todo = _todo_of(dated)
    assert type(todo["dtstart"].dt) is date and type(todo["due"].dt) is date
    assert todo["dtstart"].dt == date(2027, 3, 5) and b"LOCATION:home\r\n" in dated

    timed = render(row(kept="DTSTART;VALUE=DATE:20270301\r\n", change_xid=2003))
    todo = _todo_of(timed)
    assert isinstance(todo["dtstart"].dt, datetime) and isinstance(todo["due"].dt, datetime)
    assert todo["dtstart"].dt == datetime(2027, 3, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    # A start after a due date moved earlier (through the tools) is brought back to it.
    early = _todo_of(render(row(kept="DTSTART;VALUE=DATE:20270401\r\n", change_xid=2004)))
    assert early["dtstart"].dt == early["due"].dt


def test_the_export_writes_an_all_day_due_as_a_date_and_its_import_restores_it() -> None:
    due = datetime(2027, 3, 11, 4, 59, 59, tzinfo=UTC)  # 10 March, all day in New York
    record = record_of_row(row(due_date=due, time_zone="America/New_York", remind_before_minutes=None, remind_at=None))
    written = write_ics(Parsed(records=[record]), now=NOW)
    assert "DUE;VALUE=DATE:20270310\r\n" in written and "X-MCP-TODO-ZONE:America/New_York\r\n" in written
    read = read_ics(written.encode())
    assert len(read.records) == 1
    prepared = prepare(read.records[0], user_zone="Asia/Kolkata", default_lead=60, now=NOW)
    assert (prepared.due, prepared.time_zone) == (due, "America/New_York")
    # A timed due stays a DATE-TIME with its TZID.
    timed = write_ics(Parsed(records=[record_of_row(row())]), now=NOW)
    assert "DUE;TZID=Europe/Berlin:20270302T090000\r\n" in timed
