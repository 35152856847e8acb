"""MCP prompts: ready-made requests a host can offer its user, each naming the tools that answer it."""

from __future__ import annotations

from typing import Annotated, Any, Final

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import Field

from mcp_todo.server.state import AppState

FOCUS_MAX_CHARS: Final = 100


def register_prompts(server: MCPServer[AppState]) -> None:
    @server.prompt(name="plan_my_day", description="Plan today from the ranked open tasks and recent reminders")
    def plan_my_day() -> str:
        return (
            "Help me plan my day. Call list_tasks with sort_by=next and limit=15: the open tasks I can start now come "
            "first, most urgent first, each with why it ranks there; blocked tasks come last, saying what blocks "
            "them. Read the todo://notifications resource for reminders that fired. Propose an order for today from "
            "that ranking, giving each task's reasons in a few words, point out a blocker worth doing first because "
            "it unblocks others, and ask before completing, moving or deleting anything."
        )

    @server.prompt(name="weekly_review", description="Review the past and the coming week")
    def weekly_review(
        focus: Annotated[
            str, Field(description=f"A category or topic to focus on, if any (at most {FOCUS_MAX_CHARS} characters)")
        ] = "",
    ) -> str:
        # Checked here, not by a Field bound: the SDK reports a prompt argument its validation refuses as an internal
        # error with a traceback, where this is the caller's to fix.
        if len(focus) > FOCUS_MAX_CHARS:
            raise MCPError(INVALID_PARAMS, f"focus is {len(focus)} characters; at most {FOCUS_MAX_CHARS} are allowed")
        scope = f" Focus on {focus!r}." if focus.strip() else ""
        return (
            "Run my weekly review. Call list_tasks with status=completed, sort_by=updated_at to see what I finished, "
            "get_overdue_tasks for what slipped, and get_upcoming_tasks with days=7 for what is coming. Summarise "
            f"each, point out recurring tasks I keep missing, and suggest what to reschedule.{scope}"
        )


async def check_prompt_arguments(server: MCPServer[Any], name: str, arguments: dict[str, Any] | None) -> None:
    """Refuse, as INVALID_PARAMS saying what to send, a `prompts/get` of an unknown prompt or with an argument the
    prompt does not take: the SDK would report either as an internal error with a traceback, where it is the caller's
    to fix."""
    prompts = {prompt.name: prompt for prompt in await server.list_prompts()}
    prompt = prompts.get(name)
    if prompt is None:
        raise MCPError(
            INVALID_PARAMS, f"unknown prompt {name[:100]!r}: prompts/list shows {', '.join(sorted(prompts))}"
        )
    known = [argument.name for argument in prompt.arguments or ()]
    unknown = [key for key in arguments or {} if key not in known]
    if unknown:
        takes = f"takes only {', '.join(known)}" if known else "takes no arguments"
        raise MCPError(INVALID_PARAMS, f"unknown argument {unknown[0][:100]!r}: {name} {takes}")
