"""The prompts a host can offer: listed, and each names only tools that exist."""

from __future__ import annotations

import re

import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
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
    assert "sort_by=next" in plan.messages[0].content.text  # type: ignore[union-attr]


async def test_a_too_long_focus_is_invalid_params_without_a_traceback(
    db: AsyncEngine, database_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Client(server_for(db, database_dsn)) as client:
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("weekly_review", {"focus": "x" * 101})
        at_limit = await client.get_prompt("weekly_review", {"focus": "y" * 100})
    assert refused.value.code == INVALID_PARAMS
    assert "focus" in refused.value.message and "100" in refused.value.message
    assert "y" * 100 in at_limit.messages[0].content.text  # type: ignore[union-attr]
    assert not [record for record in caplog.records if record.exc_info], caplog.text


@pytest.mark.parametrize(
    ("prompt", "arguments", "says"),
    [
        ("plan_my_day", {"when": "today"}, "unknown argument 'when': plan_my_day takes no arguments"),
        ("weekly_review", {"fokus": "garden"}, "unknown argument 'fokus': weekly_review takes only focus"),
        ("weekly_reviews", {}, "unknown prompt 'weekly_reviews': prompts/list shows plan_my_day, weekly_review"),
    ],
)
async def test_an_unknown_prompt_or_argument_is_invalid_params_without_a_traceback(
    db: AsyncEngine,
    database_dsn: str,
    caplog: pytest.LogCaptureFixture,
    prompt: str,
    arguments: dict[str, str],
    says: str,
) -> None:
    async with Client(server_for(db, database_dsn)) as client:
        with pytest.raises(MCPError) as refused:
            await client.get_prompt(prompt, arguments)
    assert refused.value.code == INVALID_PARAMS, refused.value
    assert refused.value.message == says
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= 40], caplog.text
