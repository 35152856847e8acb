"""add_task's batch through the MCP client: an item's unknown key, and one task's fields sent beside `tasks`, are
refused as one VALIDATION_ERROR line with a hint, as an unknown argument of a single call is — never dropped — and
nothing changes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import Tools, outbox, row_counts


async def snapshot(db: AsyncEngine) -> tuple[dict[str, int], list[dict[str, Any]]]:
    return await row_counts(db), await outbox(db)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (
            [{"title": "y", "duedate": "tomorrow"}],
            "VALIDATION_ERROR: tasks.0.duedate: unknown key (did you mean due_date?); an item's keys are title, ",
        ),
        (
            [{"title": "x"}, {"title": "y", "priority": "high", "tags": [1]}],
            "VALIDATION_ERROR: tasks.1.tags: unknown key (did you mean tag_ids?)",
        ),
        (
            [{"title": "x", "remind_before": 5}],
            "VALIDATION_ERROR: tasks.0.remind_before: unknown key (did you mean remind_before_minutes?)",
        ),
        ([{"title": "x", "colour": "#ffffff"}], "VALIDATION_ERROR: tasks.0.colour: unknown key; an item's keys are"),
        # The unknown key is named even when the same item has another problem.
        ([{"title": "", "due": "friday"}], "VALIDATION_ERROR: tasks.0.due: unknown key (did you mean due_date?)"),
    ],
)
async def test_an_unknown_key_in_a_batch_item_is_refused_with_a_hint(
    tools: Tools, db: AsyncEngine, items: list[dict[str, Any]], expected: str
) -> None:
    before = await snapshot(db)
    message = await tools.error("add_task", {"tasks": items})
    assert message.startswith(expected), message
    assert "\n" not in message
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("beside", "named"),
    [
        ({"due_date": "tomorrow"}, "due_date was given beside tasks — put it in each item"),
        ({"priority": "high", "tag_ids": [1]}, "priority, tag_ids were given beside tasks — put them in each item"),
        ({"title": "one"}, "title was given beside tasks"),
        ({"recurrence_rule": "daily", "parent_id": 1}, "recurrence_rule, parent_id were given beside tasks"),
    ],
)
async def test_one_tasks_fields_beside_a_batch_are_refused_not_ignored(
    tools: Tools, db: AsyncEngine, beside: dict[str, Any], named: str
) -> None:
    before = await snapshot(db)
    message = await tools.error("add_task", {"tasks": [{"title": "a"}, {"title": "b"}], **beside})
    assert message.startswith("VALIDATION_ERROR: give either one task's fields (title, …) or tasks (a batch), not both")
    assert named in message and "\n" not in message
    assert await snapshot(db) == before


async def test_null_beside_a_batch_means_omitted_and_the_batch_is_made(tools: Tools, db: AsyncEngine) -> None:
    made = await tools.add_task(tasks=[{"title": "a", "due_date": "2027-01-04"}], title=None, due_date=None)
    assert [r["outcome"] for r in made["results"]] == ["created"]
    assert (await tools.list_tasks())["tasks"][0]["title"] == "a"
