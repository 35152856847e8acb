"""The agenda as an MCP App (the `io.modelcontextprotocol/ui` extension, docs/agenda.md): `get_upcoming_tasks` and
`list_tasks` name `ui://todo/agenda.html` in their `_meta.ui.resourceUri`, and a host that renders apps shows that page
beside the result; every other host reads the tools' text as before.

The page is built from `apps/agenda/` (the ext-apps SDK, bundled into one file with its scripts and styles inline)
and committed as `ui/agenda.html`, so the server needs no Node."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any, Final

from mcp.server.apps import Apps

AGENDA_URI: Final = "ui://todo/agenda.html"
AGENDA_TOOLS: Final = frozenset({"get_upcoming_tasks", "list_tasks"})


@cache
def agenda_html() -> str:
    """The built page, as shipped inside the package (read once a process: every server built shares it)."""
    return files("mcp_todo.server").joinpath("ui", "agenda.html").read_text(encoding="utf-8")


def agenda_meta(tool: str) -> dict[str, Any] | None:
    """The `_meta` of `tool`: the agenda page for the two tools that show tasks by day, none for the rest."""
    return {"ui": {"resourceUri": AGENDA_URI}} if tool in AGENDA_TOOLS else None


def agenda_extension() -> Apps:
    """The extension that advertises Apps support and serves the page (`text/html;profile=mcp-app`). It contributes
    no tools: the two tools are the registry's, stamped with `agenda_meta`."""
    apps = Apps()
    apps.add_html_resource(
        AGENDA_URI,
        agenda_html(),
        name="agenda",
        title="Agenda",
        description="Your tasks by day, to tick off or snooze (an MCP App)",
        prefers_border=False,
    )
    return apps
