"""The published event contract, generated from the payload models in `mcp_todo.events`.

    python -m mcp_todo.events_docs            # rewrite docs/events/asyncapi.yaml and docs/events/schemas/*.json
    python -m mcp_todo.events_docs --check    # exit 1 when the committed files differ from the models

`render()` builds every file in memory (deterministic: no timestamps, fixed key order), so a test can compare it with
what is committed.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import AwareDatetime, BaseModel, Field, JsonValue, TypeAdapter

from mcp_todo.events import (
    EVENT_TYPES,
    GROUP_NOTIFIER,
    GROUP_RECURRER,
    PAYLOAD_TYPES,
    REMINDER_DUE,
    SCHEMA_VERSION,
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_DELETED,
    TASK_RESTORED,
    TASK_UPDATED,
    TOPIC_RECURRENCE,
    TOPIC_REMINDERS,
    TOPIC_TASK_EVENTS,
    TOPICS,
)

DOCS_DIR: Final = Path(__file__).resolve().parent.parent / "docs" / "events"
REGENERATE: Final = "python -m mcp_todo.events_docs"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING_VERSION: Final = "0.5.0"

_SUMMARIES: Final = {
    TASK_CREATED: "A task was created (by a tool, or by the recurrer as a series' next occurrence).",
    TASK_UPDATED: "Fields of a task changed; data holds only the changed fields, with their new values.",
    TASK_COMPLETED: "A task was completed; a recurring one's completion also goes to task-recurrence.",
    TASK_DELETED: (
        "A task was moved to the trash (reason trashed) or removed for good from it (reason purged); data is the task "
        "as it was."
    ),
    TASK_RESTORED: "A task was taken out of the trash; data is the task as restored.",
    REMINDER_DUE: "A task's reminder is due now.",
}
_CHANNEL_MESSAGES: Final = {
    TOPIC_TASK_EVENTS: (TASK_CREATED, TASK_UPDATED, TASK_COMPLETED, TASK_DELETED, TASK_RESTORED),
    TOPIC_RECURRENCE: (TASK_COMPLETED,),
    TOPIC_REMINDERS: (REMINDER_DUE,),
}
_CONSUMERS: Final = {TOPIC_RECURRENCE: GROUP_RECURRER, TOPIC_REMINDERS: GROUP_NOTIFIER}


_EVENT_TYPE_NAMES: list[JsonValue] = [*sorted(EVENT_TYPES)]


class EventEnvelope(BaseModel):
    """Every message's value: UTF-8 JSON. Unknown fields are to be ignored."""

    event_id: uuid.UUID = Field(description="Unique per event; a redelivered event keeps it")
    event_type: str = Field(json_schema_extra={"enum": _EVENT_TYPE_NAMES})
    schema_version: int = Field(description="The contract's version (docs/events.md, versioning)", ge=1)
    occurred_at: AwareDatetime = Field(
        description="When the change committed, RFC 3339 in UTC with Z", json_schema_extra={"pattern": "Z$"}
    )
    user_id: str = Field(description="The task owner")
    task_id: int = Field(description="The task; also the message key, as a decimal string")
    data: dict[str, Any] = Field(description="The event type's payload")


def _camel(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.replace("-", ".").split("."))


def _message_name(event_type: str) -> str:
    return _camel(event_type)[0].lower() + _camel(event_type)[1:]


def _operation_messages(topic_name: str) -> list[dict[str, str]]:
    # A fresh list per operation: YAML would write one shared list as an anchor and an alias.
    channel = _message_name(topic_name)
    return [{"$ref": f"#/channels/{channel}/messages/{_message_name(t)}"} for t in _CHANNEL_MESSAGES[topic_name]]


