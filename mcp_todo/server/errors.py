"""The one place a tool call's outcome becomes an MCP result: a TodoError becomes an error result whose text starts
with its code; anything unexpected is logged with its traceback and shown as INTERNAL_ERROR, nothing more."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from mcp_todo.domain.errors import InternalError, TodoError
from mcp_todo.metrics import TOOL_CALLS, TOOL_DURATION

log = logging.getLogger("mcp_todo.tools")

INTERNAL_MESSAGE = "something went wrong on the server; it has been logged — try again, and report it if it persists"


def error_result(err: TodoError) -> CallToolResult:
    """`CODE: message — how to fix`, flagged as an error for the model to read and act on."""
    return CallToolResult(content=[TextContent(type="text", text=err.render())], is_error=True)


def success_result(model: BaseModel) -> CallToolResult:
    """The result as structured content (checked against the tool's output schema) and as compact JSON text."""
    return CallToolResult(
        content=[TextContent(type="text", text=model.model_dump_json())],
        structured_content=model.model_dump(mode="json"),
    )


async def run_tool(tool: str, user_id: str, call: Callable[[], Awaitable[BaseModel]]) -> CallToolResult:
    """Run one tool call and log one line about it (tool, user, duration, outcome; never argument values)."""
    started = time.perf_counter()
    outcome = "OK"
    try:
        return success_result(await call())
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
