"""The server↔worker contract: event types, topic names and the envelope (CONTRACT §6)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

SCHEMA_VERSION: Final = 1

TASK_CREATED: Final = "task.created"
TASK_UPDATED: Final = "task.updated"
TASK_COMPLETED: Final = "task.completed"
TASK_DELETED: Final = "task.deleted"
REMINDER_DUE: Final = "reminder.due"
EVENT_TYPES: Final = frozenset({TASK_CREATED, TASK_UPDATED, TASK_COMPLETED, TASK_DELETED, REMINDER_DUE})

TOPIC_TASK_EVENTS: Final = "task-events"
TOPIC_RECURRENCE: Final = "task-recurrence"
TOPIC_REMINDERS: Final = "task-reminders"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int


DAY_MS: Final = 24 * 60 * 60 * 1000
TOPICS: Final = (
    TopicSpec(TOPIC_TASK_EVENTS, 3, 7 * DAY_MS),
    TopicSpec(TOPIC_RECURRENCE, 3, 7 * DAY_MS),
    TopicSpec(TOPIC_REMINDERS, 3, 1 * DAY_MS),
)

GROUP_RECURRER: Final = "mcp-todo-recurrer"
GROUP_NOTIFIER: Final = "mcp-todo-notifier"


def topics_for(event_type: str, data: dict[str, Any]) -> list[str]:
    """The logical topics (without prefix) an event goes to: a recurring task's completion also feeds the recurrer."""
    if event_type == REMINDER_DUE:
        return [TOPIC_REMINDERS]
    if event_type == TASK_COMPLETED and data.get("recurrence_rule"):
        return [TOPIC_TASK_EVENTS, TOPIC_RECURRENCE]
    return [TOPIC_TASK_EVENTS]


class EnvelopeError(ValueError):
    """A message that is not a valid event envelope."""


@dataclass(frozen=True)
class Envelope:
    event_type: str
    user_id: str
    task_id: int
    data: dict[str, Any]
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    schema_version: int = SCHEMA_VERSION

    @property
    def key(self) -> str:
        return str(self.task_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": str(self.event_id),
            "event_type": self.event_type,
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "user_id": self.user_id,
            "task_id": self.task_id,
            "data": self.data,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_dict(cls, raw: Any) -> Envelope:
        if not isinstance(raw, dict):
            raise EnvelopeError("envelope is not a JSON object")
        try:
            event_type = raw["event_type"]
            if event_type not in EVENT_TYPES:
                raise EnvelopeError(f"unknown event_type {event_type!r}")
            task_id = raw["task_id"]
            if not isinstance(task_id, int) or isinstance(task_id, bool):
                raise EnvelopeError("task_id is not an integer")
            user_id = raw["user_id"]
            data = raw["data"]
            if not isinstance(user_id, str) or not isinstance(data, dict):
                raise EnvelopeError("user_id or data has the wrong type")
            occurred_at = datetime.fromisoformat(str(raw["occurred_at"]).replace("Z", "+00:00"))
            if occurred_at.tzinfo is None:
                raise EnvelopeError("occurred_at has no offset")
            return cls(
                event_type=event_type,
                user_id=user_id,
                task_id=task_id,
                data=data,
                event_id=uuid.UUID(str(raw["event_id"])),
                occurred_at=occurred_at,
                schema_version=int(raw["schema_version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, EnvelopeError):
                raise
            raise EnvelopeError(f"malformed envelope: {exc.__class__.__name__}") from exc

    @classmethod
    def from_json(cls, value: bytes | None) -> Envelope:
        if value is None:
            raise EnvelopeError("empty message")
        try:
            raw = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EnvelopeError("message is not UTF-8 JSON") from exc
        return cls.from_dict(raw)
