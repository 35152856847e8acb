"""One side of bench/lean_bench.py, run as a script against one source tree (`PYTHONPATH=<tree>`): what the model
reads and how long it takes, through the official MCP client, on an already seeded database. Prints one JSON object.

It imports only `mcp_todo`, bench/core_bench.py and the SDK, so it runs the same against this tree and an older
commit's.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any

from mcp.client import Client
from mcp_types import TextContent

from bench.core_bench import timed  # the same in the older tree: both sides time alike
from mcp_todo.db.engine import create_engine
from mcp_todo.server.app import build_server
from mcp_todo.server.state import AppState
from mcp_todo.settings import Settings

WORDS = ("report", "budget", "meeting", "invoice", "dentist", "groceries", "review", "deploy", "garden", "taxes")


def text_of(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def measure(dsn: str, user: str, zone: str, samples: int) -> dict[str, Any]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, DATABASE_URL=dsn, MCP_TODO_USER=user, MCP_TODO_TIMEZONE=zone, KAFKA_BOOTSTRAP_SERVERS=""
    )
    engine = create_engine(dsn)
    try:
        state = AppState(settings=settings, engine=engine, dsn=dsn, embedded=False)
        async with Client(build_server(settings, state=state)) as client:
            listed = await client.list_tools()
            tools = json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools])
            arguments = {"status": "pending", "sort_by": "due_date", "sort_order": "asc", "limit": 50}
            page = await client.call_tool("list_tasks", arguments)
            added = await client.call_tool("add_task", {"title": "Buy milk"})
            list_ms = await timed(samples, lambda i: client.call_tool("list_tasks", arguments))
            queries = [" ".join(random.Random(i).choices(WORDS, k=2)) for i in range(samples + 20)]
            search_ms = await timed(
                samples, lambda i: client.call_tool("search_tasks", {"query": queries[i], "limit": 20})
            )
    finally:
        await engine.dispose()
    return {
        "tools_list_bytes": len(tools.encode()),
        "list_text_bytes": len(text_of(page).encode()),
        "list_structured_bytes": len(json.dumps(page.structured_content, separators=(",", ":")).encode()),
        "add_text_bytes": len(text_of(added).encode()),
        "list_ms": list_ms,
        "search_ms": search_ms,
    }


if __name__ == "__main__":
    dsn, user, zone, count = sys.argv[1:5]
    sys.stdout.write(json.dumps(asyncio.run(measure(dsn, user, zone, int(count)))) + "\n")
