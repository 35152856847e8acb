"""Hypothesis drives the 17 tools with generated arguments, valid and not: no call may come back INTERNAL_ERROR, every
error names a known code (or is the SDK's schema rejection), and the database keeps its invariants."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import Tools, execute, server_for, tools_of
from tests.support.database import TABLES

CODES = re.compile(
    r"^(VALIDATION_ERROR|NOT_FOUND|CONFLICT|LIMIT_EXCEEDED|INVALID_RECURRENCE_RULE|UNAVAILABLE): \S"
    r"|^Error executing tool \w+: \d+ validation errors? for"
)

HOSTILE = [
    "",
    " ",
    "\x00",
    "'; DROP TABLE tasks; --",
    "%s%s%n",
    "\\x00",
    "🙂" * 60,
    "a" * 201,
    "NULL",
    "<script>",
    "\u202e",
    "-",
    '"',
]

# Valid-looking values are drawn more often than garbage, so calls also get past the schema into the service.
ids = st.one_of(
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=-3, max_value=40),
    st.integers(min_value=2**62, max_value=2**64),
    st.none(),
    st.booleans(),
    st.text(max_size=4),
)
texts = st.one_of(st.text(min_size=1, max_size=40), st.text(max_size=250), st.sampled_from(HOSTILE))
times = st.one_of(
    st.sampled_from(["2027-03-10", "2027-03-10T09:00", "2027-03-10T09:00:00Z", "2026-01-01T00:00+05:30"]),
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1)).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2050, 1, 1), timezones=st.just(UTC)).map(
        lambda d: (d + timedelta(microseconds=0)).isoformat()
    ),
    st.dates(min_value=datetime(1, 1, 1).date()).map(str),
    st.text(max_size=70),
    st.none(),
)
rule_parts = st.fixed_dictionaries(
    {"FREQ": st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY", "SECONDLY", "HOURLY", "daily", ""])},
    optional={
        "INTERVAL": st.integers(-1, 2000).map(str),
        "COUNT": st.sampled_from(["1", "3", "1000", "1001", "999999999", "0", "x"]),
        "UNTIL": st.sampled_from(["20270101", "20270101T000000Z", "19990101", "2027", "20271301"]),
        "BYDAY": st.sampled_from(["MO", "MO,WE", "1MO", "-1FR", "53MO", "XX", "+2TU"]),
        "BYMONTHDAY": st.sampled_from(["1", "31", "-1", "30", "0", "32", "1,15"]),
        "BYMONTH": st.sampled_from(["2", "12", "13", "0", "1,7"]),
        "BYSETPOS": st.sampled_from(["1", "-1", "0", "367"]),
        "WKST": st.sampled_from(["MO", "SU", "XX"]),
        "BYHOUR": st.just("9"),
    },
)
rules = st.one_of(
    st.sampled_from(["FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO,FR", "FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=5"]),
    rule_parts.map(lambda parts: ";".join(f"{k}={v}" for k, v in parts.items())),
    st.text(max_size=60),
    st.none(),
)
ints = st.one_of(
    st.integers(1, 100), st.integers(-5, 600_000), st.none(), st.text(max_size=3), st.floats(allow_nan=True)
)
id_lists = st.one_of(
    st.lists(st.integers(1, 6), max_size=4), st.lists(ids, max_size=12), st.none(), st.text(max_size=5)
)


def choice(*values: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(values), st.text(max_size=8), st.none())


priorities = choice("low", "medium", "high", "urgent")
PARAMETERS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "add_task": {
        "title": texts,
        "description": texts,
        "priority": priorities,
        "due_date": times,
        "category_id": ids,
        "tag_ids": id_lists,
        "recurrence_rule": rules,
        "remind_before_minutes": ints,
    },
    "list_tasks": {
        "status": choice("pending", "completed", "all"),
        "priority": priorities,
        "category_id": ids,
        "tag_ids": id_lists,
        "due_after": times,
        "due_before": times,
        "sort_by": choice("created_at", "updated_at", "due_date", "priority", "title"),
        "sort_order": choice("asc", "desc"),
        "limit": ints,
        "offset": ints,
    },
    "complete_task": {"task_id": ids},
    "update_task": {
        "task_id": ids,
        "title": texts,
        "description": texts,
        "priority": priorities,
        "due_date": times,
        "category_id": ids,
        "recurrence_rule": rules,
        "status": choice("pending", "completed"),
    },
    "delete_task": {"task_id": ids},
    "search_tasks": {
        "query": texts,
        "status": choice("pending", "completed", "all"),
        "priority": priorities,
        "category_id": ids,
        "tag_ids": id_lists,
        "limit": ints,
        "offset": ints,
    },
    "add_category": {"name": texts, "color": choice("#FF0000", "#abcdef", "red", "#12345G")},
    "list_categories": {},
    "delete_category": {"category_id": ids},
    "add_tag": {"name": texts, "color": choice("#00FF00", "blue")},
    "list_tags": {},
    "delete_tag": {"tag_id": ids},
    "add_tag_to_task": {"task_id": ids, "tag_id": ids},
    "remove_tag_from_task": {"task_id": ids, "tag_id": ids},
    "set_reminder": {"task_id": ids, "remind_before_minutes": ints, "remind_at": times},
    "get_overdue_tasks": {"limit": ints},
    "get_upcoming_tasks": {"days": ints, "limit": ints},
}

calls = st.sampled_from(sorted(PARAMETERS)).flatmap(
    lambda tool: st.tuples(st.just(tool), st.fixed_dictionaries({}, optional=PARAMETERS[tool]))
)


@pytest.fixture(scope="module")
async def tools(engine: AsyncEngine, database_dsn: str) -> AsyncIterator[Tools]:
    await execute(engine, f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    async with tools_of(server_for(engine, database_dsn, "alice")) as alice:
        # Something to hit: ids 1..3 exist for every kind.
        for i in range(3):
            await alice.add_category(name=f"c{i}")
            await alice.add_tag(name=f"t{i}")
            await alice.add_task(title=f"task {i}", due_date="2027-01-0" + str(i + 1), recurrence_rule="FREQ=DAILY")
        yield alice


OUTCOMES: list[tuple[str, str]] = []

INVARIANTS = text(
    """
    SELECT
      (SELECT count(*) FROM tasks WHERE recurrence_rule IS NOT NULL AND (series_id IS NULL OR due_date IS NULL)),
      (SELECT count(*) FROM (SELECT task_id FROM task_tags GROUP BY task_id HAVING count(*) > 10) t),
      (SELECT count(*) FROM categories WHERE user_id = 'alice') > 50,
      (SELECT count(*) FROM tags WHERE user_id = 'alice') > 100,
      (SELECT count(*) FROM tasks WHERE status = 'completed' AND completed_at IS NULL),
      (SELECT count(*) FROM tasks WHERE status = 'pending' AND completed_at IS NOT NULL),
      (SELECT count(*) FROM tasks WHERE remind_before_minutes IS NOT NULL AND due_date IS NOT NULL
          AND remind_at IS DISTINCT FROM CASE
            -- A date without a time (the end of the day in the task's zone): at 09:00, a day earlier per day of lead.
            WHEN (due_date AT TIME ZONE time_zone)::time = time '23:59:59'
            THEN ((due_date AT TIME ZONE time_zone)::date - remind_before_minutes / 1440 + time '09:00')
                 AT TIME ZONE time_zone
            ELSE due_date - remind_before_minutes * interval '1 minute' END),
      (SELECT count(*) FROM outbox WHERE user_id <> 'alice')
    """
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(call=calls)
async def test_generated_calls_never_fail_internally(tools: Tools, engine: AsyncEngine, call: Any) -> None:
    tool, arguments = call
    result = await tools.raw(tool, arguments)
    if result.is_error:
        message = result.content[0].text  # type: ignore[union-attr]
        assert "INTERNAL_ERROR" not in message, (tool, arguments, message)
        assert CODES.match(message), (tool, arguments, message)
    else:
        assert result.structured_content is not None
    OUTCOMES.append((tool, "error" if result.is_error else "ok"))
    async with engine.connect() as conn:
        violations = (await conn.execute(INVARIANTS)).one()
    assert tuple(violations) == (0, 0, False, False, 0, 0, 0, 0), (tool, arguments, violations)


def test_generated_calls_reached_the_service() -> None:
    """Not only schema rejections: a good share of the generated calls succeeded, for most tools."""
    succeeded = {tool for tool, outcome in OUTCOMES if outcome == "ok"}
    assert len(OUTCOMES) >= 100
    assert len(succeeded) >= 10, sorted(succeeded)
