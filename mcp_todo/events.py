"""The server↔worker contract: topic names, the envelope, and one payload model per event type.

Consumers other than ours read these topics, so the payloads are their own models, not the tools' result shapes:
changing what a tool returns changes no event. `docs/events.md` is the reference for readers; `docs/events/` holds
the AsyncAPI document and the JSON Schemas generated from this module (`python -m mcp_todo.events_docs`).

Versioning: an additive change (a new optional field, a new event type) keeps `SCHEMA_VERSION`; a breaking one bumps
it. Consumers read the current and the previous version, and the payload models ignore fields they do not know, so a
newer producer's additions never break an older consumer.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, NoReturn, Self, TypeVar, get_type_hints

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from typing_extensions import TypedDict

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1


# Cached: `Envelope.from_dict` asks for every record it decodes.
@functools.lru_cache(maxsize=8)
def accepted_schema_versions(current: int = SCHEMA_VERSION) -> frozenset[int]:
    """The versions a consumer reads: the current one and the one before it (there is none before 1)."""
    return frozenset(version for version in (current - 1, current) if version >= 1)


TASK_CREATED: Final = "task.created"
TASK_UPDATED: Final = "task.updated"
TASK_COMPLETED: Final = "task.completed"
TASK_DELETED: Final = "task.deleted"
TASK_RESTORED: Final = "task.restored"
REMINDER_DUE: Final = "reminder.due"

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


# --- payloads -----------------------------------------------------------------------------------------------------


def _isoformat(value: datetime) -> str:
    return value.isoformat()


# The one way an event carries a time: RFC 3339 with the numeric offset of the task's zone (never "Z", which
# pydantic would write for UTC), and a time without an offset is malformed.
EventTime = Annotated[
    AwareDatetime,
    PlainSerializer(_isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


TaskStatus = Literal["pending", "completed"]
TaskPriority = Literal["low", "medium", "high", "urgent"]
RecurrenceFrom = Literal["schedule", "completion"]
DeleteReason = Literal["trashed", "purged"]


class _Payload(BaseModel):
    # extra="ignore": a newer producer's additive change must not break this consumer. Defaults are for reading
    # (a missing optional field is None); the producer always writes every field, which the published schemas
    # (serialization mode) say by listing them all as required.
    model_config = ConfigDict(extra="ignore", frozen=True, json_schema_serialization_defaults_required=True)


class CategoryRef(_Payload):
    id: int
    name: str
    color: str | None = None


class TagRef(_Payload):
    id: int
    name: str
    color: str | None = None


class RecurrenceSummary(_Payload):
    text: str
    next_occurrences: list[EventTime]


class TaskSnapshot(_Payload):
    """A task as stored: its columns, its category and tags, and a preview of its recurrence."""

    id: int
    title: str
    description: str | None
    status: TaskStatus
    priority: TaskPriority
    due_date: EventTime | None
    time_zone: str
    category: CategoryRef | None
    tags: list[TagRef]
    recurrence_rule: str | None
    recurrence: RecurrenceSummary | None
    remind_at: EventTime | None
    reminder_sent: bool
    completed_at: EventTime | None
    created_at: EventTime
    updated_at: EventTime
    # Added in schema version 1 (compatible: a reader of older events gets the defaults).
    parent_id: int | None = None
    recurrence_from: RecurrenceFrom = "schedule"
    # An additive field (same schema version): the open tasks it waits on, in id order.
    blocked_by: list[int] = Field(default_factory=list)

    @field_validator("recurrence_from", mode="before")
    @classmethod
    def _schedule_when_absent(cls, value: object) -> object:
        # A tool result leaves the default out (None): the snapshot always says it.
        return "schedule" if value is None else value

    @field_validator("blocked_by", mode="before")
    @classmethod
    def _none_when_absent(cls, value: object) -> object:
        return [] if value is None else value

    @classmethod
    def from_task(cls, task: object) -> Self:
        """Read this model's fields by name from a loaded task (its other attributes are not part of the event)."""
        return cls.model_validate(task, from_attributes=True)


class TaskCreated(TaskSnapshot):
    """`task.created`: the task as created."""


