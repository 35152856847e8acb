"""MCP over stdio, with an answer for every line the host sends.

The SDK's stdio transport drops a line it cannot read — not JSON, nested deeper than the parser's limit, not a
JSON-RPC message — without a reply, so the host waits until its own timeout; and it decodes invalid UTF-8 as U+FFFD,
storing text the user never sent. Here the SDK's transport reads from `CheckedLines`, which answers each such line
with a JSON-RPC error (`id: null`: the id of a line that cannot be read is unknown), as the HTTP transport answers such
a body, and goes on with the next line.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, cast

import anyio
import anyio.to_thread
import pydantic
import pydantic_core
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared._stream_protocols import WriteStream
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, jsonrpc_message_adapter

from mcp_todo.server.state import AppState

log = logging.getLogger(__name__)


def line_error(raw: bytes) -> ErrorData | None:
    """What is wrong with one line of input, as the JSON-RPC error that answers it; None for a JSON-RPC message."""
    try:
        # Strict UTF-8 and the same nesting limit as the HTTP transport's parser.
        value = pydantic_core.from_json(raw)
    except ValueError as err:
        return ErrorData(code=PARSE_ERROR, message=f"Parse error: {err}")
    try:
        jsonrpc_message_adapter.validate_python(value, by_name=False)
    except pydantic.ValidationError:
        return ErrorData(code=INVALID_REQUEST, message="Invalid Request: not a JSON-RPC 2.0 message")
    return None


class CheckedLines:
    """The lines of `source` that are JSON-RPC messages, for the SDK's stdio transport to read; every other line is
    answered on the transport's write stream (blank lines are skipped)."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._replies: WriteStream[SessionMessage] | None = None
        self._replies_set = anyio.Event()

    def answer_on(self, replies: WriteStream[SessionMessage]) -> None:
        """The transport's write stream, which exists only once the transport runs (and reads from us)."""
        self._replies = replies
        self._replies_set.set()

    def __aiter__(self) -> CheckedLines:
        return self

    async def __anext__(self) -> str:
        while True:
            raw = await anyio.to_thread.run_sync(self._source.readline)
            if not raw:
                raise StopAsyncIteration
            if not raw.strip():
                continue
            error = line_error(raw)
            if error is None:
                return raw.decode()
            log.info("stdio line refused", extra={"code": error.code, "bytes": len(raw)})
            await self._replies_set.wait()
            assert self._replies is not None
            await self._replies.send(SessionMessage(JSONRPCError(jsonrpc="2.0", id=None, error=error)))


@contextmanager
def claimed_stdin() -> Iterator[BinaryIO]:
    """Standard input on a descriptor of its own, fd 0 reading /dev/null meanwhile (as the SDK's transport arranges
    when it reads stdin itself), so nothing else in the process, nor a child, reads the host's messages."""
    try:
        private_fd = os.dup(0)
        devnull = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        yield sys.stdin.buffer
        return
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        # closefd=False: a reader thread left blocked on it after a stop must never see the descriptor reused.
        yield os.fdopen(private_fd, "rb", closefd=False)
    finally:
        os.dup2(private_fd, 0)


async def run_stdio(server: MCPServer[AppState]) -> None:
    """`server.run_stdio_async()`, reading through `CheckedLines`."""
    with claimed_stdin() as source:
        lines = CheckedLines(source)
        # The transport reads its input with `async for line in stdin`, which is all CheckedLines provides.
        async with stdio_server(stdin=cast("anyio.AsyncFile[str]", lines)) as (read_stream, write_stream):
            lines.answer_on(write_stream)
            # What run_stdio_async does with the streams it opens; the SDK offers no public way to pass our own.
            lowlevel = server._lowlevel_server
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
