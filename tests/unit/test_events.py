"""The event contract: payload models, their independence from the tool results, the envelope and its versions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from mcp_todo.events import (
    PAYLOAD_TYPES,
    REMINDER_DUE,
    SCHEMA_VERSION,
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_UPDATED,
    Envelope,
    EnvelopeError,
    PayloadError,
    ReminderDue,
    TaskCompleted,
    TaskCreated,
    TaskSnapshot,
    TaskUpdated,
    accepted_schema_versions,
    read_payload,
)
from mcp_todo.schemas import CategoryOut, RecurrenceOut, TagOut, TaskOut

SNAPSHOT_FIELDS = [
    "id",
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "time_zone",
    "category",
    "tags",
    "recurrence_rule",
    "recurrence",
    "remind_at",
    "reminder_sent",
    "completed_at",
    "created_at",
    "updated_at",
    "parent_id",
    "recurrence_from",
    "blocked_by",
]


def task_out(**changes: Any) -> TaskOut:
    fields: dict[str, Any] = {
        "id": 7,
        "title": "Stand-up",
        "description": None,
        "status": "pending",
        "priority": "high",
        "due_date": "2027-03-08T09:30:00-05:00",
        "time_zone": "America/New_York",
        "category": CategoryOut(id=1, name="Work", color="#112233"),
        "tags": [TagOut(id=2, name="alpha", color=None)],
        "recurrence_rule": "FREQ=WEEKLY;BYDAY=MO",
        "recurrence": RecurrenceOut(text="every week on Monday", next_occurrences=["2027-03-15T09:30:00-04:00"]),
        "remind_at": "2027-03-08T09:15:00.500000-05:00",
        "reminder_sent": False,
        "completed_at": None,
        "created_at": "2027-03-01T08:00:00-05:00",
        "updated_at": "2027-03-01T08:00:00-05:00",
    }
    return TaskOut(**(fields | changes))


def envelope_dict(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": TASK_COMPLETED,
        "schema_version": SCHEMA_VERSION,
        "occurred_at": "2027-03-10T12:00:00Z",
        "user_id": "alice",
        "task_id": 7,
        "data": {"time_zone": "UTC"},
    }
    return raw | changes


# --- the payload models and the tool results ----------------------------------------------------------------------


def test_the_task_snapshot_names_its_own_fields() -> None:
    assert list(TaskSnapshot.model_fields) == SNAPSHOT_FIELDS
    # task.updated may name every field but the ones that never change or always do.
    assert set(TaskUpdated.__optional_keys__) == set(SNAPSHOT_FIELDS) - {"id", "created_at", "updated_at"}
    assert not TaskUpdated.__required_keys__


def test_task_created_carries_the_task_in_the_json_form_it_always_had() -> None:
    task = task_out()
    event = Envelope.of(TASK_CREATED, TaskCreated.from_task(task), user_id="alice", task_id=task.id)
    # The wire form existing consumers read: the same keys and values as the task's JSON, times untouched.
    shown = task.model_dump(mode="json")
    assert event.data == {
        **{name: shown[name] for name in SNAPSHOT_FIELDS if name in shown},
        "recurrence_from": "schedule",  # a tool result leaves the default out; the event always says it
        "blocked_by": [],  # likewise: absent from a task that waits on nothing
    }
    assert event.data["remind_at"] == "2027-03-08T09:15:00.500000-05:00"


def test_a_field_added_to_the_tool_result_does_not_reach_the_event() -> None:
    class WiderTaskOut(TaskOut):
        shared_with: list[str]
        internal_note: str

    plain = task_out()
    wider = WiderTaskOut(**plain.model_dump(), shared_with=["bob"], internal_note="not for Kafka")
    event = Envelope.of(TASK_CREATED, TaskCreated.from_task(wider), user_id="alice", task_id=7)
    assert list(event.data) == SNAPSHOT_FIELDS
    assert event.data == Envelope.of(TASK_CREATED, TaskCreated.from_task(plain), user_id="alice", task_id=7).data


def test_a_tool_result_that_lost_a_field_cannot_build_an_event() -> None:
    # Any object with the fields will do; one without `reminder_sent` is refused rather than emitted without it.
    narrower = SimpleNamespace(**{name: value for name, value in task_out() if name != "reminder_sent"})
    with pytest.raises(ValidationError, match="reminder_sent"):
        TaskCreated.from_task(narrower)


def test_task_updated_keeps_only_fields_it_can_name_and_checks_their_types() -> None:
    event = Envelope.of(
        TASK_UPDATED,
        {"title": "new", "due_date": "2027-03-09T10:00:00+01:00", "updated_at": "2027-03-09T10:00:00+01:00"},
        user_id="alice",
        task_id=7,
    )
    assert event.data == {"title": "new", "due_date": "2027-03-09T10:00:00+01:00"}
    with pytest.raises(ValueError, match="title"):
        Envelope.of(TASK_UPDATED, {"title": None}, user_id="alice", task_id=7)


def test_times_keep_the_zone_offset_they_were_given_also_for_utc() -> None:
    payload = TaskCompleted(
        completed_at=datetime(2027, 3, 10, 12, 0, tzinfo=UTC), due_date=None, time_zone="UTC", series_id=None
    )
    event = Envelope.of(TASK_COMPLETED, payload, user_id="alice", task_id=7)
    assert event.data["completed_at"] == "2027-03-10T12:00:00+00:00"  # what format_in_zone writes, not "Z"


# --- reading payloads ---------------------------------------------------------------------------------------------


def test_an_older_consumer_ignores_fields_a_newer_producer_added() -> None:
    raw = envelope_dict(
        event_type=REMINDER_DUE,
        data={
            "task_id": 7,
            "title": "Call Bob",
            "due_date": None,
            "remind_at": "2027-03-10T07:00:00+01:00",
            "channel": "sms",  # a field this version does not know
        },
        priority="high",  # and one in the envelope
    )
    reminder = Envelope.from_dict(raw).payload_as(ReminderDue)
    assert reminder.remind_at == datetime(2027, 3, 10, 6, 0, tzinfo=UTC)
    assert reminder.due_date is None


def test_a_missing_optional_time_is_none_but_a_malformed_one_is_a_malformed_event() -> None:
    missing = Envelope.from_dict(envelope_dict(data={"time_zone": "UTC", "recurrence_rule": "FREQ=DAILY"}))
    completed = missing.payload_as(TaskCompleted)
    assert completed.completed_at is None and completed.due_date is None
    for bad in ("yesterday", "2027-03-10T12:00:00", ""):  # not a time; no offset; empty
        event = Envelope.from_dict(envelope_dict(data={"time_zone": "UTC", "due_date": bad}))
        with pytest.raises(PayloadError, match=r"task.completed data is malformed: due_date"):
            event.payload_as(TaskCompleted)


def test_read_payload_logs_and_skips_a_malformed_event(caplog: pytest.LogCaptureFixture) -> None:
    event = Envelope.from_dict(envelope_dict(event_type=REMINDER_DUE, data={"task_id": 7, "title": "x"}))
    with caplog.at_level("WARNING", logger="mcp_todo.events"):
        assert read_payload(event, ReminderDue) is None
    [record] = caplog.records
    assert record.getMessage() == "malformed event skipped"
    assert record.__dict__["event_type"] == REMINDER_DUE
    assert "remind_at" in record.__dict__["error"]


def test_a_payload_is_read_only_through_its_own_model() -> None:
    event = Envelope.from_dict(envelope_dict())
    with pytest.raises(PayloadError, match="does not carry a ReminderDue"):
        event.payload_as(ReminderDue)
    assert set(PAYLOAD_TYPES) == {
        "task.created",
        "task.updated",
        "task.completed",
        "task.deleted",
        "task.restored",
        "reminder.due",
    }


# --- the envelope -------------------------------------------------------------------------------------------------


def test_the_envelope_json_is_unchanged() -> None:
    event_id = uuid.uuid4()
    event = Envelope(
        TASK_COMPLETED,
        "zoë",
        7,
        {"time_zone": "UTC"},
        event_id=event_id,
        occurred_at=datetime(2027, 3, 10, 13, 0, tzinfo=UTC),
    )
    assert event.key == "7"
    assert json.loads(event.to_json()) == {
        "event_id": str(event_id),
        "event_type": "task.completed",
        "schema_version": 1,
        "occurred_at": "2027-03-10T13:00:00Z",
        "user_id": "zoë",
        "task_id": 7,
        "data": {"time_zone": "UTC"},
    }
    assert Envelope.from_json(event.to_json()) == event


def test_consumers_read_the_current_and_the_previous_schema_version() -> None:
    assert accepted_schema_versions(1) == {1}  # there is no version 0
    assert accepted_schema_versions(2) == {1, 2}
    assert accepted_schema_versions(5) == {4, 5}
    assert accepted_schema_versions() == {SCHEMA_VERSION, SCHEMA_VERSION - 1} - {0}


@pytest.mark.parametrize("version", [0, SCHEMA_VERSION + 1, SCHEMA_VERSION - 2])
def test_an_unsupported_schema_version_is_malformed_with_a_clear_message(version: int) -> None:
    with pytest.raises(EnvelopeError, match=rf"schema_version {version} is not one this consumer reads"):
        Envelope.from_dict(envelope_dict(schema_version=version))


def test_after_a_bump_the_previous_version_is_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import mcp_todo.events as events

    monkeypatch.setattr(events, "accepted_schema_versions", lambda: accepted_schema_versions(SCHEMA_VERSION + 1))
    assert Envelope.from_dict(envelope_dict(schema_version=SCHEMA_VERSION)).schema_version == SCHEMA_VERSION
    assert Envelope.from_dict(envelope_dict(schema_version=SCHEMA_VERSION + 1)).schema_version == SCHEMA_VERSION + 1
    with pytest.raises(EnvelopeError, match="schema_version"):
        Envelope.from_dict(envelope_dict(schema_version=SCHEMA_VERSION + 2))


# --- decoding a record's bytes, within bounds ---------------------------------------------------------------------


def envelope_bytes(**changes: Any) -> bytes:
    return json.dumps(envelope_dict(**changes)).encode()


def spliced(old: str, new: str) -> bytes:
    value = json.dumps(envelope_dict(), separators=(",", ":"))
    assert old in value
    return value.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty message (no value)"),
        (b"", "message is not JSON"),
        (b"[" * 100_000, "JSON nested deeper than 32 levels"),
        (b'{"a":' * 50_000, "JSON nested deeper than 32 levels"),
        (b"[" * 40 + b"]" * 40, "JSON nested deeper than 32 levels"),
        (b"1" * 5000, "an integer has more than 19 digits"),
        (spliced('"task_id":7', '"task_id":' + "9" * 5000), "an integer has more than 19 digits"),
        (spliced('"task_id":7', f'"task_id":{2**63}'), "an integer is outside the 64-bit range"),
        (envelope_bytes(task_id=0), "task_id is not a positive 64-bit integer"),
        (envelope_bytes(task_id="7"), "task_id is not an integer"),
        (b"\xff\xfe{}", "message is not UTF-8"),
        ("{}".encode("utf-16"), "message is not UTF-8"),
        (b'{"pad":"' + b"x" * (1 << 20) + b'"}', "message of 1048586 bytes is over the 262144-byte limit"),
        (spliced('"schema_version":1', '"schema_version":NaN'), "NaN and Infinity are not JSON"),
        (spliced('"schema_version":1', '"schema_version":1e999'), "a number is out of range"),
        (envelope_bytes(schema_version="1"), "schema_version is not an integer"),
        (envelope_bytes(user_id="al\u0000ice"), "a string holds NUL or an unpaired surrogate"),
        (spliced('"user_id":"alice"', '"user_id":"\\udc00"'), "a string holds NUL or an unpaired surrogate"),
        (envelope_bytes(occurred_at="9999-12-31T23:59:59-12:00"), "malformed envelope: OverflowError"),
        (envelope_bytes(occurred_at=["2027"]), "occurred_at is not a string"),
        (json.dumps({k: v for k, v in envelope_dict().items() if k != "data"}).encode(), "malformed envelope: no data"),
        (b"[]", "envelope is not a JSON object"),
    ],
)
def test_a_record_is_decoded_within_bounds_or_refused_with_a_one_line_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(EnvelopeError) as refused:
        Envelope.from_json(value)
    assert str(refused.value) == reason


def test_a_refusal_quotes_nothing_of_the_record() -> None:
    """A record's bytes may be somebody's secret: the reason (logged, and a dead-letter header) never repeats them."""
    secret = "mtd_s3cr3t-token-value"
    for value in (envelope_bytes(event_type=secret), envelope_bytes(event_id=secret), envelope_bytes(task_id=secret)):
        with pytest.raises(EnvelopeError) as refused:
            Envelope.from_json(value)
        assert secret not in str(refused.value)


def test_the_payload_check_refuses_data_that_does_not_fit_or_leaves_the_calendar() -> None:
    Envelope.from_json(envelope_bytes()).check_payload()  # fits
    with pytest.raises(PayloadError, match=r"task.completed data is malformed: time_zone"):
        Envelope.from_json(envelope_bytes(data={})).check_payload()
    far = {"time_zone": "UTC", "due_date": "9999-12-31T23:59:59-14:00"}
    with pytest.raises(PayloadError, match="a time outside the calendar"):
        Envelope.from_json(envelope_bytes(data=far)).check_payload()
