"""One side of bench/lean_bench.py, run as a script against one source tree (`PYTHONPATH=<tree>`): what the model
reads and how long it takes, through the official MCP client, on an already seeded database. Prints one JSON object.

Two ways of calling: in process (the client on the server's own event loop, no transport: the server's work plus the
client's validation of each result), and as a host does it, over stdio to a `python -m mcp_todo` process of the same
tree (the transport, both processes' JSON, the client's validation). For the stdio calls it also reads the server's
own time per call from its log (`duration_ms` of each "tool call" line) and times the client's validation of each
result against the tool's output schema the way the SDK's client does it (a compiled jsonschema validator).

It imports only `mcp_todo`, bench/core_bench.py and the SDK, so it runs the same against this tree and an older
commit's.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jsonschema
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import TextContent

from bench.core_bench import timed  # the same in the older tree: both sides time alike
from mcp_todo.db.engine import create_engine
from mcp_todo.server.app import build_server
from mcp_todo.server.state import AppState
from mcp_todo.settings import Settings

WORDS = ("report", "budget", "meeting", "invoice", "dentist", "groceries", "review", "deploy", "garden", "taxes")
# The realistic list of tests/e2e/test_lean_sizes.py: half with due dates, a quarter repeating, tags and categories.
TITLES = ("Buy milk", "Call the dentist", "Renew passport", "Team standup", "Pay rent", "Water plants", "Review PR")
LIST_ARGUMENTS: dict[str, Any] = {"status": "pending", "sort_by": "due_date", "sort_order": "asc", "limit": 50}
_DURATION = re.compile(r'msg="tool call".* tool=(\w+).* duration_ms=([0-9.]+)')


def text_of(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def children_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process's children: the stdio server. CPU time, unlike the
    time a call takes, hardly changes with how busy a shared machine is."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def cpu_per_call(samples: int, action: Any) -> tuple[list[float], float, float]:
    """`timed`, and the CPU milliseconds per call of this process and of the server process over the timed calls."""
    own, server = time.process_time(), children_cpu_s()
    times = await timed(samples, action)
    # timed() makes 20 warm-up calls first, inside the CPU window.
    calls = samples + min(20, samples)
    return times, (time.process_time() - own) * 1000 / calls, (children_cpu_s() - server) * 1000 / calls


def settings_for(dsn: str, user: str, zone: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, DATABASE_URL=dsn, MCP_TODO_USER=user, MCP_TODO_TIMEZONE=zone, KAFKA_BOOTSTRAP_SERVERS=""
    )


def compact_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


async def realistic_list(client: Client) -> tuple[int, int, Any]:
    """(text bytes, structured bytes, structured content) of a list of 50 realistic tasks (as
    tests/e2e/test_lean_sizes.py makes them)."""
    await client.call_tool("add_task", {"title": "Buy milk"})
    categories = []
    for name in ("Home", "Work", "Errands"):
        categories.append((await client.call_tool("add_category", {"name": name})).structured_content["id"])
    tags = []
    for name in ("shopping", "urgent", "family", "q3"):
        tags.append((await client.call_tool("add_tag", {"name": name})).structured_content["id"])
    for i in range(49):
        arguments: dict[str, Any] = {
            "title": f"{TITLES[i % len(TITLES)]} {i}",
            "priority": ("low", "medium", "high", "urgent")[i % 4],
            "category_id": categories[i % 3],
            "tag_ids": [tags[i % 4], tags[(i + 1) % 4]] if i % 3 else [tags[i % 4]],
        }
        if i % 2 == 0:
            arguments["due_date"] = f"2027-04-{1 + i % 28:02d}T09:30"
            if i % 4 == 0:
                arguments["recurrence_rule"] = "every week on monday" if i % 8 else "FREQ=MONTHLY;BYMONTHDAY=1"
        if i % 5 == 0:
            arguments["description"] = "Bring the blue folder and the receipts from last month."
        await client.call_tool("add_task", arguments)
    page = await client.call_tool("list_tasks", {"limit": 50})
    return len(text_of(page).encode()), compact_bytes(page.structured_content), page.structured_content


def validation_ms(schema: dict[str, Any], content: Any, repeat: int = 200) -> list[float]:
    """Times of validating `content` against `schema` with a compiled validator, as the SDK's client does."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        errors = list(validator.iter_errors(content))
        times.append((time.perf_counter() - started) * 1000)
        assert not errors, errors[0]
    return times


