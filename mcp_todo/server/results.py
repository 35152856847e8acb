"""The one place a tool call's outcome becomes an MCP result: a TodoError becomes an error result whose text starts
with its code; anything unexpected is logged with its traceback and shown as INTERNAL_ERROR, nothing more. A success
is its lean structured content and, as text, the compact rendering of it (`mcp_todo.server.render`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from mcp_todo.domain.errors import InternalError, TodoError
from mcp_todo.domain.times import resolve_zone
from mcp_todo.metrics import TOOL_CALLS, TOOL_DURATION
from mcp_todo.schemas import TASK_LISTS, lean_content, lean_list
from mcp_todo.server.render import render
from mcp_todo.service.shapes import Shaped

log = logging.getLogger("mcp_todo.tools")

INTERNAL_MESSAGE = "something went wrong on the server; it has been logged — try again, and report it if it persists"


def error_result(err: TodoError) -> CallToolResult:
    """`CODE: message — how to fix`, flagged as an error for the model to read and act on."""
    return CallToolResult(content=[TextContent(type="text", text=err.render())], is_error=True)


@dataclass
class Reading:
    """What a result is shown against: the user's zone and local time, and how each time argument was read
    (`{"due_date": "2027-03-12T09:00:00+01:00 (Friday)"}`), filled in while the call runs."""

    time_zone: str
    now: datetime
    understood: dict[str, str] = field(default_factory=dict)


Outcome = BaseModel | Shaped
"""What a service call returns: a result model, or a result already shaped from its rows (the task lists)."""


def success_result(outcome: Outcome, reading: Reading) -> CallToolResult:
    """The lean structured content, and as text its rendering for a model, with how any time was understood."""
    local_now = reading.now.astimezone(resolve_zone(reading.time_zone)).isoformat(timespec="seconds")
    if isinstance(outcome, Shaped):
        kind = outcome.kind
        content = dict(outcome.content)
        if issubclass(kind, TASK_LISTS):
            content = lean_list(kind, content, reading.time_zone, local_now)
    else:
        kind = type(outcome)
        content = lean_content(outcome, reading.time_zone, local_now)
    text = render(kind, content, reading.time_zone)
    if reading.understood:
        content["understood"] = dict(reading.understood)
        text += "\nunderstood: " + "; ".join(f"{name} = {value}" for name, value in reading.understood.items())
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=content)


async def run_tool(
    tool: str, user_id: str, call: Callable[[], Awaitable[Outcome]], reading: Reading | None = None
) -> CallToolResult:
    """Run one tool call and log one line about it (tool, user, duration, outcome; never argument values)."""
    started = time.perf_counter()
    outcome = "OK"
    try:
        result = await call()
        assert reading is not None, "a call that can succeed is shown against a Reading"
        return success_result(result, reading)
    except TodoError as err:
        outcome = err.code
        return error_result(err)
    except Exception:  # the tool boundary: whatever escaped the service is a defect, logged in full here
        outcome = InternalError.code
        log.exception("tool failed unexpectedly", extra={"tool": tool, "user": user_id})
        return error_result(InternalError(INTERNAL_MESSAGE))
    finally:
        duration_s = time.perf_counter() - started
        TOOL_CALLS.labels(tool, outcome).inc()
        TOOL_DURATION.labels(tool).observe(duration_s)
        log.info(
            "tool call",
            extra={"tool": tool, "user": user_id, "duration_ms": round(duration_s * 1000, 1), "outcome": outcome},
        )