def _payload_schema(event_type: str, ref_template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the payload's schema, the definitions it refers to), as the producer writes it."""
    schema = TypeAdapter(PAYLOAD_TYPES[event_type]).json_schema(mode="serialization", ref_template=ref_template)
    definitions = schema.pop("$defs", {})
    return schema, definitions


def event_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of one whole message (envelope and payload) of `event_type`."""
    payload, definitions = _payload_schema(event_type, "#/$defs/{model}")
    envelope = EventEnvelope.model_json_schema()
    properties = dict(envelope["properties"])
    properties["event_type"] = {"const": event_type}
    properties["data"] = {**payload, "description": properties["data"]["description"]}
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": event_type,
        "description": _SUMMARIES[event_type],
        "type": "object",
        "properties": properties,
        "required": envelope["required"],
    }
    if definitions:
        schema["$defs"] = dict(sorted(definitions.items()))
    return schema


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document: the three topics, their messages, who sends and who receives."""
    schemas: dict[str, Any] = {"EventEnvelope": EventEnvelope.model_json_schema()}
    messages: dict[str, Any] = {}
    for event_type in sorted(EVENT_TYPES):
        payload, definitions = _payload_schema(event_type, "#/components/schemas/{model}")
        payload_name = payload.get("title", _camel(event_type))
        schemas.update(definitions)
        schemas[payload_name] = payload
        messages[_message_name(event_type)] = {
            "name": event_type,
            "title": event_type,
            "summary": _SUMMARIES[event_type],
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/EventEnvelope"},
                    {
                        "type": "object",
                        "properties": {
                            "event_type": {"const": event_type},
                            "data": {"$ref": f"#/components/schemas/{payload_name}"},
                        },
                    },
                ]
            },
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "pattern": "^[0-9]+$", "description": "The task id (decimal)"},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        channel = _message_name(topic.name)
        channels[channel] = {
            "address": topic.name,
            "description": f"Kafka topic {topic.name} (prefixed with KAFKA_TOPIC_PREFIX when that is set), "
            f"{topic.partitions} partitions, keyed by task id so one task's events keep their order.",
            "messages": {
                _message_name(t): {"$ref": f"#/components/messages/{_message_name(t)}"}
                for t in _CHANNEL_MESSAGES[topic.name]
            },
            "bindings": {
                "kafka": {
                    "topic": topic.name,
                    "partitions": topic.partitions,
                    "topicConfiguration": {"retention.ms": topic.retention_ms},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        operations[f"send{channel[0].upper()}{channel[1:]}"] = {
            "action": "send",
            "summary": "Published by the outbox relay, at least once, in commit order per task.",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": _operation_messages(topic.name),
        }
        group = _CONSUMERS.get(topic.name)
        if group is not None:
            operations[f"receive{channel[0].upper()}{channel[1:]}"] = {
                "action": "receive",
                "summary": f"Consumed by {group}; offsets are committed after the effect is durable.",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": _operation_messages(topic.name),
                "bindings": {
                    "kafka": {
                        "groupId": {"type": "string", "enum": [group]},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "mcp-todo task events",
            "version": str(SCHEMA_VERSION),
            "description": "Every change to a task, and every due reminder, as an event on Kafka. The reference is "
            "docs/events.md; this document is generated from the payload models (" + REGENERATE + ").",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render() -> dict[str, str]:
    """Every generated file by its path under docs/events/, with its text."""
    header = f"# Generated from mcp_todo/events.py by `{REGENERATE}`; do not edit.\n"
    files = {"asyncapi.yaml": header + yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=120)}
    for event_type in sorted(EVENT_TYPES):
        files[f"schemas/{event_type}.json"] = json.dumps(event_schema(event_type), indent=2, ensure_ascii=False) + "\n"
    return files


def stale_files(root: Path = DOCS_DIR) -> list[str]:
    """The generated files that are missing under `root` or differ from the models."""
    return [
        name
        for name, text in render().items()
        if not (root / name).is_file() or (root / name).read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mcp_todo.events_docs", description="Generate docs/events/ from the event models."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the files differ from the models")
    parser.add_argument("--out", type=Path, default=DOCS_DIR, help="the docs/events folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        for name in stale:
            sys.stderr.write(f"{args.out / name} differs from the models; run `{REGENERATE}`\n")
        return 1 if stale else 0
    for name, text in render().items():
        path = args.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
