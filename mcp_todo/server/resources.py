"""MCP resources: the live ones a host can subscribe to (docs/live.md) — `todo://today` (today's agenda, short text),
`todo://tasks/{id}` (one task, JSON) and `todo://notifications`, the user's reminder inbox (newest 50), filled by the
reminder handler — and `todo://export.ics`, the user's tasks as an iCalendar file (the same as `mcp-todo export
--format ics`), which reports its progress to a host that asks for it (`progressToken` in the read's `_meta`)."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from contextvars import ContextVar
from typing import Any, Final

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from mcp_todo.domain.errors import TodoError
from mcp_todo.pipeline.live import NOTIFICATIONS_URI, TASK_URI_PREFIX, TODAY_URI
from mcp_todo.server.state import AppState, LiveState
from mcp_todo.service import agenda

NOTIFICATIONS_SHOWN: Final = 50
EXPORT_ICS_URI: Final = "todo://export.ics"
# A host is told at most this often how far an export has got (and always of its start and end).
PROGRESS_INTERVAL_S: Final = 0.25

# The SDK hands the Context of a read only to a resource template's function, not to a fixed resource's; the read's
# progress goes out through it, so `read_resource`, which does receive it, keeps it here for the read's duration.
_read_context: ContextVar[Context[Any, Any] | None] = ContextVar("mcp_todo_read_context", default=None)


def _keep_read_context(server: MCPServer[AppState]) -> None:
    read = server.read_resource

    async def read_resource(uri: Any, context: Context[Any, Any] | None = None) -> Any:
        token = _read_context.set(context)
        try:
            return await read(uri, context)
        finally:
            _read_context.reset(token)

    server.read_resource = read_resource  # type: ignore[method-assign]


class _HostProgress:
    """Progress from the thread that writes an export, sent in order by a task on the event loop (a notification
    is a coroutine on the loop; the writer must not wait for it)."""

    def __init__(self, context: Context[Any, Any]) -> None:
        self.context = context
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
        self.sent_at: float | None = None
        self.sender = asyncio.create_task(self._send())

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.sent_at is not None and now - self.sent_at < PROGRESS_INTERVAL_S and done < total:
            return
        self.sent_at = now
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (done, total))

    async def _send(self) -> None:
        while (item := await self.queue.get()) is not None:
            done, total = item
            await self.context.report_progress(done, total, f"{done:,} of {total:,} tasks written")

    async def close(self) -> None:
        self.queue.put_nowait(None)
        await self.sender


def register_resources(server: MCPServer[AppState], live: LiveState) -> None:
    _keep_read_context(server)

    @server.resource(
        TODAY_URI,
        name="today",
        description="Today's agenda in your zone: overdue, due today, reminders today. One task a line: "
        "#id [time] title [!priority] [#tag] [~rep] [@reminder time]",
        mime_type="text/plain",
    )
    async def today() -> str:
        state = live.get()
        user = state.user_for_request()
        try:
            return await agenda.today_text(await state.service_context(user, state.clock()))
        except TodoError as err:
            raise ResourceError(err.render()) from None

    @server.resource(
        TASK_URI_PREFIX + "{id}",  # the template's parameter is named as the contract names it
        name="task",
        description="One task as the tools show it (JSON)",
        mime_type="application/json",
    )
    async def task(id: str) -> str:
        state = live.get()
        user = state.user_for_request()
        try:
            if not (id.isascii() and id.isdigit()) or len(id) > 19:
                raise ResourceError(f"NOT_FOUND: no task {id[:40]!r}")
            shown = await agenda.one_task(await state.service_context(user, state.clock()), int(id))
        except TodoError as err:
            raise ResourceError(err.render()) from None
        return json.dumps(shown, ensure_ascii=False, separators=(",", ":"))

    @server.resource(
        NOTIFICATIONS_URI,
        name="notifications",
        description=f"Your most recent reminders, newest first (up to {NOTIFICATIONS_SHOWN})",
        mime_type="application/json",
    )
    async def notifications() -> str:
        state = live.get()
        # Imported on the first read, in a worker thread: it brings Apprise and the reminder handler, a tenth of a
        # second of the server's start that listing the tools does not need, and too long to hold the event loop.
        await asyncio.to_thread(importlib.import_module, "mcp_todo.handlers.reminder_delivery")
        from mcp_todo.handlers.reminder_delivery import list_notifications

        async with state.engine.connect() as conn:
            items = await list_notifications(conn, state.user_for_request(), NOTIFICATIONS_SHOWN)
        return json.dumps(
            {"notifications": [item.model_dump(mode="json") for item in items], "total": len(items)},
            ensure_ascii=False,
        )

    @server.resource(
        EXPORT_ICS_URI,
        name="export.ics",
        description="All your tasks outside the trash as an iCalendar (RFC 5545) file of VTODOs, to save or hand to "
        "a calendar app; `mcp-todo import` reads it back",
        mime_type="text/calendar",
    )
    async def export_ics() -> str:
        state = live.get()
        # Imported here: the iCalendar library costs ~130 ms of the server's cold start, for a rare read.
        from mcp_todo.porting.files import export_text

        context = _read_context.get()
        progress = _HostProgress(context) if context is not None else None
        try:
            return await export_text(
                state.engine, state.user_for_request(), "ics", now=state.clock(), progress=progress
            )
        finally:
            if progress is not None:
                await progress.close()
