"""The pure parts of import: Taskwarrior's recur periods, Todoist's date phrases, iCalendar priorities, the order
of parents before subtasks (with cycles refused), and format detection."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.times import END_OF_DAY
from mcp_todo.porting.files import detect
from mcp_todo.porting.ics import PRIORITY_OUT, priority_in
from mcp_todo.porting.prepare import prepare
from mcp_todo.porting.records import FormatError, Outcome, Record
from mcp_todo.porting.store import parents_first
from mcp_todo.porting.taskwarrior import recur_rule
from mcp_todo.porting.todoist import interpret_date
from mcp_todo.service.hierarchy import validated_rule

TODAY = date(2026, 12, 2)  # a Wednesday
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("recur", "rule"),
    [
        ("daily", "FREQ=DAILY"),
        ("weekly", "FREQ=WEEKLY"),
        ("weekdays", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
        ("biweekly", "FREQ=WEEKLY;INTERVAL=2"),
        ("quarterly", "FREQ=MONTHLY;INTERVAL=3"),
        ("3d", "FREQ=DAILY;INTERVAL=3"),
        ("2wks", "FREQ=WEEKLY;INTERVAL=2"),
        ("1q", "FREQ=MONTHLY;INTERVAL=3"),
        ("yearly", "FREQ=YEARLY"),
        ("5h", None),
        ("0d", None),
        ("P1DT2H", None),
    ],
)
def test_taskwarrior_periods(recur: str, rule: str | None) -> None:
    assert recur_rule(recur) == rule


@pytest.mark.parametrize(
    ("phrase", "due", "rule", "mode"),
    [
        ("2027-03-10", datetime.combine(date(2027, 3, 10), END_OF_DAY), None, "schedule"),
        ("Mar 1 2027 9am", datetime(2027, 3, 1, 9, 0), None, "schedule"),
        ("10 Jan", datetime.combine(date(2027, 1, 10), END_OF_DAY), None, "schedule"),  # the next one
        ("tomorrow at 18:30", datetime(2026, 12, 3, 18, 30), None, "schedule"),
        ("every day", datetime.combine(TODAY, END_OF_DAY), "FREQ=DAILY", "schedule"),
        ("every other week", datetime.combine(TODAY, END_OF_DAY), "FREQ=WEEKLY;INTERVAL=2", "schedule"),
        ("every! 3 days", datetime.combine(TODAY, END_OF_DAY), "FREQ=DAILY;INTERVAL=3", "completion"),
        ("every monday, friday at 8pm", datetime(2026, 12, 4, 20, 0), "FREQ=WEEKLY;BYDAY=MO,FR", "schedule"),
        ("every 15th", datetime.combine(date(2026, 12, 15), END_OF_DAY), "FREQ=MONTHLY;BYMONTHDAY=15", "schedule"),
        ("every last day", datetime.combine(date(2026, 12, 31), END_OF_DAY), "FREQ=MONTHLY;BYMONTHDAY=-1", "schedule"),
        ("every weekday at 9:30am", datetime(2026, 12, 2, 9, 30), "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "schedule"),
        ("every day starting Jan 4 2027", datetime.combine(date(2027, 1, 4), END_OF_DAY), "FREQ=DAILY", "schedule"),
        ("monthly", datetime.combine(TODAY, END_OF_DAY), "FREQ=MONTHLY", "schedule"),
        ("weekly at 7am", datetime(2026, 12, 2, 7, 0), "FREQ=WEEKLY", "schedule"),
        ("2027-03-10 09:00", datetime(2027, 3, 10, 9, 0), None, "schedule"),
        ("every full moon", None, None, "schedule"),
        ("tod", datetime.combine(TODAY, END_OF_DAY), None, "schedule"),  # Todoist's short words
        ("tom 9am", datetime(2026, 12, 3, 9, 0), None, "schedule"),
        ("every! weekly", datetime.combine(TODAY, END_OF_DAY), "FREQ=WEEKLY", "completion"),
        ("after 2 weeks", datetime.combine(TODAY, END_OF_DAY), "FREQ=WEEKLY;INTERVAL=2", "completion"),
        ("every sat, sun", datetime.combine(date(2026, 12, 5), END_OF_DAY), "FREQ=WEEKLY;BYDAY=SA,SU", "schedule"),
        ("every last friday", datetime.combine(date(2026, 12, 25), END_OF_DAY), "FREQ=MONTHLY;BYDAY=-1FR", "schedule"),
        ("every 32nd", None, None, "schedule"),  # a rule outside the subset: kept as text
        ("every 0 days", None, None, "schedule"),
        ("every! full moon", None, None, "completion"),
        ("03/04", None, None, "schedule"),  # day/month or month/day: refused, as the tools refuse it
        ("every day starting someday", datetime.combine(TODAY, END_OF_DAY), "FREQ=DAILY", "schedule"),
        ("someday", None, None, "schedule"),
    ],
)
def test_todoist_dates(phrase: str, due: datetime | None, rule: str | None, mode: str) -> None:
    assert interpret_date(phrase, NOW, ZoneInfo("UTC")) == (due, rule, mode)


def test_ics_priorities_round_trip_and_read_the_rfc_scale() -> None:
    assert {name: priority_in(value) for name, value in PRIORITY_OUT.items()} == {name: name for name in PRIORITY_OUT}
    assert [priority_in(n) for n in range(10)] == ["medium", "urgent"] + ["high"] * 3 + ["medium"] + ["low"] * 4


def test_parents_come_first_and_cycles_are_refused() -> None:
    def rec(uid: str, parent: str | None = None) -> Record:
        return Record(uid=uid, title=uid, where=f"task {uid}", parent_uid=parent)

    rejected: list[Outcome] = []
    ordered = parents_first(
        [rec("child", "parent"), rec("parent"), rec("a", "b"), rec("b", "a"), rec("under-a", "a"), rec("parent")],
        rejected,
    )
    assert [r.uid for r in ordered] == ["parent", "child", "under-a"]
    assert ordered[2].parent_uid is None and "top-level" in ordered[2].lost[0]
    assert sorted((r.where, r.detail) for r in rejected) == [
        ("task a (UID a)", "its parent chain is a cycle"),
        ("task b (UID b)", "its parent chain is a cycle"),
        ("task parent (UID parent)", "another record of this file has the same UID"),
    ]


@pytest.mark.parametrize(
    ("data", "name", "fmt"),
    [
        (b"\xef\xbb\xbfBEGIN:VCALENDAR\r\n", "", "ics"),
        (b'  {"format": "mcp-todo"}', "", "json"),
        (b"[]", "x.txt", "json"),
        (b"TYPE,CONTENT,DESCRIPTION\n", "", "todoist"),
        (b"something", "tasks.csv", "todoist"),
        (b"something", "tasks.ics", "ics"),
    ],
)
def test_detect(data: bytes, name: str, fmt: str) -> None:
    assert detect(data, name) == fmt


def test_detect_refuses_what_it_cannot_tell() -> None:
    with pytest.raises(FormatError, match="give --format"):
        detect(b"hello", "notes.txt")


def test_the_command_line_offers_every_format() -> None:
    import click

    from mcp_todo.cli import import_command
    from mcp_todo.porting.files import IMPORT_FORMATS

    option = next(param for param in import_command.params if param.name == "fmt")
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == IMPORT_FORMATS


@pytest.mark.parametrize(
    ("rule", "mode", "kept"),
    [
        ("FREQ=DAILY;INTERVAL=3", "completion", "FREQ=DAILY;INTERVAL=3"),
        ("FREQ=MONTHLY;INTERVAL=2;COUNT=3", "completion", "FREQ=MONTHLY;INTERVAL=2;COUNT=3"),
        ("FREQ=WEEKLY;BYDAY=MO", "completion", None),
        ("FREQ=MONTHLY;BYMONTHDAY=15", "completion", None),
        ("FREQ=WEEKLY;BYDAY=MO", "schedule", "FREQ=WEEKLY;BYDAY=MO"),
    ],
)
def test_a_rule_is_checked_for_its_mode_as_add_task_checks_it(rule: str, mode: str, kept: str | None) -> None:
    """`prepare` asks the tools' `validated_rule`: after completion only an interval (with COUNT or UNTIL) repeats;
    what it refuses (INVALID_RECURRENCE_RULE) is dropped with its reason, and the mode goes with the rule."""
    now = datetime(2026, 12, 2, 12, 0, tzinfo=ZoneInfo("UTC"))
    record = Record(
        uid="r", title="Chore", where="line 2", due=datetime(2027, 1, 4, 9, 0), rule=rule, recurrence_from=mode
    )
    prepared = prepare(record, user_zone="Europe/Berlin", default_lead=60, now=now)
    assert prepared.rule == kept
    assert prepared.recurrence_from == (mode if kept else "schedule")
    if kept is None:
        assert len(prepared.lost) == 1, prepared.lost
        assert prepared.lost[0].startswith(f"repeat rule {rule!r} (repeating after completion) dropped: ")
        with pytest.raises(InvalidRecurrenceRuleError):
            validated_rule(rule, now, ZoneInfo("Europe/Berlin"), mode)
    else:
        assert prepared.lost == [] and prepared.series_start == prepared.due
