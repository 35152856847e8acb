"""The CalDAV server's pieces that need no database: a stored row rendered as a VTODO and read back (the export's
mapping), the lines a client wrote that mcp-todo does not model (kept verbatim), and calendar-query filters."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import pytest

from mcp_todo.caldav.calendar_filters import matches
from mcp_todo.caldav.davxml import parse
from mcp_todo.caldav.vtodo import kept_lines, read_put, render
from mcp_todo.domain.errors import ValidationError

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
    assert kept == (
        "LOCATION;LANGUAGE=en:the attic\r\nX-APPLE-SORT-ORDER:42\r\nRELATED-TO;RELTYPE=DEPENDS-ON:other\r\n"
        "BEGIN:VALARM\r\nACTION:AUDIO\r\nTRIGGER;RELATED=END:-PT5M\r\nEND:VALARM\r\n"
    )
    task = read_put(body.encode(), "UTC")
    assert task.parent_uid == "parent-uid" and task.lead == 15 and task.description == "a long one folded"
    rendered = render(row(kept=kept, uid="a", change_xid=1235))  # storing kept lines is a write: a new stamp
    assert kept.encode() in rendered and rendered.index(kept.encode()) < rendered.index(b"END:VTODO")


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
