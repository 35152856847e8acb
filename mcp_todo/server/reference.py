"""The tools reference (`docs/tools.md`), rendered from the registered tools themselves, so it cannot drift:

    python -m mcp_todo.server.reference > docs/tools.md

A test renders it again and compares it with the committed file.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from mcp_types import Tool

_CONSTRAINTS = {
    "minLength": "≥ {} chars",
    "maxLength": "≤ {} chars",
    "minimum": "≥ {}",
    "maximum": "≤ {}",
    "minItems": "≥ {} items",
    "maxItems": "≤ {} items",
    "pattern": "matches `{}`",
}

HEADER = """# Tools reference

mcp-todo serves exactly 17 tools. This page is rendered from the running registry
(`python -m mcp_todo.server.reference > docs/tools.md`; a test fails when it is stale), so names, bounds and hints
are the ones a host sees in `tools/list`.

The user is never an argument: a stdio server acts for `MCP_TODO_USER`, an HTTP server for the authenticated caller,
and another user's id is `NOT_FOUND` exactly like a missing one. Times without an offset are in the user's zone; a
date alone means 23:59:59 that day. Returned times are in the task's zone with a numeric offset, to the second. In
`update_task` an omitted field is left alone and `null` clears it. An argument the schema does not name (a key of a
batch item too), or one that does not fit it, is refused as one line: `VALIDATION_ERROR: limit: got 1000; allowed: an
integer from 1 to 100`; so is one task's field sent beside `tasks`.

**Times in words.** `due_date`, `due_after`, `due_before` and `remind_at` take ISO 8601 or a phrase, read in the
user's zone at the server's clock and preferring the future: `tomorrow 9am`, `next friday`, `in 2 hours`, `end of
month`, `monday 14:30`, `25 dec`, `tonight`. A phrase naming a day but no time means the end of that day. What could
be read two ways (`03/04`, `at 9`), has words left over, a time or offset that is none (`13pm`, `25:99`, `+99:00`),
two times (`9am 5pm`) or a month without its day (`jan 32`, `december`) is a `VALIDATION_ERROR` with an ISO example,
never a guess. A phrase has at most 8 words. A result that
took a time says how it was read, in `understood` (`"due_date": "2027-03-12T09:00:00+01:00 (Friday)"`) and in its text.

**Recurrence in words.** `recurrence_rule` takes an RRULE or a phrase turned into one: `daily`, `every 3 days`,
`every weekday`, `every 2 weeks on monday and thursday`, `monthly on the last friday`, `every month on the 15th`,
`every year on 29 feb`, with an optional `, 10 times` or `until 2027-12-31`. Anything else is
`INVALID_RECURRENCE_RULE`, showing the RRULE form.

**Dependencies and what next.** `blocked_by` (add_task, update_task, batch items) lists the ids of the tasks this
one waits on: at most 20, the user's own, out of the trash, never itself; in `update_task` it replaces the list and
`[]` clears it. A cycle, direct or through any chain, is `CONFLICT` naming it (`#12 → #15 → #12`). A task shows
`blocked_by` (its open blockers: pending and out of the trash) and `blocks` (how many open tasks wait on it), both
absent when empty; completing or trashing a blocker lets its dependents through, reopening or restoring it holds them
again. A parent is not a blocker. `list_tasks(ready=true)` lists the open tasks without an open blocker,
`ready=false` the blocked ones. `list_tasks(sort_by="next")` ranks the open tasks by urgency, those without an open
blocker first, and gives each its `why` (up to three reasons in words: `overdue 2 days`, `unblocks 3`, `high
priority`, `due tomorrow`; a blocked task first says what blocks it); the terms and weights are in docs/next.md.
A recurring task's next occurrence keeps its blockers, each as its series' current occurrence. The other task lists'
output schemas leave `blocked_by` and `blocks` to list_tasks's; their tasks carry them all the same.

**Lean results.** `structuredContent` leaves out what carries nothing: null fields, empty lists, the defaults the
output schema states (`status` pending, `priority` medium, `reminder_sent` false, `offset` 0), and a task's
`time_zone` where it is the user's, `updated_at` while it equals `created_at`; the task lists state the user's
`time_zone` and local time (`now`) once, and give a repeating task's next date only (its own results give five).
Times are to the second. The output schemas mark such fields optional. The text content is a compact rendering for
the model, one line per task:

    #12 Buy milk · high · due Fri 2027-03-12 09:00 · #shopping · @Home · every week on Monday · remind 08:45