async def over_stdio(dsn: str, user: str, zone: str, samples: int) -> dict[str, Any]:
    """add_task, list_tasks (50 of the user's 10,000), search_tasks and complete_task as a host calls them: the
    official client over stdio to a server process of this tree. Per tool: the client's times, the server's own (its
    log), and the client's validation of the results it got."""
    tree = os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="mcp-todo-lean-") as tmp:
        log = Path(tmp) / "stderr.log"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": tree,
            "DATABASE_URL": dsn,
            "MCP_TODO_USER": user,
            "MCP_TODO_TIMEZONE": zone,
        }
        params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_todo"], env=env, cwd=tmp)
        results: dict[str, list[Any]] = {"add_task": [], "list_tasks": [], "search_tasks": [], "complete_task": []}
        with log.open("a") as errlog:
            async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60) as client:
                schemas = {tool.name: tool.output_schema for tool in (await client.list_tools()).tools}
                added: list[int] = []

                async def add(i: int) -> None:
                    result = await client.call_tool(
                        "add_task", {"title": f"host task {i}", "due_date": "2027-03-10T09:00", "priority": "high"}
                    )
                    added.append(result.structured_content["id"])
                    results["add_task"].append(result.structured_content)

                async def listing(i: int) -> None:
                    result = await client.call_tool("list_tasks", LIST_ARGUMENTS)
                    results["list_tasks"].append(result.structured_content)

                queries = [" ".join(random.Random(i).choices(WORDS, k=2)) for i in range(samples + 20)]

                async def search(i: int) -> None:
                    result = await client.call_tool("search_tasks", {"query": queries[i], "limit": 20})
                    results["search_tasks"].append(result.structured_content)

                to_complete = iter(added)

                async def complete(i: int) -> None:
                    result = await client.call_tool("complete_task", {"task_id": next(to_complete)})
                    results["complete_task"].append(result.structured_content)

                host: dict[str, list[float]] = {}
                cpu: dict[str, dict[str, float]] = {}
                for name, action in (
                    ("add_task", add),
                    ("list_tasks", listing),
                    ("search_tasks", search),
                    ("complete_task", complete),
                ):
                    host[name], client_cpu, server_cpu = await cpu_per_call(samples, action)
                    cpu[name] = {"client": client_cpu, "server": server_cpu}
        server: dict[str, list[float]] = {name: [] for name in host}
        for match in _DURATION.finditer(log.read_text()):
            if match.group(1) in server:
                server[match.group(1)].append(float(match.group(2)))
    validation: dict[str, list[float]] = {}
    for name, contents in results.items():
        validator = jsonschema.validators.validator_for(schemas[name])(schemas[name])
        times = []
        for content in contents[-samples:]:
            started = time.perf_counter()
            errors = list(validator.iter_errors(content))
            times.append((time.perf_counter() - started) * 1000)
            assert not errors, errors[0]
        validation[name] = times
    # The log has every call, warm-up included: the timed ones are the last `samples`.
    return {
        "host_ms": host,
        "cpu_ms": cpu,
        "server_ms": {name: times[-samples:] for name, times in server.items()},
        "validate_ms": validation,
    }


async def measure(dsn: str, user: str, zone: str, samples: int, sizes_user: str) -> dict[str, Any]:
    settings = settings_for(dsn, user, zone)
    engine = create_engine(dsn)
    try:
        state = AppState(settings=settings, engine=engine, dsn=dsn, embedded=False)
        async with Client(build_server(settings, state=state)) as client:
            listed = await client.list_tools()
            tools = json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools])
            arguments = {"status": "pending", "sort_by": "due_date", "sort_order": "asc", "limit": 50}
            page = await client.call_tool("list_tasks", arguments)
            added = await client.call_tool("add_task", {"title": "Buy milk"})
            started = time.process_time()
            list_ms = await timed(samples, lambda i: client.call_tool("list_tasks", arguments))
            list_cpu = (time.process_time() - started) * 1000 / (samples + min(20, samples))
            queries = [" ".join(random.Random(i).choices(WORDS, k=2)) for i in range(samples + 20)]
            started = time.process_time()
            search_ms = await timed(
                samples, lambda i: client.call_tool("search_tasks", {"query": queries[i], "limit": 20})
            )
            search_cpu = (time.process_time() - started) * 1000 / (samples + min(20, samples))
        sizes_state = AppState(settings=settings_for(dsn, sizes_user, zone), engine=engine, dsn=dsn, embedded=False)
        async with Client(build_server(sizes_state.settings, state=sizes_state)) as client:
            realistic_text, realistic_structured, realistic = await realistic_list(client)
            schema = {tool.name: tool.output_schema for tool in (await client.list_tools()).tools}["list_tasks"]
            realistic_validation = validation_ms(schema or {}, realistic)
    finally:
        await engine.dispose()
    return {
        "realistic_text_bytes": realistic_text,
        "realistic_structured_bytes": realistic_structured,
        "realistic_validate_ms": realistic_validation,
        "realistic_list": realistic,
        "list_schema": schema,
        **await over_stdio(dsn, user, zone, samples),
        "tools_list_bytes": len(tools.encode()),
        "list_text_bytes": len(text_of(page).encode()),
        "list_structured_bytes": len(json.dumps(page.structured_content, separators=(",", ":")).encode()),
        "add_text_bytes": len(text_of(added).encode()),
        "list_ms": list_ms,
        "search_ms": search_ms,
        "list_cpu_ms": list_cpu,
        "search_cpu_ms": search_cpu,
    }


if __name__ == "__main__":
    dsn, user, zone, count, sizes_user = sys.argv[1:6]
    sys.stdout.write(json.dumps(asyncio.run(measure(dsn, user, zone, int(count), sizes_user))) + "\n")
