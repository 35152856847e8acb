"""MCP prompts: ready-made requests a host can offer its user, each naming the tools that answer it."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from mcp_todo.server.state import AppState


def register_prompts(server: MCPServer[AppState]) -> None:
    @server.prompt(name="plan_my_day", description="Plan today from what is overdue, due soon and recently reminded")
    def plan_my_day() -> str:
        return (
            "Help me plan my day. Call get_overdue_tasks and get_upcoming_tasks with days=1, and read the "
            "todo://notifications resource for reminders that fired. Then propose an order for today, most urgent "
            "first, and ask before completing, moving or deleting anything."
        )

    @server.prompt(name="weekly_review", description="Review the past and the coming week")
    def weekly_review(
        focus: Annotated[str, Field(max_length=100, description="A category or topic to focus on, if any")] = "",
    ) -> str:
        scope = f" Focus on {focus!r}." if focus.strip() else ""
        return (
            "Run my weekly review. Call list_tasks with status=completed, sort_by=updated_at to see what I finished, "
            "get_overdue_tasks for what slipped, and get_upcoming_tasks with days=7 for what is coming. Summarise "
            f"each, point out recurring tasks I keep missing, and suggest what to reschedule.{scope}"
        )
