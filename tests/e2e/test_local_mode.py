"""Local mode end to end, as Claude Desktop runs it: a real `mcp-todo` stdio subprocess with no Kafka at all, driven
through the official MCP stdio client. The recurrer and the reminder notifier run inside that process, fed from its
outbox: completing a recurring task makes the next occurrence, a reminder reaches the inbox resource and an Apprise
`json://` endpoint, and the outbox rows are marked published."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp.client import Client

from tests.e2e.test_stdio import call, stdio_session
from tests.support.database import DatabaseFactory
from tests.support.http_receiver import Receiver
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

NEXT_OCCURRENCE_WITHIN_S = 2.0
REMINDER_LATENESS_S = 2.0


def local_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    """The environment a desktop host passes: no KAFKA_BOOTSTRAP_SERVERS (local mode). The SDK's stdio client adds
    only a safe default set (PATH, HOME, …) to it, so nothing from the test's own environment leaks in."""
    return {
        "MCP_TODO_USER": "desktop",
        "MCP_TODO_TIMEZONE": "Europe/Paris",
        "MCP_TODO_NOTIFY_URLS": receiver.url,
        "MCP_TODO_LOG_LEVEL": "INFO",
        **extra,
    }


async def pending_titled(client: Client, title: str) -> list[dict[str, Any]]:
    page = await call(client, "list_tasks", status="pending", limit=100)
    return [task for task in page.get("tasks", []) if task["title"] == title]  # lean: no tasks, no key


async def inbox(client: Client) -> list[dict[str, Any]]:
    resource = await client.read_resource("todo://notifications")
    notifications: list[dict[str, Any]] = json.loads(resource.contents[0].text)["notifications"]  # type: ignore[union-attr]
    return notifications


def at(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


async def recurrence_and_reminder(client: Client, receiver: Receiver) -> None:
    """What local mode owes the user, through the MCP client: the next occurrence within 2 s of the completion, and
    a reminder on time in the inbox resource and at the Apprise target, once."""
    tag = await call(client, "add_tag", name="Home")
    first = await call(
        client,
        "add_task",
        title="Take out the bins",
        due_date="2027-03-27T19:00",  # the next one, a week later, is on summer time
        recurrence_rule="FREQ=WEEKLY",
        tag_ids=[tag["id"]],
        remind_before_minutes=15,
    )
    assert first["due_date"] == "2027-03-27T19:00:00+01:00"
    started = time.monotonic()
    done = await call(client, "complete_task", task_id=first["id"])
    assert done["next_occurrence"] == "2027-04-03T19:00:00+02:00"

    async def next_listed() -> bool:
        return len(await pending_titled(client, "Take out the bins")) == 1

    latency = await eventually(next_listed, 10.0, "the next occurrence is listed") - started
    [new] = await pending_titled(client, "Take out the bins")
    assert new["due_date"] == "2027-04-03T19:00:00+02:00"
    assert new["remind_at"] == "2027-04-03T18:45:00+02:00"
    assert [t["name"] for t in new["tags"]] == ["Home"]
    assert latency < NEXT_OCCURRENCE_WITHIN_S, latency

    title = f"Call the plumber {uuid.uuid4().hex[:6]}"
    task = await call(client, "add_task", title=title, due_date=at(datetime.now(UTC) + timedelta(days=1)))
    reminder = await call(
        client, "set_reminder", task_id=task["id"], remind_at=at(datetime.now(UTC) + timedelta(seconds=3))
    )
    remind_at = datetime.fromisoformat(reminder["remind_at"])

    async def delivered() -> bool:
        return any(title in str(message.get("message")) for message in receiver.snapshot())

    await eventually(delivered, 10.0, "the Apprise target got the reminder")
    lateness = receiver.arrivals[0] - remind_at.timestamp()

    async def in_inbox() -> bool:
        return any(note["task_id"] == task["id"] for note in await inbox(client))

    await eventually(in_inbox, 5.0, "the reminder is in todo://notifications")
    [note] = await inbox(client)
    assert note["title"] == title and title in note["message"]
    assert datetime.fromisoformat(note["remind_at"]) == remind_at
    assert len(receiver.snapshot()) == 1  # the recurring task's reminders are weeks away
    assert 0 <= lateness < REMINDER_LATENESS_S, lateness


async def test_local_mode_on_database_url(db_factory: DatabaseFactory, tmp_path: Path, http_receiver: Receiver) -> None:
    dsn = await db_factory.create()
    log = tmp_path / "stderr.log"
    async with stdio_session(local_env(http_receiver, DATABASE_URL=dsn), tmp_path, log) as client:
        await recurrence_and_reminder(client, http_receiver)

        # Every event went through the in-process relay to the local handlers: none is left unpublished or parked.
        conn = await asyncpg.connect(dsn)
        try:

            async def all_published() -> bool:
                return bool(await conn.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"))

            await eventually(all_published, 5.0, "every outbox row is published")
            rows = await conn.fetch("SELECT event_type, parked_at FROM outbox ORDER BY id")
        finally:
            await conn.close()
    events = [row["event_type"] for row in rows]
    assert events.count("task.completed") == 1
    assert events.count("reminder.due") == 1
    assert events.count("task.created") == 3  # two by add_task, one by the in-process recurrer
    assert all(row["parked_at"] is None for row in rows)
    text = log.read_text()
    assert "Traceback" not in text
    assert f"127.0.0.1:{http_receiver.port}" not in text


async def test_local_mode_on_the_embedded_database(tmp_path: Path, http_receiver: Receiver) -> None:
    log = tmp_path / "stderr.log"
    env = local_env(http_receiver, MCP_TODO_DATA_DIR=str(tmp_path / "data"))
    async with stdio_session(env, tmp_path, log) as client:
        await recurrence_and_reminder(client, http_receiver)
    text = log.read_text()
    assert any('msg="server ready"' in line and "embedded_db=true" in line for line in text.splitlines()), text[-2000:]
    assert "Traceback" not in text
    assert f"127.0.0.1:{http_receiver.port}" not in text
