"""The prompts a host can offer: listed, and each names only tools that exist."""

from __future__ import annotations

import re

from mcp.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import server_for


async def test_prompts_name_real_tools(db: AsyncEngine, database_dsn: str) -> None:
    async with Client(server_for(db, database_dsn)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
        assert set(prompts) == {"plan_my_day", "weekly_review"}
        plan = await client.get_prompt("plan_my_day")
        review = await client.get_prompt("weekly_review", {"focus": "garden"})
    for result in (plan, review):
        words = " ".join(message.content.text for message in result.messages)  # type: ignore[union-attr]
        named = set(re.findall(r"\b(?:get|list|add|complete|update|delete|search|set|remove)_[a-z_]+\b", words))
        assert named and named <= tools
    assert "'garden'" in review.messages[0].content.text  # type: ignore[union-attr]