class TaskDeleted(TaskSnapshot):
    """`task.deleted`: the task as it was, so an audit consumer sees what disappeared. `reason`: "trashed" (moved
    to the trash by delete_task; `task.restored` may follow) or "purged" (removed for good after the trash's
    retention; events written before the trash existed, which have no `reason`, read as "purged")."""

    reason: DeleteReason = "purged"


class TaskRestored(TaskSnapshot):
    """`task.restored`: the task as it is once out of the trash again (update_task status=pending)."""


# Every TaskSnapshot field but `id` and `created_at` (never change) and `updated_at` (changes with every write, so it
# says nothing), with the snapshot's own types: one list of a task's fields for every event, so a field added to the
# snapshot can be named in a `task.updated` too. (Built at import: a TypedDict's keys cannot be computed for mypy,
# and no code reads this type statically.)
_UNCHANGING: Final = frozenset({"id", "created_at", "updated_at"})
TaskUpdated: Any = TypedDict(  # type: ignore[misc]
    "TaskUpdated",
    {
        name: hint
        for name, hint in get_type_hints(TaskSnapshot, include_extras=True).items()
        if name in TaskSnapshot.model_fields and name not in _UNCHANGING
    },
    total=False,
)
TaskUpdated.__doc__ = """`task.updated`: `{field: new value}` for each field that changed; absent fields did not change.

    Every TaskSnapshot field but `id` and `created_at` (never change) and `updated_at` (changes with every write, so
    it says nothing)."""


def snapshot_data(
    column: Callable[[str], Any],
    zone: tzinfo,
    *,
    category: dict[str, Any] | None,
    tags: list[dict[str, Any]],
    recurrence: dict[str, Any] | None,
) -> dict[str, Any]:
    """A TaskSnapshot in its JSON form, each of the model's fields read by name through `column` (a task row's
    columns), times written in the task's `zone` with their offset, as the model's serializer writes them. The
    service and the recurrer both build their events' tasks here, so the snapshot's fields are listed once: the
    model."""
    data: dict[str, Any] = {}
    for name in _SNAPSHOT_FIELDS:
        if name == "category":
            data[name] = category
        elif name == "tags":
            data[name] = tags
        elif name == "recurrence":
            data[name] = recurrence
        else:
            value = column(name)
            data[name] = value.astimezone(zone).isoformat() if isinstance(value, datetime) else value
    return data


class TaskCompleted(_Payload):
    """`task.completed`: what the recurrer needs to compute the next occurrence, as the task was completed."""

    completed_at: EventTime | None = None
    due_date: EventTime | None = None
    recurrence_rule: str | None = None
    series_id: int | None = None
    time_zone: str
    # "completion": the next occurrence is due the rule's interval after completed_at.
    recurrence_from: RecurrenceFrom = "schedule"


class ReminderDue(_Payload):
    """`reminder.due`: a reminder to deliver now."""

    task_id: int
    title: str
    due_date: EventTime | None = None
    remind_at: EventTime


_SNAPSHOT_FIELDS: Final = tuple(TaskSnapshot.model_fields)

PAYLOAD_TYPES: Final[Mapping[str, Any]] = MappingProxyType(
    {
        TASK_CREATED: TaskCreated,
        TASK_UPDATED: TaskUpdated,
        TASK_COMPLETED: TaskCompleted,
        TASK_DELETED: TaskDeleted,
        TASK_RESTORED: TaskRestored,
        REMINDER_DUE: ReminderDue,
    }
)
EVENT_TYPES: Final = frozenset(PAYLOAD_TYPES)
_ADAPTERS: Final[Mapping[str, TypeAdapter[Any]]] = {name: TypeAdapter(model) for name, model in PAYLOAD_TYPES.items()}

Model = TypeVar("Model", bound=BaseModel)


def topics_for(event_type: str, data: dict[str, Any]) -> list[str]:
    """The logical topics (without prefix) an event goes to: a recurring task's completion also feeds the recurrer."""
    if event_type == REMINDER_DUE:
        return [TOPIC_REMINDERS]
    if event_type == TASK_COMPLETED and data.get("recurrence_rule"):
        return [TOPIC_TASK_EVENTS, TOPIC_RECURRENCE]
    return [TOPIC_TASK_EVENTS]


