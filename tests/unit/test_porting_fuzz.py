"""The import's record readers (iCalendar, mcp-todo JSON, Taskwarrior JSON, Todoist CSV) fed hostile records at the
largest size a record may have (32 KB), built from adversarial repetitions and nesting, plus seeded random damage
to good records: every record answers (lands, fails with a reason, or is skipped), no exception escapes, and each
record is read and prepared within 50 ms.

Run as a command, it writes a file of hostile records for a measured import (the figures in docs/import-export.md):
`python -m tests.unit.test_porting_fuzz FILE.ics` then `/usr/bin/time -v mcp-todo import FILE.ics`.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import pytest

from mcp_todo.domain.errors import TodoError
from mcp_todo.porting.files import parse
from mcp_todo.porting.prepare import prepare
from mcp_todo.porting.records import MAX_RECORD_BYTES, FormatError

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ZONE = "Europe/Berlin"
SIZE: Final = MAX_RECORD_BYTES - 200  # room for the record's own lines around the repeated part
# The bound each record is held to, in CPU time. The slowest shape here (a 32 KB run of `:\;` in a DESCRIPTION,
# which icalendar reads a character at a time, or 540 Taskwarrior annotations) takes ~12 ms on a 2-core runner;
# 50 ms leaves room for a machine four times slower, while a quadratic reader (seconds) cannot pass.
PER_RECORD_S: Final = 0.050


def fill(unit: str, size: int = SIZE) -> str:
    return unit * max(1, size // len(unit))


# --- hostile records, one per adversarial shape --------------------------------------------------------------------


def vtodo(uid: str, body: str) -> str:
    return f"BEGIN:VTODO\r\nUID:{uid}\r\nSUMMARY:Hostile {uid}\r\n{body}END:VTODO\r\n"


ICS_BODIES: Final[dict[str, str]] = {
    "long description": f"DESCRIPTION:{fill('a')}\r\n",
    "escapes": f"DESCRIPTION:{fill(chr(92) + ',')}\r\n",
    "folded": f"DESCRIPTION:{fill('ab' + chr(13) + chr(10) + ' ')}\r\n",
    "categories at the separator limit": "CATEGORIES:" + ",".join(["a"] * 999) + "\r\n",
    "categories past the separator limit": f"CATEGORIES:{fill(',')}\r\n",
    "category lines at the line limit": fill("CATEGORIES:a\r\n", 240 * 14),
    "category lines past the line limit": fill("CATEGORIES:a\r\n"),
    "parameters": "SUMMARY;" + ";".join(["X=a"] * 990) + ":x\r\n",
    "quoted parameters": "SUMMARY;X=" + ",".join(['"a"'] * 990) + ":x\r\n",
    "rrule list": "DUE:20270101T090000Z\r\nRRULE:FREQ=MONTHLY;BYMONTHDAY=" + ",".join(["1"] * 990) + "\r\n",
    "rrule long value": f"DUE:20270101T090000Z\r\nRRULE:FREQ=DAILY;X-A={fill('A')}\r\n",
    "alarms": fill("BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT1M\r\nEND:VALARM\r\n", 60 * 52),
    "nested components": fill("BEGIN:X\r\n", 120 * 9) + fill("END:X\r\n", 120 * 7),
    "colons and semicolons": f"DESCRIPTION:{fill(':' + chr(92) + ';')}\r\n",
    "tzid long": f"DUE;TZID={fill('A', 5000)}:20270310T090000\r\n",
    "tzid directory": "DUE;TZID=America:20270310T090000\r\n",
    "tzid path": "DUE;TZID=../../../../etc/passwd:20270310T090000\r\n",
    "tzid posix": "DUE;TZID=posix/Europe/Berlin:20270310T090000\r\n",
    "tzid globally unique": "DUE;TZID=/freeassociation.sourceforge.net/Europe/Berlin:20270310T090000\r\n",
    "due year 1": "DUE;TZID=Pacific/Kiritimati:00010101T000000\r\n",
    "due year 9999": "DUE;TZID=Pacific/Pago_Pago:99991231T235959\r\n",
    "huge priority": f"PRIORITY:{fill('9', 5000)}\r\n",
    "huge percent": f"PERCENT-COMPLETE:{fill('9', 5000)}\r\n",
    "trigger overflow": "DUE:99981231T000000Z\r\nBEGIN:VALARM\r\nTRIGGER;RELATED=END:P99999999D\r\nEND:VALARM\r\n",
    "duration overflow": "DTSTART:99981231T000000Z\r\nDURATION:P99999999W\r\n",
    "many related-to": fill("RELATED-TO:p\r\n", 240 * 14),
    "long uid": f"X-UID:{fill('u', 1000)}\r\n",
    "control characters": "DESCRIPTION:" + "".join(chr(c) for c in range(1, 32) if c not in (10, 13)) * 500 + "\r\n",
    "oversized": f"DESCRIPTION:{fill('a', MAX_RECORD_BYTES + 10)}\r\n",
}


def ics_file(bodies: dict[str, str]) -> bytes:
    todos = "".join(vtodo(f"h{n}", body) for n, body in enumerate(bodies.values()))
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//fuzz//EN\r\n{todos}END:VCALENDAR\r\n".encode()


def deep(depth: int, width: int = 1) -> str:
    return "[" * depth + ",".join(["1"] * width) + "]" * depth


TASKWARRIOR_ITEMS: Final[dict[str, str]] = {
    "deep at the limit": json.dumps({"uuid": "x", "description": "d"})[:-1] + f', "udas": {deep(15, 2000)}}}',
    "deep past the limit": json.dumps({"uuid": "x", "description": "d"})[:-1] + f', "udas": {deep(40)}}}',
    "deep 100,000": '{"uuid": "x", "description": "d", "udas": ' + deep(100_000) + "}",
    "many tags": json.dumps({"uuid": "x", "description": "d", "tags": ["t"] * (SIZE // 5)}),
    "distinct tags": json.dumps({"uuid": "x", "description": "d", "tags": [f"t{n}" for n in range(SIZE // 9)]}),
    "many annotations": json.dumps(
        {
            "uuid": "x",
            "description": "d",
            "annotations": [{"entry": "20270101T000000Z", "description": "n"}] * (SIZE // 60),
        }
    ),
    "escaped unicode": json.dumps({"uuid": "x", "description": "\u2028\x00\ud800" * (SIZE // 20)}),
    "huge integer": '{"uuid": "x", "description": "d", "due": ' + fill("9", 5000) + "}",
    "huge float": '{"uuid": "x", "description": "d", "due": 1e999999}',
    "tags as a string": json.dumps({"uuid": "x", "description": "d", "tags": "urgent"}),
    "long recur": json.dumps({"uuid": "x", "description": "d", "status": "recurring", "recur": fill("9d")}),
    "bad dates": json.dumps({"uuid": "x", "description": "d", "due": fill("2027-", 2000), "entry": "9999"}),
    "oversized": json.dumps({"uuid": "x", "description": fill("a", MAX_RECORD_BYTES + 10)}),
    "not an object": "[[[1]]]",
    "a string": '"just text"',
}

NATIVE_ITEMS: Final[dict[str, str]] = {
    "deep title": '{"uid": "x", "title": ' + deep(100_000) + "}",
    "huge lead": '{"uid": "x", "title": "t", "remind_before_minutes": ' + fill("9", 5000) + "}",
    "many tags": json.dumps({"uid": "x", "title": "t", "tags": [f"t{n}" for n in range(SIZE // 9)]}),
    "long rule": json.dumps(
        {"uid": "x", "title": "t", "due_date": "2027-01-01T09:00:00+00:00", "recurrence_rule": fill("FREQ=DAILY;")}
    ),
    "long zone": json.dumps({"uid": "x", "title": "t", "due_date": "2027-01-01T09:00:00", "time_zone": fill("A/")}),
    "out of range": json.dumps(
        {"uid": "x", "title": "t", "due_date": "9999-12-31T23:59:59-12:00", "created_at": "0001-01-01T00:00:00+14:00"}
    ),
    "series junk": json.dumps({"uid": "x", "title": "t", "series": {"key": "k", "start": fill("x")}}),
    "bad status": json.dumps({"uid": "x", "title": "t", "status": "done"}),
    "oversized": json.dumps({"uid": "x", "title": fill("a", MAX_RECORD_BYTES + 10)}),
}

TODOIST_HEAD: Final = "TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE\r\n"


def csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


TODOIST_ROWS: Final[dict[str, str]] = {
    "labels": f"task,{csv_cell(fill('@a '))},,1,1,,,,,",
    "every weekday list": f"task,t,,1,1,,,{csv_cell('every ' + fill('tues, thurs, '))},,",
    "every and": f"task,t,,1,1,,,{csv_cell('every ' + fill('monday and '))},,",
    "starting": f"task,t,,1,1,,,{csv_cell(fill('every day starting '))},,",
    "times": f"task,t,,1,1,,,{csv_cell(fill('1 at 1:00 '))},,",
    "digits": f"task,t,,1,1,,,{csv_cell(fill('1'))},,",
    "blanks": f"task,t,,1,1,,,{csv_cell(fill(' a'))},,",
    "long description": f"task,t,{csv_cell(fill('x'))},1,1,,,,,",
    "deep indent": "task,t,,1,999999,,,,,",
    "long zone": f"task,t,,1,1,,,tomorrow,,{fill('A', 5000)}",
    "cell past the csv limit": "task," + "x" * 140_000 + ",,1,1,,,,,",
    "quotes": f"task,{csv_cell(fill(chr(34)))},,1,1,,,,,",
    "many cells": "task,t" + fill(",x", SIZE),
    "unknown type": f"{fill('z', 1000)},t,,1,1,,,,,",
}


def json_array(items: list[str]) -> bytes:
    return ("[" + ",\n".join(items) + "]").encode()


def native_file(items: list[str]) -> bytes:
    return ('{"format": "mcp-todo", "version": 1, "tasks": [' + ",\n".join(items) + "]}").encode()


def todoist_file(rows: list[str]) -> bytes:
    return (TODOIST_HEAD + "\r\n".join(rows) + "\r\n").encode()


def with_uid(item: str, n: int) -> str:
    return item.replace('"uuid": "x"', f'"uuid": "h{n}"').replace('"uid": "x"', f'"uid": "h{n}"')


def random_damage(good: str, rng: random.Random, count: int) -> list[str]:
    """`count` copies of a good record, each with a few characters swapped, repeated or removed."""
    damaged = []
    alphabet = ',;:"[]{}\\\r\n =@' + "".join(chr(c) for c in range(0, 0x80, 7))
    for _ in range(count):
        text = list(good)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(text))
            roll = rng.random()
            if roll < 0.4:
                text[at] = rng.choice(alphabet)
            elif roll < 0.7:
                text[at] = text[at] * rng.randint(2, 400)
            else:
                del text[at]
        damaged.append("".join(text))
    return damaged


GOOD_VTODO = vtodo("good", "DUE;TZID=Europe/Berlin:20270310T090000\r\nRRULE:FREQ=WEEKLY;BYDAY=MO\r\nCATEGORIES:a,b\r\n")
GOOD_TASKWARRIOR = json.dumps(
    {"uuid": "x", "description": "d", "tags": ["a"], "due": "20270310T090000Z", "priority": "H", "project": "p"}
)
GOOD_NATIVE = json.dumps({"uid": "x", "title": "t", "due_date": "2027-03-10T09:00:00+01:00", "tags": ["a"]})
GOOD_TODOIST = "task,Buy milk @errand,note,4,1,,,every monday at 9am,en,Europe/Berlin"


def files() -> dict[str, tuple[bytes, int]]:
    """(file, how many records it holds, or -1 when damage may have merged or split them) for each reader."""
    rng = random.Random(20261207)
    ics_random = random_damage(GOOD_VTODO, rng, 150)
    tw_items = [with_uid(item, n) for n, item in enumerate(TASKWARRIOR_ITEMS.values())]
    tw_random = [with_uid(item, 1000 + n) for n, item in enumerate(random_damage(GOOD_TASKWARRIOR, rng, 150))]
    native_items = [with_uid(item, n) for n, item in enumerate(NATIVE_ITEMS.values())]
    native_random = [with_uid(item, 1000 + n) for n, item in enumerate(random_damage(GOOD_NATIVE, rng, 150))]
    todoist_rows = list(TODOIST_ROWS.values())
    todoist_random = random_damage(GOOD_TODOIST, rng, 150)
    return {
        "ics adversarial": (ics_file(ICS_BODIES), len(ICS_BODIES)),
        "ics random": (
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + "".join(ics_random).encode() + b"END:VCALENDAR\r\n",
            -1,  # damage may merge or split VTODOs
        ),
        "taskwarrior adversarial": (json_array([*tw_items, GOOD_TASKWARRIOR.replace('"x"', '"good"')]), -1),
        "taskwarrior random": (json_array([GOOD_TASKWARRIOR.replace('"x"', '"good"'), *tw_random]), -1),
        "native adversarial": (native_file(native_items), len(native_items)),
        "native random": (native_file(native_random), -1),
        "todoist adversarial": (todoist_file(todoist_rows), len(todoist_rows)),
        "todoist random": (todoist_file([GOOD_TODOIST, *todoist_random]), -1),
    }


def read_all(data: bytes, fmt: str = "auto") -> tuple[int, float]:
    """(records answered, CPU seconds taken to read and prepare them all); FormatError for the file. CPU time of
    this thread, not wall time: the bound is about the readers' work, and on a runner shared with other jobs the
    wall clock also counts the time the thread waited for a core."""
    started = time.thread_time()
    _, parsed = parse(data, fmt, now=NOW, user_zone=ZONE)
    for record in parsed.records:
        try:
            prepare(record, user_zone=ZONE, default_lead=60, now=NOW)
        except TodoError as exc:
            assert exc.message  # a reason, not an empty failure
    for outcome in parsed.rejected + parsed.skipped:
        assert outcome.where and outcome.detail, outcome
    return len(parsed.records) + len(parsed.rejected) + len(parsed.skipped), time.thread_time() - started


@pytest.mark.parametrize("name", list(files()))
def test_every_hostile_record_of_a_file_answers(name: str) -> None:
    data, expected = files()[name]
    try:
        total, seconds = read_all(data, "taskwarrior" if name.startswith("taskwarrior") else "auto")
    except FormatError as exc:
        # Random damage can break the file's own frame (its header, its outer brackets): one line, nothing read.
        assert "random" in name and str(exc), exc
        return
    if expected >= 0:
        assert total == expected, (total, expected)
    assert seconds / total <= PER_RECORD_S, f"{name}: {seconds * 1000 / total:.1f} ms a record"


SHAPES: Final[list[tuple[str, str, Callable[[str], bytes], str]]] = [
    *((f"ics {key}", "ics", lambda body: ics_file({"bad": body}), body) for key, body in ICS_BODIES.items()),
    *(
        (f"taskwarrior {key}", "taskwarrior", lambda item: json_array([item]), item)
        for key, item in TASKWARRIOR_ITEMS.items()
    ),
    *((f"native {key}", "json", lambda item: native_file([item]), item) for key, item in NATIVE_ITEMS.items()),
    *((f"todoist {key}", "todoist", lambda row: todoist_file([row]), row) for key, row in TODOIST_ROWS.items()),
]


@pytest.mark.parametrize(("name", "fmt", "build", "part"), SHAPES, ids=[shape[0] for shape in SHAPES])
def test_each_hostile_record_is_read_within_its_bound(
    name: str, fmt: str, build: Callable[[str], bytes], part: str
) -> None:
    """One hostile record alone in its file is answered within the bound (the best of three reads: the bound is
    about the reader, not about a moment the machine was busy elsewhere)."""
    timings = []
    for _ in range(3):
        total, seconds = read_all(build(part), fmt)
        assert total == 1, name
        timings.append(seconds)
    assert min(timings) <= PER_RECORD_S, f"{name}: {min(timings) * 1000:.1f} ms"


@pytest.mark.parametrize(("name", "fmt", "build", "part"), SHAPES, ids=[shape[0] for shape in SHAPES])
def test_a_hostile_record_never_takes_a_good_one_down(
    name: str, fmt: str, build: Callable[[str], bytes], part: str
) -> None:
    good = {"ics": GOOD_VTODO, "taskwarrior": GOOD_TASKWARRIOR, "json": GOOD_NATIVE, "todoist": GOOD_TODOIST}[fmt]
    good = good.replace('"x"', '"good"')
    if fmt == "ics":
        data = ics_file({"bad": part}).replace(b"BEGIN:VTODO", good.encode() + b"BEGIN:VTODO", 1)
    else:
        data = {"taskwarrior": json_array, "json": native_file, "todoist": todoist_file}[fmt]([good, part])
    _, parsed = parse(data, fmt, now=NOW, user_zone=ZONE)
    landed = [record.uid for record in parsed.records]
    assert any(uid == "good" or uid.startswith("todoist-") for uid in landed), (name, parsed.rejected)
    assert len(parsed.records) + len(parsed.rejected) + len(parsed.skipped) == 2, name


def main(path: str) -> None:
    """Write a file of hostile VTODOs (every shape above, many times over, and one good one) for a measured
    import."""
    bodies = {f"{key} {n}": body for n in range(20) for key, body in ICS_BODIES.items()}
    with open(path, "wb") as out:
        out.write(ics_file(bodies))
    print(f"{path}: {len(bodies)} hostile VTODOs", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])


def test_a_globally_unique_tzid_is_read_as_its_zone_and_said_on_every_task() -> None:
    """icalendar guesses `/vendor/Europe/Berlin` means Europe/Berlin and warns once per TZID (then caches): every
    task that names it says so, and no warning escapes (the tests turn warnings into errors)."""
    body = "DUE;TZID=/freeassociation.sourceforge.net/Europe/Berlin:20270310T090000\r\n"
    _, parsed = parse(ics_file({"a": body, "b": body}), "ics", now=NOW, user_zone=ZONE)
    assert [record.time_zone for record in parsed.records] == ["Europe/Berlin", "Europe/Berlin"]
    for record in parsed.records:
        assert record.lost == ["TZID '/freeassociation.sourceforge.net/Europe/Berlin' read as Europe/Berlin"]
