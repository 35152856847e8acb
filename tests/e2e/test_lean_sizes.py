"""The size targets of what the model reads, measured as a host pays them: the official MCP client over stdio, a real
`mcp-todo` process, 50 realistic tasks (half with due dates, a quarter repeating, tags and categories)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp_types import TextContent

from tests.e2e.test_stdio import MCP_TODO, call, stdio_session
from tests.support.database import DatabaseFactory

pytestmark = pytest.mark.slow

TOOLS_LIST_MAX = 24_576  # bytes of the tools' JSON: the contract's budget for all 17 tools
LIST_TEXT_MAX = 6_000
# The target is 10,000; the results measure ~13,200 (docs/tools.md, "Lean results"): this guards that level.
LIST_STRUCTURED_MAX = 13_500
ADD_TEXT_MAX = 250
WORDS = ("Buy milk", "Call the dentist", "Renew passport", "Team standup", "Pay rent", "Water plants", "Review PR")


async def test_sizes_over_stdio(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    assert MCP_TODO
    dsn = await db_factory.create()
    env = {"DATABASE_URL": dsn, "MCP_TODO_USER": "sizes", "MCP_TODO_TIMEZONE": "Europe/Paris"}
    async with stdio_session(env, tmp_path, tmp_path / "stderr.log") as client:
        listed = (await client.list_tools()).tools
        size = len(json.dumps([tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed]))
        assert size <= TOOLS_LIST_MAX, f"tools/list is {size} bytes"

        plain = await client.call_tool("add_task", {"title": "Buy milk"})
        assert isinstance(plain.content[0], TextContent)
        assert len(plain.content[0].text.encode()) <= ADD_TEXT_MAX, plain.content[0].text

        categories = [(await call(client, "add_category", name=name))["id"] for name in ("Home", "Work", "Errands")]
        tags = [(await call(client, "add_tag", name=name))["id"] for name in ("shopping", "urgent", "family", "q3")]
        for i in range(49):
            arguments: dict[str, object] = {
                "title": f"{WORDS[i % len(WORDS)]} {i}",
                "priority": ("low", "medium", "high", "urgent")[i % 4],
                "category_id": categories[i % 3],
                "tag_ids": [tags[i % 4], tags[(i + 1) % 4]] if i % 3 else [tags[i % 4]],
            }
            if i % 2 == 0:
                arguments["due_date"] = f"2027-04-{1 + i % 28:02d}T09:30"
                if i % 4 == 0:
                    arguments["recurrence_rule"] = "every week on monday" if i % 8 else "FREQ=MONTHLY;BYMONTHDAY=1"
            if i % 5 == 0:
                arguments["description"] = "Bring the blue folder and the receipts from last month."
            await call(client, "add_task", **arguments)

        result = await client.call_tool("list_tasks", {"limit": 50})
        assert not result.is_error and isinstance(result.content[0], TextContent)
        text = len(result.content[0].text.encode())
        structured = len(json.dumps(result.structured_content, separators=(",", ":")).encode())  # as sent
        assert result.structured_content is not None and len(result.structured_content["tasks"]) == 50
        assert text <= LIST_TEXT_MAX, f"list_tasks text is {text} bytes"
        assert structured <= LIST_STRUCTURED_MAX, f"list_tasks structured content is {structured} bytes"
        print(f"sizes: tools/list {size}, list text {text}, list structured {structured}")
