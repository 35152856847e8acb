"""MCP resources: `todo://notifications`, the user's reminder inbox (newest 50), filled by the reminder handler, and
`todo://export.ics`, the user's tasks as an iCalendar file (the same as `mcp-todo export --format ics`)."""

from __future__ import annotations

import json
from typing import Final

from mcp.server.mcpserver import MCPServer

from mcp_todo.handlers.reminders import list_notifications
from mcp_todo.server.state import AppState, LiveState

NOTIFICATIONS_URI: Final = "todo://notifications"
NOTIFICATIONS_SHOWN: Final = 50
EXPORT_ICS_URI: Final = "todo://export.ics"


def register_resources(server: MCPServer[AppState], live: LiveState) -> None:
    @server.resource(
        NOTIFICATIONS_URI,
        name="notifications",
        description=f"Your most recent reminders, newest first (up to {NOTIFICATIONS_SHOWN})",
        mime_type="application/json",
    )
    async def notifications() -> str:
        state = live.get()
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

        return await export_text(state.engine, state.user_for_request(), "ics", now=state.clock())
