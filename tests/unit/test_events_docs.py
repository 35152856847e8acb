"""The published contract (docs/events/) is what the models say, and the events we build fit it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import yaml

from mcp_todo.events import (
    EVENT_TYPES,
    GROUP_NOTIFIER,
    GROUP_RECURRER,
    REMINDER_DUE,
    TASK_COMPLETED,
    TASK_UPDATED,
    TOPICS,
    Envelope,
    ReminderDue,
    TaskCompleted,
)
from mcp_todo.events_docs import DOCS_DIR, REGENERATE, asyncapi, event_schema, main, render, stale_files


def test_the_committed_docs_match_the_models() -> None:
    stale = stale_files()
    assert not stale, f"docs/events/ differs from mcp_todo/events.py in {stale}: run `{REGENERATE}`"


def test_the_drift_check_notices_an_edited_file(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--check", "--out", str(tmp_path)]) == 0
    schema = tmp_path / "schemas" / "task.completed.json"
    schema.write_text(schema.read_text().replace('"time_zone"', '"zone"'))
    assert stale_files(tmp_path) == ["schemas/task.completed.json"]
    assert main(["--check", "--out", str(tmp_path)]) == 1


def test_rendering_is_deterministic() -> None:
    assert render() == render()
    assert set(render()) == {"asyncapi.yaml", *(f"schemas/{t}.json" for t in EVENT_TYPES)}
    assert DOCS_DIR.name == "events" and DOCS_DIR.parent.name == "docs"


def test_the_asyncapi_document_describes_topics_messages_keys_and_groups() -> None:
    document = yaml.safe_load(render()["asyncapi.yaml"])
    assert document == asyncapi()  # plain YAML: no anchors or tags
    assert document["asyncapi"] == "3.0.0"
    assert {c["address"] for c in document["channels"].values()} == {t.name for t in TOPICS}
    messages = document["components"]["messages"]
    assert {m["name"] for m in messages.values()} == EVENT_TYPES
    for message in messages.values():
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        [envelope, typed] = message["payload"]["allOf"]
        assert envelope == {"$ref": "#/components/schemas/EventEnvelope"}
        assert (
            typed["properties"]["data"]["$ref"].removeprefix("#/components/schemas/")
            in document["components"]["schemas"]
        )
    receive = {
        op["channel"]["$ref"]: op["bindings"]["kafka"]["groupId"]["enum"]
        for op in document["operations"].values()
        if op["action"] == "receive"
    }
    assert receive == {"#/channels/taskRecurrence": [GROUP_RECURRER], "#/channels/taskReminders": [GROUP_NOTIFIER]}
    assert {op["action"] for op in document["operations"].values()} == {"send", "receive"}


def test_built_events_validate_against_the_published_schemas() -> None:
    at = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
    events = [
        Envelope.of(
            TASK_COMPLETED,
            TaskCompleted(completed_at=at, due_date=at, recurrence_rule="FREQ=DAILY", series_id=3, time_zone="UTC"),
            user_id="alice",
            task_id=3,
        ),
        Envelope.of(REMINDER_DUE, ReminderDue(task_id=3, title="x", remind_at=at), user_id="alice", task_id=3),
        Envelope.of(TASK_UPDATED, {"title": "y", "category": None}, user_id="alice", task_id=3),
    ]
    for event in events:
        schema = json.loads((DOCS_DIR / "schemas" / f"{event.event_type}.json").read_text())
        jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(event.to_dict())


def test_the_schemas_reject_what_the_models_reject() -> None:
    validator = jsonschema.Draft202012Validator(event_schema(REMINDER_DUE))
    good = Envelope.of(
        REMINDER_DUE,
        ReminderDue(task_id=3, title="x", remind_at=datetime(2027, 3, 10, tzinfo=UTC)),
        user_id="alice",
        task_id=3,
    ).to_dict()
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "event_type": "task.created"})
    assert not validator.is_valid({**good, "data": {"task_id": 3, "title": "x"}})
    assert validator.is_valid({**good, "data": {**good["data"], "added_later": 1}})  # additive changes are allowed
