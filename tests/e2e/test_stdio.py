"""A real `mcp-todo` subprocess over stdio, launched the way Claude Desktop launches it: the command, no arguments,
a few environment variables. With DATABASE_URL it uses that server; without, the embedded default in
MCP_TODO_DATA_DIR, which a second process on the same data dir shares."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.support.database import DatabaseFactory
from tests.support.polling import eventually
from tests.support.processes import BIN, LOOP_WATCHDOG_ENV, clean_env, loop_blocked_lines

MCP_TODO = str(BIN / "mcp-todo")
TOOL_COUNT = 17

pytestmark = pytest.mark.slow


@asynccontextmanager
async def stdio_session(env: dict[str, str], cwd: Path, log: Path) -> AsyncIterator[Client]:
    """A client on a fresh `mcp-todo` process (its loop watched, as every test subprocess's); its stderr goes to
    `log`."""
    params = StdioServerParameters(command=MCP_TODO, env=LOOP_WATCHDOG_ENV | env, cwd=cwd)
    with log.open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60) as client:
            yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


async def wait_until_serving(process: asyncio.subprocess.Process, log: Path) -> None:
    """Until the stdio server logs that it is ready (its log file is `log`); fails if it exits first."""

    def ready() -> bool:
        assert process.returncode is None, log.read_text()
        return 'msg="server ready"' in log.read_text()

    await eventually(ready, 30, "the server is ready", interval_s=0.05)


async def test_stdio_session_on_database_url(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    dsn = await db_factory.create()
    env = {"DATABASE_URL": dsn, "MCP_TODO_USER": "desktop", "MCP_TODO_TIMEZONE": "Europe/London"}
    log = tmp_path / "stderr.log"
    async with stdio_session(env, tmp_path, log) as client:
        assert client.server_info is None or client.server_info.name == "mcp-todo"
        tools = (await client.list_tools()).tools
        assert len(tools) == TOOL_COUNT
        task = await call(client, "add_task", title="Buy milk", due_date="2027-07-01T10:00")
        # Lean: the task's zone is the user's (Europe/London), so the result leaves it out.
        assert task["due_date"] == "2027-07-01T10:00:00+01:00" and "time_zone" not in task
        done = await call(client, "complete_task", task_id=task["id"])
        assert done["status"] == "completed"
        missing = await client.call_tool("delete_task", {"task_id": 999})
        assert missing.is_error and missing.content[0].text.startswith("NOT_FOUND: task 999")  # type: ignore[union-attr]
        resource = await client.read_resource("todo://notifications")
        assert json.loads(resource.contents[0].text) == {"notifications": [], "total": 0}  # type: ignore[union-attr]

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT event_type, user_id FROM outbox ORDER BY id")
    finally:
        await conn.close()
    assert [(row["event_type"], row["user_id"]) for row in rows] == [
        ("task.created", "desktop"),
        ("task.completed", "desktop"),
    ]
    # Logs went to stderr (stdout carried only the protocol, or the session would have broken), one line per call.
    lines = log.read_text().splitlines()
    calls = [line for line in lines if 'msg="tool call"' in line]
    assert any("tool=add_task" in line and "outcome=OK" in line for line in calls)
    assert any("tool=delete_task" in line and "outcome=NOT_FOUND" in line for line in calls)
    assert "Buy milk" not in log.read_text()  # argument values never reach the logs
    assert "Traceback" not in log.read_text()


async def test_stdio_embedded_default_shared_by_two_processes(tmp_path: Path) -> None:
    env = {"MCP_TODO_DATA_DIR": str(tmp_path / "data"), "MCP_TODO_USER": "desktop", "MCP_TODO_TIMEZONE": "UTC"}
    log = tmp_path / "stderr.log"
    async with stdio_session(env, tmp_path, log) as first:
        mine = await call(first, "add_task", title="from the first process")
        async with stdio_session(env, tmp_path, log) as second:
            listed = await call(second, "list_tasks")
            assert [t["title"] for t in listed["tasks"]] == ["from the first process"]
            await call(second, "add_task", title="from the second process")
        listed = await call(first, "list_tasks")
        assert [t["title"] for t in listed["tasks"]] == ["from the second process", mine["title"]]
    # Both gone: the next start reopens the same data.
    async with stdio_session(env, tmp_path, log) as third:
        assert (await call(third, "list_tasks"))["total"] == 2
    assert (tmp_path / "data" / "pgdata").is_dir()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stdio_server_stops_gracefully_on_a_signal(
    sig: signal.Signals, db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await db_factory.create()
    env = clean_env(DATABASE_URL=dsn)
    log = tmp_path / "stderr.log"
    with log.open("w") as errlog:
        process = await asyncio.create_subprocess_exec(
            MCP_TODO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errlog,
            env=env,
            cwd=tmp_path,
        )
        try:
            await wait_until_serving(process, log)
            process.send_signal(sig)
            assert await asyncio.wait_for(process.wait(), timeout=30) == 0, log.read_text()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert "stop requested" in log.read_text()
    assert "Traceback" not in log.read_text()


async def test_every_unreadable_line_gets_an_error_reply_and_the_session_goes_on(
    db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    """A line that is not JSON, nested past the parser's limit, not UTF-8, or not JSON-RPC is answered with a
    JSON-RPC error (id null), as HTTP answers such a body; the next good line is served as usual."""
    dsn = await db_factory.create()
    log = tmp_path / "stderr.log"
    deep = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_tasks","arguments":{"x":' + (
        b"[" * 250 + b"]" * 250 + b"}}}"
    )
    bad_lines = {
        b"this is not json": -32700,
        deep: -32700,
        b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"add_task","arguments":{"title":"\xff"}}}': (
            -32700
        ),
        b'{"hello": "world"}': -32600,
        b"[1, 2]": -32600,
    }
    with log.open("w") as errlog:
        process = await asyncio.create_subprocess_exec(
            MCP_TODO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errlog,
            env=clean_env(DATABASE_URL=dsn, MCP_TODO_USER="desktop"),
            cwd=tmp_path,
        )
    assert process.stdin is not None and process.stdout is not None
    stdout = process.stdout

    async def send(line: bytes) -> None:
        assert process.stdin is not None
        process.stdin.write(line + b"\n")
        await process.stdin.drain()

    async def reply() -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(stdout.readline(), 30))
        return message

    try:
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        }
        await send(json.dumps(initialize).encode())
        assert (await reply())["id"] == 1
        await send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        for line, code in bad_lines.items():
            await send(line)
            answer = await reply()
            assert answer["id"] is None and answer["error"]["code"] == code, (line[:40], answer)
        await send(b"   ")  # a blank line is no message: skipped, not answered
        await send(b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_tasks","arguments":{}}}')
        listed = await reply()
        assert listed["id"] == 2 and listed["result"]["structuredContent"]["total"] == 0, listed
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM tasks") == 0  # the "\xff" title was never stored
    finally:
        await conn.close()
    assert "Traceback" not in log.read_text()
    assert "mcpServers" not in log.read_text()  # no greeting when a host, not a terminal, is on standard input


async def test_typed_in_a_terminal_it_says_what_it_is_and_how_to_connect(
    db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await db_factory.create()
    log = tmp_path / "stderr.log"
    controller, terminal = os.openpty()  # standard input a terminal, as when a person types `mcp-todo`
    try:
        with log.open("w") as errlog:
            process = await asyncio.create_subprocess_exec(
                MCP_TODO,
                stdin=terminal,
                stdout=asyncio.subprocess.PIPE,
                stderr=errlog,
                env=clean_env(DATABASE_URL=dsn, MCP_TODO_TIMEZONE="Europe/Paris"),
                cwd=tmp_path,
            )
        try:
            await wait_until_serving(process, log)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=30) == 0, log.read_text()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    finally:
        os.close(controller)
        os.close(terminal)
    text = log.read_text()
    greeting = text.split("\nts=", 1)[0]
    assert greeting.startswith("mcp-todo ") and "MCP" in greeting and "Claude Desktop" in greeting
    snippet = json.loads(greeting[greeting.index("{") : greeting.rindex("}") + 1])
    server = snippet["mcpServers"]["todo"]
    assert await asyncio.to_thread(os.path.samefile, server["command"], MCP_TODO)
    assert server["env"] == {"MCP_TODO_TIMEZONE": "Europe/Paris"}
    assert process.stdout is not None and await process.stdout.read() == b""  # nothing of it on the protocol stream


async def test_a_fresh_servers_first_phrase_does_not_hold_its_loop(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    """dateparser compiles its time-zone expressions on its first reading (0.17 s on an idle machine, 0.46 s seen on
    a busy one, holding the GIL): a fresh server pays that in a worker thread, so the first call in words blocks no
    other user. Watched at 100 ms here, not the suite's 250, so the check does not depend on the machine being busy;
    the log is not a `*.log` file, so the suite's own check leaves it to this test."""
    dsn = await db_factory.create()
    env = {
        "DATABASE_URL": dsn,
        "MCP_TODO_USER": "desktop",
        "MCP_TODO_TIMEZONE": "Europe/London",
        "MCP_TODO_LOOP_WATCHDOG_MS": "100",
    }
    log = tmp_path / "stderr.txt"
    async with stdio_session(env, tmp_path, log) as client:
        await client.list_tools()
        task = await call(client, "add_task", title="Call the plumber", due_date="tomorrow 9am")
        assert task["due_date"][11:19] == "09:00:00", task  # the phrase was read
    assert loop_blocked_lines(log.read_text()) == []