Errors are tool results with `isError: true` whose text starts with a stable code and says how to fix the call:
`VALIDATION_ERROR`, `NOT_FOUND`, `CONFLICT`, `LIMIT_EXCEEDED`, `INVALID_RECURRENCE_RULE`, `UNAVAILABLE` (the
database is unreachable: try again), `INTERNAL_ERROR`.

| tool | read-only | destructive | idempotent |
|---|---|---|---|
"""


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a (possibly nullable) schema."""
    options = schema.get("anyOf") or [schema]
    return [option for option in options if option.get("type") != "null"]


def _type_name(schema: dict[str, Any]) -> str:
    names = []
    for option in _branches(schema):
        if "enum" in option:
            names.append(" \\| ".join(f"`{value}`" for value in option["enum"] if value is not None))
        elif "array" in (option.get("type"), *(option.get("type") or ())):
            names.append(f"array of {_type_name(option.get('items', {}))}")
        else:
            kind = option.get("type", "any")
            names.append(kind if isinstance(kind, str) else "/".join(k for k in kind if k != "null"))
    return " or ".join(names) or "any"


def _constraints(schema: dict[str, Any]) -> str:
    found = []
    for option in _branches(schema):
        for key, template in _CONSTRAINTS.items():
            if key in option:
                found.append(template.format(option[key]))
        items = option.get("items")
        if isinstance(items, dict):
            found += [f"each {part}" for part in _constraints(items).split(", ") if part]
    return ", ".join(found)


def _default(name: str, schema: dict[str, Any], required: set[str]) -> str:
    if name in required:
        return "required"
    if "default" not in schema or schema["default"] is None:
        return "optional"
    return f"default `{json.dumps(schema['default'])}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(tools: list[Tool]) -> str:
    lines = [HEADER.rstrip("\n")]
    for tool in tools:
        hints = tool.annotations
        assert hints is not None, f"{tool.name} has no annotations"
        # An absent hint is the MCP default (destructive true, idempotent false); a read-only tool is neither
        # destructive nor anything but idempotent.
        read_only = bool(hints.read_only_hint)
        flags = [read_only, not read_only and hints.destructive_hint is not False, read_only or hints.idempotent_hint]
        lines.append(f"| [`{tool.name}`](#{tool.name}) | " + " | ".join("yes" if f else "no" for f in flags) + " |")
    for tool in tools:
        lines += ["", f"## {tool.name}", "", _cell(tool.description or "").strip(), ""]
        properties: dict[str, Any] = tool.input_schema.get("properties", {})
        required = set(tool.input_schema.get("required", []))
        if properties:
            lines += ["| parameter | type | | bounds | meaning |", "|---|---|---|---|---|"]
            for name, schema in properties.items():
                lines.append(
                    f"| `{name}` | {_type_name(schema)} | {_default(name, schema, required)} | "
                    f"{_cell(_constraints(schema))} | {_cell(schema.get('description', ''))} |"
                )
        else:
            lines.append("No parameters.")
        output = (tool.output_schema or {}).get("properties", {})
        if output:
            lines += ["", "Returns: " + ", ".join(f"`{name}`" for name in output) + "."]
        app = ((tool.meta or {}).get("ui") or {}).get("resourceUri")
        if app:
            lines += ["", f"A host that renders MCP Apps shows the result in `{app}` ([agenda.md](agenda.md))."]
    return "\n".join(lines) + "\n"


async def registered_tools() -> list[Tool]:
    """The tools as `tools/list` shows them, from a server that is built but not started (nothing connects)."""
    from mcp_todo.server.app import build_server
    from mcp_todo.settings import Settings

    settings = Settings(  # type: ignore[call-arg]  # pydantic-settings takes its fields by alias
        _env_file=None, DATABASE_URL="postgresql://reference@127.0.0.1/none", MCP_TODO_TIMEZONE="UTC"
    )
    return list(await build_server(settings).list_tools())


def main() -> None:
    sys.stdout.write(render(asyncio.run(registered_tools())))


if __name__ == "__main__":
    main()
