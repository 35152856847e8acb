"""What the stdio server imports before it answers `tools/list` (bench/results/startup.md): none of the heavy
modules only a later request, a migration or another transport needs. Each is imported where it is used (in a worker
thread when that is on the event loop), so this keeps them from creeping back into the start."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from mcp.server.mcpserver import server as sdk_server

from mcp_todo.server.app import build_server
from mcp_todo.settings import Settings

# Modules and what needs them: a migration; a reminder's delivery and the notifications resource; HTTP with tokens;
# HTTP at all; an export; Kafka; the first time phrase; the SDK's logging set-up, which ours replaces.
NOT_AT_START = (
    "alembic",
    "apprise",
    "mcp_todo.handlers.reminder_delivery",
    "mcp_todo.server.oauth",
    "mcp_todo.auth",
    "mcp_todo.server.http_server",
    "icalendar",
    "aiokafka",
    "dateparser",
    "rich",
)


def test_the_stdio_start_leaves_the_heavy_modules_for_later() -> None:
    # What `mcp-todo` (stdio) imports and runs up to serving: the command line, logging, the app, a built server.
    code = (
        "import sys, json\n"
        "from mcp_todo.cli import main\n"
        "from mcp_todo.runtime.logs import configure_logging\n"
        "configure_logging()\n"
        "from mcp_todo.server.app import build_server, serve\n"
        "from mcp_todo.settings import Settings\n"
        "build_server(Settings(user='someone', timezone='Europe/Paris'))\n"
        f"print(json.dumps([name for name in {NOT_AT_START!r} if name in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(done.stdout) == []


def test_building_the_server_leaves_configured_logging_and_the_sdk_as_they_were() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        configure = getattr(sdk_server, "configure_logging")  # noqa: B009  # not among the module's exports
        build_server(Settings(user="someone", timezone="Europe/Paris"))
        assert root.handlers == [handler]
        assert getattr(sdk_server, "configure_logging") is configure  # noqa: B009
    finally:
        root.handlers[:] = saved
