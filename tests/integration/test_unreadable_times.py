"""Time phrases whose time part cannot be read, through the MCP client: each is one VALIDATION_ERROR line naming the
argument, never a task stored at a guessed time nor an INTERNAL_ERROR, and nothing changes."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import Tools, outbox, row_counts


@pytest.mark.parametrize(
    "phrase",
    [
        "tomorrow 13pm",
        "yesterday 25:99",
        "today 99:99",
        "tomorrow 0am",
        "tomorrow 9am +99:00",
        "tomorrow 9am 9am",
        "jan 32",
        "-1",
        "dec 31 9999 23:59 -1200",
    ],
)
async def test_an_unreadable_time_is_refused_and_nothing_is_stored(tools: Tools, db: AsyncEngine, phrase: str) -> None:
    before = (await row_counts(db), await outbox(db))
    for tool, arguments in (
        ("add_task", {"title": "x", "due_date": phrase}),
        ("add_task", {"tasks": [{"title": "x", "due_date": phrase}]}),
        ("list_tasks", {"due_before": phrase}),
    ):
        message = await tools.error(tool, arguments)
        assert message.startswith("VALIDATION_ERROR: ") and "due_" in message, message
        assert "write a phrase such as 'tomorrow 9am'" in message and "\n" not in message
    assert (await row_counts(db), await outbox(db)) == before
