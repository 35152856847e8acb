"""A task in neutral terms, between a file and the database: labels by name, the parent by uid, times aware."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from mcp_todo.domain.errors import ValidationError

# A file bigger than this is refused before it is read (a user's tasks are a few MB at most).
MAX_IMPORT_BYTES: Final = 16 * 1024 * 1024
MAX_RECORDS: Final = 20_000
# One record (a VTODO, a JSON task, a CSV row) bigger than this fails alone, unread. A task keeps at most a 10,000
# character description (10-30 KB of UTF-8 for the scripts most text is written in); the readers' cost grows with a
# record's size (icalendar reads a content line a character at a time), and at this size every record, whatever
# it repeats, is read within the 50 ms each may take (tests/unit/test_porting_fuzz.py).
MAX_RECORD_BYTES: Final = 32 * 1024
# How deep a JSON task may nest (a task object holds lists of objects: three levels are used).
MAX_JSON_DEPTH: Final = 16


class FormatError(ValueError):
    """A file that is not what its format needs (not a calendar, the wrong JSON, empty): nothing is imported."""


@dataclass(frozen=True)
class Series:
    """The series a recurring task belongs to: `key` is shared by its occurrences in one file, `start` is its
    first due date (RFC 5545 DTSTART, occurrence 1), `start_wall` the wall time asked for in the task's zone."""

    key: str
    start: datetime
    start_wall: datetime | None = None


@dataclass
class Record:
    """One task as a file describes it. `lead` None with `remind_at` None and `reminder_given` means no reminder;
    `reminder_given` False means the file says nothing, and the user's default lead applies."""

    uid: str
    title: str
    where: str  # how the report names this record: "line 7", "VTODO 3 (UID …)"
    description: str | None = None
    status: str = "pending"
    priority: str = "medium"
    due: datetime | None = None
    due_wall: datetime | None = None  # the naive wall time asked for, in `time_zone`
    time_zone: str | None = None  # None: the user's zone
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    rule: str | None = None
    recurrence_from: str = "schedule"
    series: Series | None = None
    lead: int | None = None
    remind_at: datetime | None = None
    reminder_given: bool = False
    reminder_sent: bool | None = None  # None: sent when remind_at has passed
    completed_at: datetime | None = None
    created_at: datetime | None = None
    parent_uid: str | None = None
    # The uids of the tasks this one waits on (its blockers).
    depends_on: list[str] = field(default_factory=list)
    # What the file said that this record could not keep (reported as "partly kept").
    lost: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """What became of one record of the file, for the report: where it is, and why (not imported, or what it lost)."""

    where: str
    detail: str


@dataclass
class Parsed:
    """What a reader made of a file: the records to import, the ones it refused, and the labels' colours."""

    records: list[Record] = field(default_factory=list)
    rejected: list[Outcome] = field(default_factory=list)
    skipped: list[Outcome] = field(default_factory=list)  # deliberately not imported (a deleted Taskwarrior task)
    category_colors: dict[str, str | None] = field(default_factory=dict)
    tag_colors: dict[str, str | None] = field(default_factory=dict)


def describe(where: str, uid: str | None) -> str:
    return f"{where} (UID {uid})" if uid else where


# As `mcp-todo token create` takes them: a user is named by a token's user or an OAuth subject, 1-200 characters.
MAX_USER_NAME: Final = 200


def check_user_name(name: str) -> str:
    """The user name, as it is stored; ValidationError when it cannot be one (empty, too long, control characters)."""
    if not name or len(name) > MAX_USER_NAME:
        raise ValidationError(f"a user name is 1-{MAX_USER_NAME} characters")
    if name != name.strip() or any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in name):
        raise ValidationError("a user name has no leading or trailing blanks and no control characters")
    return name
