"""docs/tools.md is rendered from the registered tools; it must be what the registry renders today."""

from __future__ import annotations

from pathlib import Path

from mcp_todo.server.reference import registered_tools, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "tools.md"


async def test_the_committed_tools_reference_is_current() -> None:
    rendered = render(await registered_tools())
    assert rendered == DOC.read_text(), (
        "docs/tools.md is stale: run `python -m mcp_todo.server.reference > docs/tools.md`"
    )


async def test_the_reference_names_every_tool_with_its_hints_and_bounds() -> None:
    tools = await registered_tools()
    rendered = render(tools)
    assert len(tools) == 17
    for tool in tools:
        assert f"\n## {tool.name}\n" in rendered
    assert "| [`get_overdue_tasks`](#get_overdue_tasks) | yes | no | yes |" in rendered
    assert "| `title` | string | optional | ≥ 1 chars, ≤ 200 chars | Required unless tasks |" in rendered
