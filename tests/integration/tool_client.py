"""Shared by the tool tests: a server on the test database acting for a given user, called through the official
MCP client in-process, and readers for what the tools wrote (rows, outbox events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mcp.client import Client
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.server.app import build_server
from mcp_todo.server.state import AppState
from mcp_todo.settings import Settings
from tests.support.lean import full_result

USER_ZONE = "America/New_York"


def first_text(result: CallToolResult) -> str:
    """The text of a result's first content block (a tool's result and its errors are text)."""
    block = result.content[0]
    assert isinstance(block, TextContent), block
    return block.text


@dataclass
class Clock:
    """The server's clock, which a test may set; it follows real time until then."""

    fixed: datetime | None = None

    def __call__(self) -> datetime:
        return self.fixed or datetime.now(UTC)


def settings_for(dsn: str, user: str = "alice", zone: str = USER_ZONE, **extra: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        DATABASE_URL=dsn,
        MCP_TODO_USER=user,
        MCP_TODO_TIMEZONE=zone,
        KAFKA_BOOTSTRAP_SERVERS="",
        **extra,
    )


def server_for(
    engine: AsyncEngine, dsn: str, user: str = "alice", *, clock: Clock | None = None, **extra: Any
) -> MCPServer[AppState]:
    settings = settings_for(dsn, user, **extra)
    state = AppState(settings=settings, engine=engine, dsn=dsn, embedded=False, clock=clock or Clock())
    return build_server(settings, state=state)


class ToolError(AssertionError):
    pass


@dataclass
class Tools:
    """`await tools.add_task(title=...)` returns the structured result; `await tools.error("add_task", ...)` the
    error text of a call that must fail."""

    client: Client
    calls: list[str] = field(default_factory=list)
    zone: str = USER_ZONE

    async def raw(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        self.calls.append(name)
        return await self.client.call_tool(name, arguments)

    async def call(self, tool: str, /, **arguments: Any) -> dict[str, Any]:
        result = await self.raw(tool, arguments)
        if result.is_error:
            raise ToolError(f"{tool} failed: {first_text(result) if result.content else result}")
        content: dict[str, Any] | None = result.structured_content
        assert content is not None
        # The text content is a rendering for a model, never the JSON again; tests read the full shape.
        assert not first_text(result).startswith("{")
        return full_result(tool, content, self.zone)

    async def error(self, tool: str, arguments: dict[str, Any]) -> str:
        result = await self.raw(tool, arguments)
        assert result.is_error, f"{tool}({arguments}) should have failed, got {result.structured_content}"
        assert result.structured_content is None
        return first_text(result)

    def __getattr__(self, name: str) -> Any:
        async def call(**arguments: Any) -> dict[str, Any]:
            return await self.call(name, **arguments)

        return call


@asynccontextmanager
async def tools_of(server: MCPServer[AppState]) -> AsyncIterator[Tools]:
    """A connected client. The client is entered and exited in a task of its own: anyio requires both in one task,
    and pytest-asyncio sets a fixture up and tears it down in different ones."""
    ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def hold() -> None:
        try:
            async with Client(server) as client:
                ready.set_result(client)
                await done.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    holder = asyncio.create_task(hold())
    try:
        yield Tools(await ready)
    finally:
        done.set()
        await holder


async def outbox(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT event_type, topics, message_key, task_id, user_id, payload FROM outbox ORDER BY id")
        )
        return [dict(row) for row in rows.mappings()]


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        counts = {}
        for table in ("tasks", "categories", "tags", "task_tags", "outbox", "notifications"):
            counts[table] = int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
        return counts


async def task_row(engine: AsyncEngine, task_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM tasks WHERE id = :id"), {"id": task_id})).mappings().one()
        return dict(row)


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql), params)