# --- the envelope -------------------------------------------------------------------------------------------------


class EnvelopeError(ValueError):
    """A message that is not a valid event envelope. Its text says why without quoting the message (a record's bytes
    may be anything: huge, binary, or somebody's secret), so it can go into a log line and a dead-letter header."""


class PayloadError(EnvelopeError):
    """An envelope whose data does not fit its event type's payload model: a malformed event, not worth a retry."""


# Bounds of what a consumer decodes, so no record can cost more than a bounded parse: an envelope is a few KB (a task
# with a 10 000-character description is ~40 KB at worst), nests 5 levels deep, and carries ids that are PostgreSQL
# bigints. Unbounded, 100 000 nested `[` raise RecursionError and a 5 000-digit integer the ValueError of Python's
# int-conversion limit, neither of them a JSONDecodeError.
MAX_EVENT_BYTES: Final = 256 * 1024
MAX_JSON_DEPTH: Final = 32
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_INT_DIGITS: Final = len(str(_INT64_MAX))
# NUL is not storable in PostgreSQL text, and a lone surrogate (a `\ud800` escape) is not encodable as UTF-8: a
# string with either can only fail later, in every retry, so it is refused here.
_UNSTORABLE_TEXT: Final = re.compile("[\x00\ud800-\udfff]")


class _Refused(Exception):
    """Raised from inside json.loads' hooks; becomes an EnvelopeError with its text."""


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > _INT_DIGITS:
        raise _Refused(f"an integer has more than {_INT_DIGITS} digits")
    value = int(digits)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Refused("an integer is outside the 64-bit range")
    return value


def _no_constant(name: str) -> NoReturn:
    raise _Refused("NaN and Infinity are not JSON")


def _bounded_float(digits: str) -> float:
    value = float(digits)
    if not math.isfinite(value):  # 1e999
        raise _Refused("a number is out of range")
    return value


def _check_tree(value: Any, text: str) -> None:
    """Depth and strings of a decoded JSON value, walked without recursion (its depth is what is being checked).

    Most events need no walk, and skip it (decoding is per record, on the workers' hot path): a string can hold NUL
    or a lone surrogate only through a `\\u` escape (strict UTF-8 and JSON refuse them raw), and a text with fewer
    brackets than the limit cannot nest deeper than it."""
    escapes = "\\u" in text
    if not escapes and text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if escapes and _UNSTORABLE_TEXT.search(item):
                raise EnvelopeError("a string holds NUL or an unpaired surrogate")
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise EnvelopeError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)


def decode_json(value: bytes, *, max_bytes: int = MAX_EVENT_BYTES) -> Any:
    """`value` as JSON, within the bounds above (size, depth, integer size, storable strings); EnvelopeError saying
    which one it broke otherwise. Strict UTF-8: json.loads would also guess UTF-16 and UTF-32 from the bytes."""
    if len(value) > max_bytes:
        raise EnvelopeError(f"message of {len(value)} bytes is over the {max_bytes}-byte limit")
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("message is not UTF-8") from None
    try:
        raw = json.loads(text, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_no_constant)
    except _Refused as exc:
        raise EnvelopeError(str(exc)) from None
    except RecursionError:
        # The C decoder checks the interpreter's recursion limit (~1 000 levels), well past MAX_JSON_DEPTH.
        raise EnvelopeError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # JSONDecodeError, and a too-long float literal
        raise EnvelopeError("message is not JSON") from None
    _check_tree(raw, text)
    return raw


