"""Garbage in every parameter of every tool: each call gets its error code (or, when the input schema rejects it, the
SDK's text naming the field) and changes nothing — no row, no outbox event.

Ids in the cases are symbolic: `$task` (alice's task with a due date), `$undated` (hers without one), `$category`,
`$tag`, and `$bob_task`, `$bob_category`, `$bob_tag` (another user's, which must read exactly like missing ones).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import Tools, execute, outbox, row_counts, server_for, tools_of
from tests.support.database import TABLES

SCHEMA = "SCHEMA"  # rejected by the input schema, before the tool runs: VALIDATION_ERROR naming it and what it allows
BATCHABLE = frozenset({"complete_task", "delete_task", "add_tag_to_task", "remove_tag_from_task"})
BIG = 2**63  # one past PostgreSQL's bigint
HUGE = 10**30

Case = tuple[str, dict[str, Any], str, str]  # tool, arguments, expected code, the field the error names


def cases() -> list[Case]:
    t = "$task"
    out: list[Case] = []
    value: object  # each loop below tries values of several types

    def add(tool: str, arguments: dict[str, Any], code: str, field: str) -> None:
        out.append((tool, arguments, code, field))

    def ids(tool: str, field: str, base: dict[str, Any], kind: str) -> None:
        """The id garbage every id parameter gets (null too, where the id is required)."""
        # A tool that also takes a batch (task_ids) reads a missing or null task_id as "neither given".
        batchable = field == "task_id" and tool in BATCHABLE
        required = field == "task_id" or tool.startswith("delete_") or tool.endswith("_tag_to_task")
        required = (required or tool == "remove_tag_from_task") and not batchable
        for value in (0, -1, 1.5, 1.0, "1", "abc", True, [1], {"id": 1}, *((None,) if required else ())):
            add(tool, {**base, field: value}, SCHEMA, field)
        if batchable:
            add(tool, {**base, field: None}, "VALIDATION_ERROR", "exactly one of task_id")
        for value in (999_999, f"$bob_{kind}"):
            add(tool, {**base, field: value}, "NOT_FOUND", kind)
        add(tool, {**base, field: BIG}, "VALIDATION_ERROR", field)
        add(tool, {**base, field: HUGE}, "VALIDATION_ERROR", field)

    def times(tool: str, field: str, base: dict[str, Any]) -> None:
        for value in ("", "x" * 65, 20270101, ["2027-01-01"]):
            add(tool, {**base, field: value}, SCHEMA, field)
        for value in (
            "tomorrow at 9",  # morning or evening: refused, not guessed
            "03/04",  # day/month or month/day
            "2027-13-01",
            "2027-02-30",
            "2027-03-10T25:00",
            "0001-01-01",
            "9999-12-31T23:59:59+00:00",
            "2027-03-10T09:00+25:00",
            "'; DROP TABLE tasks; --",
            "\uff12\uff10\uff12\uff17-\uff10\uff11-\uff10\uff11",  # full-width digits
        ):
            add(tool, {**base, field: value}, "VALIDATION_ERROR", field)

    # add_task
    for value in ("", "x" * 201, 123, ["a"], "\ud800"):
        add("add_task", {"title": value}, SCHEMA, "title")
    # title may be left out for a batch (tasks); without either, the service says what to give.
    add("add_task", {"title": None}, "VALIDATION_ERROR", "give title")
    add("add_task", {}, "VALIDATION_ERROR", "give title")
    for value in ("   ", "\x00", "a\x00b"):
        add("add_task", {"title": value}, "VALIDATION_ERROR", "title")
    for value in ("x" * 10_001, 5, ["d"]):
        add("add_task", {"title": "ok", "description": value}, SCHEMA, "description")
    add("add_task", {"title": "ok", "description": "nul\x00"}, "VALIDATION_ERROR", "description")
    for value in ("critical", "", 3, "URGENT"):
        add("add_task", {"title": "ok", "priority": value}, SCHEMA, "priority")
    times("add_task", "due_date", {"title": "ok"})
    ids("add_task", "category_id", {"title": "ok"}, "category")
    for value in ([0], "1,2", [1] * 11, [None], 5):
        add("add_task", {"title": "ok", "tag_ids": value}, SCHEMA, "tag_ids")
    for value in ([999_999], ["$bob_tag"], ["$tag", "$bob_tag"]):
        add("add_task", {"title": "ok", "tag_ids": value}, "NOT_FOUND", "tag")
    add("add_task", {"title": "ok", "tag_ids": [BIG]}, "VALIDATION_ERROR", "tag_id")
    due = {"title": "ok", "due_date": "2027-03-10T09:00"}
    for rule in (
        "FREQ=SECONDLY",
        "FREQ=MINUTELY",
        "FREQ=HOURLY",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=MONTHLY;BYMONTHDAY=30;BYMONTH=2",
        "FREQ=DAILY;COUNT=999999999",
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=DAILY;INTERVAL=1001",
        "FREQ=DAILY;UNTIL=20200101",
        "FREQ=DAILY;COUNT=3;UNTIL=20300101",
        "FREQ=WEEKLY;BYHOUR=9",
        "FREQ=DAILY;FREQ=WEEKLY",
        "garbage",
        "FREQ=",
        "RRULE:",
        ";;;",
        "FREQ=DAILY;BYDAY=1MO",
        "DTSTART:20270101T000000Z\nRRULE:FREQ=DAILY",
        "FREQ=DAILY'; DROP TABLE tasks; --",
    ):
        add("add_task", {**due, "recurrence_rule": rule}, "INVALID_RECURRENCE_RULE", "")
    for value in ("", "x" * 501, 7):
        add("add_task", {**due, "recurrence_rule": value}, SCHEMA, "recurrence_rule")
    add("add_task", {"title": "ok", "recurrence_rule": "FREQ=DAILY"}, "VALIDATION_ERROR", "due date")
    for value in (-1, 525_601, "soon", "60", 60.0, 1.5, True):
        add("add_task", {**due, "remind_before_minutes": value}, SCHEMA, "remind_before_minutes")
    add("add_task", {"title": "ok", "remind_before_minutes": 5}, "VALIDATION_ERROR", "due_date")

    # list_tasks
    for field, values in {
        "status": ("done", "", 1, "ALL"),
        "priority": ("x", 2),
        "sort_by": ("id; DROP TABLE tasks", "due", 1),
        "sort_order": ("up", "DESC", 0),
        "limit": (0, 101, "ten", -5, True, "10", 10.0),
        "offset": (-1, 10**7, "x", 1.5, "0", 0.0),
        "tag_ids": ([0], "x", [1] * 101),
    }.items():
        for value in values:
            add("list_tasks", {field: value}, SCHEMA, field)
    ids("list_tasks", "category_id", {}, "category")
    add("list_tasks", {"tag_ids": ["$bob_tag"]}, "NOT_FOUND", "tag")
    times("list_tasks", "due_after", {})
    times("list_tasks", "due_before", {})
    add("list_tasks", {"due_after": "2027-02-01", "due_before": "2027-01-01"}, "VALIDATION_ERROR", "due_after")

    # complete_task, delete_task
    for tool in ("complete_task", "delete_task"):
        ids(tool, "task_id", {}, "task")
        add(tool, {}, "VALIDATION_ERROR", "exactly one of task_id")

    # update_task
    ids("update_task", "task_id", {"title": "x"}, "task")
    for field, values in {
        "title": ("", "x" * 201, 5),
        "description": ("x" * 10_001, 5),
        "priority": ("x", 5),
        "status": ("archived", "", 1),
        "recurrence_rule": ("", "x" * 501),
    }.items():
        for value in values:
            add("update_task", {"task_id": t, field: value}, SCHEMA, field)
    for field in ("title", "priority", "status"):
        add("update_task", {"task_id": t, field: None}, "VALIDATION_ERROR", field)
    add("update_task", {"task_id": t, "title": "  "}, "VALIDATION_ERROR", "title")
    add("update_task", {"task_id": t, "title": "\x00"}, "VALIDATION_ERROR", "title")
    times("update_task", "due_date", {"task_id": t})
    ids("update_task", "category_id", {"task_id": t}, "category")
    for rule in ("FREQ=SECONDLY", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "FREQ=DAILY;COUNT=999999999", "nope"):
        add("update_task", {"task_id": t, "recurrence_rule": rule}, "INVALID_RECURRENCE_RULE", "")
    add("update_task", {"task_id": "$undated", "recurrence_rule": "FREQ=DAILY"}, "VALIDATION_ERROR", "due date")

    # search_tasks
    for value in ("x" * 501, None, 5, ["a"]):
        add("search_tasks", {"query": value}, SCHEMA, "query")
    add("search_tasks", {}, SCHEMA, "query")
    add("search_tasks", {"query": "a\x00b"}, "VALIDATION_ERROR", "query")
    for field, values in {
        "status": ("done",),
        "priority": ("x",),
        "limit": (0, 101),
        "offset": (-1,),
        "tag_ids": ([0],),
    }.items():
        for value in values:
            add("search_tasks", {"query": "a", field: value}, SCHEMA, field)
    ids("search_tasks", "category_id", {"query": "a"}, "category")
    add("search_tasks", {"query": "a", "tag_ids": ["$bob_tag"]}, "NOT_FOUND", "tag")

    # categories and tags
    for tool, longest in (("add_category", 50), ("add_tag", 30)):
        for value in ("", "x" * (longest + 1), 5, None):
            add(tool, {"name": value}, SCHEMA, "name")
        add(tool, {}, SCHEMA, "name")
        for value in ("  ", "\x00"):
            add(tool, {"name": value}, "VALIDATION_ERROR", "name")
        for value in ("red", "#12345G", "#1234567", "123456", "#fff", "", 0xFFFFFF):
            add(tool, {"name": "new", "color": value}, SCHEMA, "color")
    add("add_category", {"name": "WORK"}, "CONFLICT", "category")
    add("add_tag", {"name": "Errand"}, "CONFLICT", "tag")
    ids("delete_category", "category_id", {}, "category")
    ids("delete_tag", "tag_id", {}, "tag")
    for tool in ("add_tag_to_task", "remove_tag_from_task"):
        ids(tool, "task_id", {"tag_id": "$tag"}, "task")
        ids(tool, "tag_id", {"task_id": t}, "tag")
        add(tool, {"task_id": t}, SCHEMA, "tag_id")

    # set_reminder
    ids("set_reminder", "task_id", {"remind_at": None}, "task")
    for value in (-1, 525_601, "x", 1.5):
        add("set_reminder", {"task_id": t, "remind_before_minutes": value}, SCHEMA, "remind_before_minutes")
    times("set_reminder", "remind_at", {"task_id": t})
    add("set_reminder", {"task_id": t}, "VALIDATION_ERROR", "exactly one")
    add(
        "set_reminder", {"task_id": t, "remind_before_minutes": 5, "remind_at": None}, "VALIDATION_ERROR", "exactly one"
    )
    add("set_reminder", {"task_id": "$undated", "remind_before_minutes": 5}, "VALIDATION_ERROR", "due date")

    # agenda
    for value in (0, 101, "x", -1):
        add("get_overdue_tasks", {"limit": value}, SCHEMA, "limit")
        add("get_upcoming_tasks", {"limit": value}, SCHEMA, "limit")
    for value in (0, 366, "week", 1.5):
        add("get_upcoming_tasks", {"days": value}, SCHEMA, "days")
    return out


CASES = cases()


def _case_id(case: Case) -> str:
    tool, arguments, code, _field = case
    shown = ",".join(f"{k}={str(v)[:12]!r}" for k, v in arguments.items())
    return f"{tool}({shown})->{code}"


@pytest.fixture(scope="module")
async def world(engine: AsyncEngine, database_dsn: str) -> AsyncIterator[tuple[Tools, dict[str, int]]]:
    """One world for the whole module: every case must leave it exactly as it was (and each checks that)."""
    await execute(engine, f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    db = engine
    async with (
        tools_of(server_for(db, database_dsn, "alice")) as alice,
        tools_of(server_for(db, database_dsn, "bob")) as bob,
    ):
        category = await alice.add_category(name="Work")
        tag = await alice.add_tag(name="errand")
        task = await alice.add_task(title="has a due date", due_date="2027-03-10T09:00", category_id=category["id"])
        undated = await alice.add_task(title="no due date")
        bob_category = await bob.add_category(name="Bob's")
        bob_tag = await bob.add_tag(name="bob")
        bob_task = await bob.add_task(title="bob's", due_date="2027-03-10T09:00")
        yield (
            alice,
            {
                "$task": task["id"],
                "$undated": undated["id"],
                "$category": category["id"],
                "$tag": tag["id"],
                "$bob_task": bob_task["id"],
                "$bob_category": bob_category["id"],
                "$bob_tag": bob_tag["id"],
            },
        )


def _resolve(value: Any, names: dict[str, int]) -> Any:
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, list):
        return [_resolve(item, names) for item in value]
    return value


@pytest.mark.parametrize("case", CASES, ids=[_case_id(case) for case in CASES])
async def test_garbage_gets_its_code_and_changes_nothing(
    case: Case, world: tuple[Tools, dict[str, int]], engine: AsyncEngine
) -> None:
    db = engine
    tools, names = world
    tool, arguments, code, field = case
    arguments = {key: _resolve(value, names) for key, value in arguments.items()}
    counts, events = await row_counts(db), await outbox(db)

    message = await tools.error(tool, arguments)

    if code == SCHEMA:
        assert message.startswith(f"VALIDATION_ERROR: {field}"), message
        assert "allowed: " in message and "\n" not in message and "pydantic" not in message, message
    else:
        assert message.startswith(f"{code}: "), message
        assert field in message, message
        assert "Traceback" not in message and "SELECT" not in message and "asyncpg" not in message
    assert "INTERNAL_ERROR" not in message
    assert "bob's" not in message
    assert await row_counts(db) == counts
    assert await outbox(db) == events


async def test_text_that_looks_hostile_is_stored_verbatim(db: AsyncEngine, database_dsn: str) -> None:
    async with tools_of(server_for(db, database_dsn, "alice")) as tools:
        await _hostile_text_round_trips(tools)


async def _hostile_text_round_trips(tools: Tools) -> None:
    for text in (
        "'; DROP TABLE tasks; --",
        "Robert'); DELETE FROM tags;--",
        "ünïcödé 🙂 中文 עברית",
        "<b>x</b>",
        "\\N",
    ):
        task = await tools.add_task(title=text, description=text)
        assert (task["title"], task["description"]) == (text, text)
        assert (await tools.search_tasks(query=text))["total"] >= 0
    category = await tools.add_category(name="'; DROP TABLE categories; --")
    assert category["name"] == "'; DROP TABLE categories; --"
    assert (await tools.list_tasks())["total"] == 5


async def test_extra_arguments_cannot_change_the_user(db: AsyncEngine, database_dsn: str) -> None:
    async with (
        tools_of(server_for(db, database_dsn, "alice")) as alice,
        tools_of(server_for(db, database_dsn, "bob")) as bob,
    ):
        await bob.add_task(title="bob's")
        refused = await alice.error("list_tasks", {"user_id": "bob", "user": "bob"})
        assert refused.startswith("VALIDATION_ERROR: user_id: unknown argument"), refused
        assert (await alice.error("add_task", {"title": "mine", "user_id": "bob"})).startswith("VALIDATION_ERROR")
        assert (await alice.list_tasks())["tasks"] == []
        assert [task["title"] for task in (await bob.list_tasks())["tasks"]] == ["bob's"]
