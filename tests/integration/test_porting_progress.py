"""How far an export has got, as a host sees it: `todo://export.ics` read through the official MCP client with a
progress callback (the SDK sends the request's `progressToken`) gets progress notifications that count the tasks
up to all of them; a read without one gets none and the same file."""

from __future__ import annotations

from datetime import UTC, datetime

import mcp_types as types
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.porting.files import import_file
from tests.integration.tool_client import server_for, settings_for, tools_of

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TASKS = 300


def calendar(count: int) -> bytes:
    todos = "".join(f"BEGIN:VTODO\r\nUID:t{n}\r\nSUMMARY:Task {n}\r\nEND:VTODO\r\n" for n in range(count))
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//progress//EN\r\n{todos}END:VCALENDAR\r\n".encode()


async def test_the_export_resource_reports_progress_to_a_host_that_asks(db: AsyncEngine, database_dsn: str) -> None:
    _, report = await import_file(db, settings_for(database_dsn), "alice", calendar(TASKS), now=NOW)
    assert len(report.added) == TASKS
    heard: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append((progress, total, message))

    async with tools_of(server_for(db, database_dsn)) as tools:
        request = types.ReadResourceRequest(params=types.ReadResourceRequestParams(uri="todo://export.ics"))
        result = await tools.client.session.send_request(
            request, types.ReadResourceResult, progress_callback=on_progress
        )
        body = result.contents[0].text  # type: ignore[union-attr]
        assert body.count("BEGIN:VTODO") == TASKS
        plain = await tools.client.read_resource("todo://export.ics", cache_mode="bypass")
        assert plain.contents[0].text.count("BEGIN:VTODO") == TASKS  # type: ignore[union-attr]
    assert heard, "no progress notification"
    assert heard[0][:2] == (0, TASKS) and heard[-1] == (TASKS, TASKS, f"{TASKS} of {TASKS} tasks written")
    counts = [progress for progress, _total, _message in heard]
    assert counts == sorted(set(counts)), counts  # each notification says more than the one before
