"""The events the tools, the recurrer and the reminder scheduler really write fit the published JSON Schemas, and a
malformed payload is skipped by the handlers (logged) instead of being retried."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.events import EVENT_TYPES, PAYLOAD_TYPES, REMINDER_DUE, TASK_COMPLETED, Envelope
from mcp_todo.events_docs import DOCS_DIR
from mcp_todo.handlers.next_occurrence import handle_task_completed, handle_task_completed_batch
from mcp_todo.handlers.reminder_delivery import deliver_reminders
from mcp_todo.jobs.reminder_scheduler import ReminderScheduler
from tests.integration.tool_client import Clock, Tools, outbox, server_for, settings_for, tools_of


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "alice", clock=Clock())) as client:
        yield client


def schema_validator(event_type: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((DOCS_DIR / "schemas" / f"{event_type}.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


async def envelopes_of(db: AsyncEngine, event_type: str) -> list[Envelope]:
    return [Envelope.from_dict(row["payload"]) for row in await outbox(db) if row["event_type"] == event_type]


async def test_every_event_written_fits_its_published_schema(tools: Tools, db: AsyncEngine, database_dsn: str) -> None:
    work = await tools.add_category(name="Work", color="#112233")
    tag = await tools.add_tag(name="alpha")
    task = await tools.add_task(
        title="Stand-up",
        due_date="2030-03-08T09:30",
        category_id=work["id"],
        tag_ids=[tag["id"]],
        recurrence_rule="FREQ=WEEKLY;BYDAY=MO",
    )
    await tools.update_task(task_id=task["id"], title="Daily stand-up", priority="high")
    await tools.set_reminder(task_id=task["id"], remind_before_minutes=10)
    other = await tools.add_task(title="Call Bob", due_date="2030-03-09T10:00", tag_ids=[tag["id"]])
    await tools.remove_tag_from_task(task_id=other["id"], tag_id=tag["id"])
    await tools.complete_task(task_id=task["id"])
    [completed] = await envelopes_of(db, TASK_COMPLETED)
    assert await handle_task_completed(db, completed) is not None  # the recurrer's task.created
    await tools.delete_category(category_id=work["id"])
    async with db.begin() as conn:  # a reminder due now, for the scheduler to claim
        await conn.execute(
            text(
                "UPDATE tasks SET remind_at = now() - interval '1 minute', due_date = now() + interval '1 hour' "
                "WHERE id = :id"
            ),
            {"id": other["id"]},
        )
    assert await ReminderScheduler(db, database_dsn, settings_for(database_dsn)).run_once() == 1
    await tools.delete_task(task_id=other["id"])
    await tools.update_task(task_id=other["id"], status="pending")  # task.restored

    rows = await outbox(db)
    assert {row["event_type"] for row in rows} == EVENT_TYPES
    for row in rows:
        errors = [e.message for e in schema_validator(row["event_type"]).iter_errors(row["payload"])]
        assert not errors, (row["event_type"], errors)
        envelope = Envelope.from_dict(row["payload"])
        # And the payload model reads back exactly what was written.
        adapter: TypeAdapter[Any] = TypeAdapter(PAYLOAD_TYPES[envelope.event_type])
        assert adapter.dump_python(adapter.validate_python(envelope.data), mode="json") == envelope.data


async def test_a_malformed_completion_is_skipped_not_retried(
    tools: Tools, db: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    task = await tools.add_task(title="Water", due_date="2030-03-08T09:30", recurrence_rule="FREQ=DAILY")
    other = await tools.add_task(title="Feed", due_date="2030-03-08T10:30", recurrence_rule="FREQ=DAILY")
    await tools.complete_task(task_id=task["id"])
    await tools.complete_task(task_id=other["id"])
    good, bad = sorted(await envelopes_of(db, TASK_COMPLETED), key=lambda e: e.task_id != other["id"])
    malformed = Envelope(TASK_COMPLETED, bad.user_id, bad.task_id, {**bad.data, "completed_at": "not a time"})

    with caplog.at_level(logging.WARNING, logger="mcp_todo.events"):
        # Logged and skipped, not raised: raising would have the consumer retry it, then park it on the dead-letter
        # topic, for an event no retry can mend.
        assert await handle_task_completed(db, malformed) is None
        # In a batch the malformed one fails none of the others.
        results = await handle_task_completed_batch(db, [malformed, good])
    assert results[0] is None and results[1] is not None
    skipped = [r for r in caplog.records if r.getMessage() == "malformed event skipped"]
    assert len(skipped) == 2 and all("completed_at" in r.__dict__["error"] for r in skipped)


async def test_a_malformed_reminder_is_skipped_and_the_others_delivered(
    tools: Tools, db: AsyncEngine, database_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = await tools.add_task(title="One", due_date="2030-03-08T09:30")
    second = await tools.add_task(title="Two", due_date="2030-03-08T10:30")
    remind_at = "2030-03-08T08:00:00+00:00"
    good = Envelope(
        REMINDER_DUE, "alice", first["id"], {"task_id": first["id"], "title": "One", "remind_at": remind_at}
    )
    bad = Envelope(
        REMINDER_DUE,
        "alice",
        second["id"],
        {"task_id": second["id"], "title": "Two", "due_date": "soon", "remind_at": remind_at},
    )
    with caplog.at_level(logging.WARNING, logger="mcp_todo.events"):
        await deliver_reminders(db, [bad, good], settings_for(database_dsn))
    async with db.connect() as conn:
        delivered: list[int] = list((await conn.execute(text("SELECT task_id FROM notifications"))).scalars())
    assert delivered == [first["id"]]
    assert [r.__dict__["task_id"] for r in caplog.records if r.getMessage() == "malformed event skipped"] == [
        second["id"]
    ]