def _first_problem(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "data"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Envelope:
    """One event as it travels: `data` is the payload in its JSON form (`payload_as` reads it through its model)."""

    event_type: str
    user_id: str
    task_id: int
    data: dict[str, Any]
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    occurred_at: datetime = field(default_factory=_now)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of(
        cls, event_type: str, payload: object, *, user_id: str, task_id: int, occurred_at: datetime | None = None
    ) -> Envelope:
        """The event of `event_type` carrying `payload` (a payload model, or for `task.updated` the changes),
        checked against the type's model and written in its JSON form."""
        adapter = _ADAPTERS[event_type]
        data = adapter.dump_python(adapter.validate_python(payload), mode="json")
        return cls(event_type, user_id, task_id, data, occurred_at=occurred_at or _now())

    def payload_as(self, model: type[Model]) -> Model:
        """`data` read through `model`, which must be this event type's payload model; PayloadError otherwise."""
        if PAYLOAD_TYPES.get(self.event_type) is not model:
            raise PayloadError(f"a {self.event_type} event does not carry a {model.__name__}")
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            raise PayloadError(f"{self.event_type} data is malformed: {_first_problem(exc)}") from None

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
            if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
                raise EnvelopeError(f"event_type is not one of {sorted(EVENT_TYPES)}")
            schema_version = raw["schema_version"]
            if not isinstance(schema_version, int) or isinstance(schema_version, bool):
                raise EnvelopeError("schema_version is not an integer")
            accepted = accepted_schema_versions()
            if schema_version not in accepted:
                raise EnvelopeError(
                    f"schema_version {schema_version} is not one this consumer reads ({sorted(accepted)})"
                )
            task_id = raw["task_id"]
            if not isinstance(task_id, int) or isinstance(task_id, bool):
                raise EnvelopeError("task_id is not an integer")
            if not 0 < task_id <= _INT64_MAX:
                raise EnvelopeError("task_id is not a positive 64-bit integer")
            user_id = raw["user_id"]
            data = raw["data"]
            if not isinstance(user_id, str) or not isinstance(data, dict):
                raise EnvelopeError("user_id or data has the wrong type")
            if not isinstance(raw["occurred_at"], str):
                raise EnvelopeError("occurred_at is not a string")
            occurred_at = datetime.fromisoformat(raw["occurred_at"].replace("Z", "+00:00"))
            if occurred_at.tzinfo is None:
                raise EnvelopeError("occurred_at has no offset")
            occurred_at.astimezone(UTC)  # OverflowError at the ends of the calendar
            return cls(
                event_type=event_type,
                user_id=user_id,
                task_id=task_id,
                data=data,
                event_id=uuid.UUID(str(raw["event_id"])),
                occurred_at=occurred_at,
                schema_version=schema_version,
            )
        except KeyError as exc:
            raise EnvelopeError(f"malformed envelope: no {exc.args[0]}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, EnvelopeError):
                raise
            raise EnvelopeError(f"malformed envelope: {exc.__class__.__name__}") from None

    @classmethod
    def from_json(cls, value: bytes | None, *, max_bytes: int = MAX_EVENT_BYTES) -> Envelope:
        """The envelope of a Kafka record's value, decoded within bounds (`decode_json`); EnvelopeError otherwise."""
        if value is None:
            raise EnvelopeError("empty message (no value)")
        return cls.from_dict(decode_json(value, max_bytes=max_bytes))

    def check_payload(self) -> None:
        """PayloadError unless `data` fits this event type's payload model and each of its times converts to UTC."""
        adapter = _ADAPTERS[self.event_type]
        try:
            payload = adapter.validate_python(self.data)
        except ValidationError as exc:
            raise PayloadError(f"{self.event_type} data is malformed: {_first_problem(exc)}") from None
        stack: list[Any] = [payload]
        while stack:
            item = stack.pop()
            if isinstance(item, datetime):
                try:
                    item.astimezone(UTC)
                except OverflowError:
                    raise PayloadError(f"{self.event_type} data holds a time outside the calendar") from None
            elif isinstance(item, BaseModel):
                stack.extend(item.__dict__.values())
            elif isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)


def read_payload(envelope: Envelope, model: type[Model]) -> Model | None:
    """The event's payload, or None when it is malformed (logged): no retry can repair one, so a handler skips it.
    (The workers' consumer loop refuses such a record before any handler sees it: `Envelope.check_payload`.)"""
    try:
        return envelope.payload_as(model)
    except PayloadError as exc:
        log.warning(
            "malformed event skipped",
            extra={
                "event_id": str(envelope.event_id),
                "event_type": envelope.event_type,
                "task_id": envelope.task_id,
                "error": str(exc),
            },
        )
        return None
