"""What the model reads: lean results and their text, argument errors as VALIDATION_ERROR, valid JSON
Schema 2020-12 that states every bound the server enforces, and how a time in words was understood."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import Clock, Tools, first_text, server_for, tools_of

NOW = datetime(2027, 3, 10, 19, 0, tzinfo=UTC)  # Wednesday 14:00 in New York, the test user's zone


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, clock=Clock(NOW))) as client:
        yield client


async def _listed(tools: Tools) -> dict[str, Any]:
    return {tool.name: tool for tool in (await tools.client.list_tools()).tools}


async def test_every_schema_is_valid_json_schema_2020_12_and_closed(tools: Tools) -> None:
    for name, tool in (await _listed(tools)).items():
        Draft202012Validator.check_schema(tool.input_schema)
        assert tool.output_schema is not None
        Draft202012Validator.check_schema(tool.output_schema)
        assert tool.input_schema["additionalProperties"] is False, name
        assert not _keywords({"ge", "le", "title"}, [tool.input_schema, tool.output_schema]), name


def _keywords(wanted: set[str], node: Any) -> set[str]:
    """The keywords in `wanted` used anywhere in a schema (property names are not keywords)."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= _keywords(wanted, item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for prop in value.values():
                    found |= _keywords(wanted, prop)
                continue
            if key in wanted:
                found.add(key)
            found |= _keywords(wanted, value)
    return found


@pytest.mark.parametrize(
    ("tool", "arguments", "starts"),
    [
        ("list_tasks", {"status": "bogus"}, 'VALIDATION_ERROR: status: got "bogus"; allowed: one of pending'),
        ("list_tasks", {"limit": "abc"}, 'VALIDATION_ERROR: limit: got "abc"; allowed: an integer from 1 to 100'),
        ("list_tasks", {"limit": 1000}, "VALIDATION_ERROR: limit: got 1000; allowed: an integer from 1 to 100"),
        ("add_task", {}, "VALIDATION_ERROR: title: missing; give title (one task), or tasks"),
        ("add_task", {"title": "x", "priority": "huge"}, 'VALIDATION_ERROR: priority: got "huge"; allowed: one of'),
        ("complete_task", {"task_id": -1}, "VALIDATION_ERROR: task_id: got -1; allowed: an integer of at least 1"),
        (
            "add_task",
            {"title": "x", "due": "tomorrow"},
            "VALIDATION_ERROR: due: unknown argument (did you mean due_date?)",
        ),
    ],
)
async def test_argument_errors_are_one_validation_error_line(
    tools: Tools, tool: str, arguments: dict[str, Any], starts: str
) -> None:
    message = await tools.error(tool, arguments)
    assert message.startswith(starts), message
    assert "\n" not in message and "pydantic" not in message and "Error executing" not in message
    assert (await tools.list_tasks())["total"] == 0


async def test_what_was_given_is_cut_short(tools: Tools) -> None:
    message = await tools.error("list_tasks", {"status": "x" * 500})
    assert len(message) < 200 and "…" in message


async def test_every_published_bound_is_the_enforced_one(tools: Tools) -> None:
    """For each bounded parameter: one past the bound is refused naming it, the bound itself is not (it may fail
    later for another reason, e.g. a missing id, but never as an argument of the wrong size)."""
    base: dict[str, dict[str, Any]] = {"add_task": {"title": "x"}, "search_tasks": {"query": "x"}}
    checked = 0
    for name, tool in (await _listed(tools)).items():
        required: dict[str, Any] = {p: 1 for p in tool.input_schema.get("required", [])} | base.get(name, {})
        for param, schema in tool.input_schema["properties"].items():
            for key, past, at in _probes(schema):
                refused = await tools.raw(name, {**required, param: past})
                text = first_text(refused)
                assert refused.is_error and text.startswith(f"VALIDATION_ERROR: {param}"), (name, param, key, text)
                fine = first_text(await tools.raw(name, {**required, param: at}))
                assert not (fine.startswith(f"VALIDATION_ERROR: {param}") and "allowed:" in fine), (name, param, key)
                checked += 1
    assert checked >= 40


def _probes(schema: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    probes: list[tuple[str, Any, Any]] = []
    if "minimum" in schema:
        probes.append(("minimum", schema["minimum"] - 1, schema["minimum"]))
    if "maximum" in schema:
        probes.append(("maximum", schema["maximum"] + 1, schema["maximum"]))
    if "maxLength" in schema:
        probes.append(("maxLength", "x" * (schema["maxLength"] + 1), "x" * schema["maxLength"]))
    if "minLength" in schema:
        probes.append(("minLength", "", "x" * schema["minLength"]))
    if "maxItems" in schema:
        items = schema.get("items", {})
        # Distinct items (a batch refuses duplicates), objects where the items are (add_task's tasks).
        item = (lambda i: {"title": f"t{i}"}) if "$ref" in items or items.get("type") == "object" else (lambda i: i + 1)
        probes.append(
            ("maxItems", [item(i) for i in range(schema["maxItems"] + 1)], [item(i) for i in range(schema["maxItems"])])
        )
    if "enum" in schema:
        probes.append(("enum", "not-in-the-enum", next(v for v in schema["enum"] if v is not None)))
    return probes


async def test_results_are_lean_and_valid_against_their_schemas(tools: Tools) -> None:
    listed = await _listed(tools)
    result = await tools.raw("add_task", {"title": "Buy milk", "due_date": "friday 9am", "priority": "high"})
    content = result.structured_content
    assert content is not None
    Draft202012Validator(listed["add_task"].output_schema).validate(content)
    assert set(content) == {
        "id",
        "title",
        "priority",
        "due_date",
        "remind_at",
        "created_at",
        "understood",
    }
    assert content["due_date"] == "2027-03-12T09:00:00-05:00"
    assert content["understood"] == {"due_date": "2027-03-12T09:00:00-05:00 (Friday)"}
    text = first_text(result)
    assert text.startswith("#1 Buy milk · high · due Fri 2027-03-12 09:00 · remind 08:00")
    assert "understood: due_date = 2027-03-12T09:00:00-05:00 (Friday)" in text

    listing = await tools.raw("list_tasks", {"due_before": "end of month"})
    assert listing.structured_content is not None
    Draft202012Validator(listed["list_tasks"].output_schema).validate(listing.structured_content)
    assert listing.structured_content["time_zone"] == "America/New_York"
    assert listing.structured_content["now"] == "2027-03-10T14:00:00-05:00"
    assert first_text(listing).startswith("1 of 1 task · now Wed 2027-03-10 14:00 America/New_York")


async def test_recurrence_in_words_is_stored_as_rrule(tools: Tools) -> None:
    task = await tools.add_task(title="Standup", due_date="monday 9:30am", recurrence_rule="every weekday")
    assert task["recurrence_rule"] == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
    message = await tools.error("add_task", {"title": "x", "due_date": "monday", "recurrence_rule": "now and then"})
    assert message.startswith("INVALID_RECURRENCE_RULE: ") and "FREQ=" in message


async def test_an_ambiguous_time_is_refused_not_guessed(tools: Tools) -> None:
    message = await tools.error("add_task", {"title": "x", "due_date": "03/04"})
    assert message.startswith("VALIDATION_ERROR: due_date: ") and "2027-03-12T09:00" in message
