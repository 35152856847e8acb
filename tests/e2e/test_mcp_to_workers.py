"""End to end in Kafka mode, from an MCP client to the workers and back: the server (in-process, with its background
relay publishing the outbox to the real tansu broker), the real `mcp-todo-recurrer` and `mcp-todo-notifier`
binaries as subprocesses, the real PostgreSQL, and a real HTTP endpoint behind an Apprise `json://` URL.

One stack (database, topics, both workers, server) serves the whole module, so the ~5 s consumer-group joins are
paid once; each test acts for users of its own, so tests see only their own tasks and inbox. Latency clocks start
only once the workers have reported ready.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.events import GROUP_RECURRER, TOPIC_RECURRENCE, TOPIC_TASK_EVENTS
from mcp_todo.pipeline.kafka import consumer_kwargs, create_topics
from mcp_todo.server.app import build_server, default_background, open_app_state
from mcp_todo.server.state import AppState
from mcp_todo.settings import Settings
from tests.integration.tool_client import Tools, tools_of
from tests.support.broker import broker_settings, read_topic
from tests.support.database import DatabaseFactory
from tests.support.http_receiver import Receiver
from tests.support.polling import eventually
from tests.support.processes import FAST_REJOIN_SESSION_TIMEOUT_MS, WorkerProcess, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

NEXT_OCCURRENCE_WITHIN_S = 2.0
REMINDER_LATENESS_S = 2.0
MATRIX_TIMEOUT_S = 10.0


@dataclass
class Stack:
    """The running system: the server's state (its relay publishing to Kafka), both workers, the HTTP receiver."""

    state: AppState
    kafka: Settings
    recurrer: WorkerProcess
    notifier: WorkerProcess
    receiver: Receiver

    @property
    def engine(self) -> AsyncEngine:
        return self.state.engine

    @asynccontextmanager
    async def client(self, user: str | None = None, zone: str = "UTC") -> AsyncIterator[Tools]:
        """An MCP client acting for `user` (a fresh one by default) in `zone`, on the shared server state: another
        user and zone need their own settings, while the relay of the one running state publishes for everyone."""
        settings = server_settings(self.state.dsn, self.kafka, user or f"u{uuid.uuid4().hex[:8]}", zone)
        state = AppState(settings=settings, engine=self.engine, dsn=self.state.dsn, embedded=False)
        async with tools_of(build_server(settings, state=state)) as tools:
            yield tools

    def messages_about(self, title: str) -> list[dict[str, Any]]:
        return [m for m in self.receiver.snapshot() if title in str(m.get("message", "")) + str(m.get("title", ""))]


def server_settings(dsn: str, kafka: Settings, user: str, zone: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        DATABASE_URL=dsn,
        MCP_TODO_USER=user,
        MCP_TODO_TIMEZONE=zone,
        KAFKA_BOOTSTRAP_SERVERS=kafka.kafka_bootstrap_servers,
        KAFKA_TOPIC_PREFIX=kafka.kafka_topic_prefix,
        KAFKA_ENABLE_IDEMPOTENCE=False,
        MCP_TODO_NOTIFY_URLS="",
    )


@pytest.fixture(scope="module")
async def stack(
    db_factory: DatabaseFactory, kafka_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    dsn = await db_factory.create()
    kafka = broker_settings(kafka_broker)
    await create_topics(kafka)
    receiver = Receiver()
    receiver.start()
    cwd: Path = tmp_path_factory.mktemp("workers")
    env = worker_env(dsn, kafka, session_timeout_ms=FAST_REJOIN_SESSION_TIMEOUT_MS)
    recurrer = WorkerProcess("mcp-todo-recurrer", env, cwd)
    notifier = WorkerProcess("mcp-todo-notifier", env | {"MCP_TODO_NOTIFY_URLS": receiver.url}, cwd)
    settings = server_settings(dsn, kafka, "server", "UTC")
    try:
        async with open_app_state(settings, background=default_background(settings)) as state:
            assert not settings.local_mode and state.background_jobs == ("kafka_relay", "live_feed"), (
                "the server's Kafka relay and live feed must run"
            )
            await asyncio.gather(recurrer.start(), notifier.start())
            # Both join their consumer group at once (~5 s each on tansu); every latency clock starts after this.
            await asyncio.gather(recurrer.wait_ready(), notifier.wait_ready())
            yield Stack(state, kafka, recurrer, notifier, receiver)
            for worker in (recurrer, notifier):
                code, _ = await worker.stop(signal.SIGTERM)
                assert code == 0, worker.tail()
                assert worker.stdout == b"", f"{worker.name} wrote to stdout"
                assert not any("Traceback" in line for line in worker.lines), worker.tail(40)
            assert not any(receiver.url in line for line in recurrer.lines + notifier.lines)
    finally:
        for worker in (recurrer, notifier):
            await worker.close()
        receiver.stop()


async def tasks_titled(tools: Tools, title: str) -> list[dict[str, Any]]:
    """The user's tasks with this title, through list_tasks, earliest due first."""
    page = await tools.list_tasks(sort_by="due_date", sort_order="asc", limit=100)
    return [task for task in page["tasks"] if task["title"] == title]


async def pending_titled(tools: Tools, title: str) -> list[dict[str, Any]]:
    return [task for task in await tasks_titled(tools, title) if task["status"] == "pending"]


async def inbox(tools: Tools) -> list[dict[str, Any]]:
    resource = await tools.client.read_resource("todo://notifications")
    body = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
    assert body["total"] == len(body["notifications"])
    notifications: list[dict[str, Any]] = body["notifications"]
    return notifications


async def recurrer_caught_up(stack: Stack, timeout_s: float = 10.0) -> None:
    """Wait until the recurrer has handled every completion written so far: all of them published, and its group's
    committed offsets at the end of `task-recurrence` (it commits only after the effect is durable)."""

    async def published() -> bool:
        async with stack.engine.connect() as conn:
            unpublished = await conn.scalar(
                text("SELECT count(*) FROM outbox WHERE published_at IS NULL AND :t = ANY(topics)"),
                {"t": TOPIC_RECURRENCE},
            )
        return bool(unpublished == 0)

    await eventually(published, timeout_s, "every task.completed is published")
    topic = stack.kafka.topic(TOPIC_RECURRENCE)
    # A consumer in the recurrer's group that never subscribes: it reads the group's offsets without joining it.
    watcher = AIOKafkaConsumer(**consumer_kwargs(stack.kafka, GROUP_RECURRER))
    await watcher.start()
    try:
        await watcher.topics()  # loads the cluster metadata, which partitions_for_topic reads
        partitions = [TopicPartition(topic, p) for p in sorted(watcher.partitions_for_topic(topic) or ())]
        assert partitions, f"{topic} has no partitions"
        ends = await watcher.end_offsets(partitions)

        async def committed() -> bool:
            for partition in partitions:
                if (await watcher.committed(partition) or 0) < ends[partition]:
                    return False
            return True

        await eventually(committed, timeout_s, "the recurrer has committed every completion")
    finally:
        await watcher.stop()


def at(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def parsed(value: str) -> datetime:
    return datetime.fromisoformat(value)


def utc_now() -> datetime:
    return datetime.now(UTC)


# Recurrence


async def test_completing_a_recurring_task_creates_the_next_occurrence(stack: Stack) -> None:
    async with stack.client(zone="Europe/Berlin") as tools:
        tag_a = await tools.add_tag(name="Team")
        tag_b = await tools.add_tag(name="Weekly", color="#00AA00")
        category = await tools.add_category(name="Work")
        first = await tools.add_task(
            title="Stand-up",
            description="Fifteen minutes, standing",
            priority="high",
            due_date="2027-06-01T09:30",
            category_id=category["id"],
            tag_ids=[tag_a["id"], tag_b["id"]],
            recurrence_rule="FREQ=WEEKLY;BYDAY=TU,TH",
            remind_before_minutes=30,
        )
        assert first["due_date"] == "2027-06-01T09:30:00+02:00"
        assert first["remind_at"] == "2027-06-01T09:00:00+02:00"

        started = time.monotonic()
        done = await tools.complete_task(task_id=first["id"])
        assert done["status"] == "completed"
        assert done["next_occurrence"] == "2027-06-03T09:30:00+02:00"

        async def next_exists() -> bool:
            return len(await pending_titled(tools, "Stand-up")) == 1

        latency = await eventually(next_exists, 5.0, "the next occurrence is listed") - started
        [new] = await pending_titled(tools, "Stand-up")
        assert new["id"] != first["id"]
        assert new["due_date"] == "2027-06-03T09:30:00+02:00"
        assert new["time_zone"] == "Europe/Berlin"
        assert new["remind_at"] == "2027-06-03T09:00:00+02:00"  # the copied 30-minute lead
        assert new["reminder_sent"] is False
        assert {tag["name"] for tag in new["tags"]} == {"Team", "Weekly"}
        assert new["category"] == {"id": category["id"], "name": "Work", "color": category["color"]}
        assert (new["description"], new["priority"]) == ("Fifteen minutes, standing", "high")
        assert new["recurrence_rule"] == first["recurrence_rule"]
        assert new["recurrence"]["next_occurrences"][0] == "2027-06-08T09:30:00+02:00"
        assert len(await tasks_titled(tools, "Stand-up")) == 2
        assert latency < NEXT_OCCURRENCE_WITHIN_S, latency


async def test_repeat_after_completion_and_subtask_copies_through_the_recurrer(stack: Stack) -> None:
    """recurrence_from=completion: the next occurrence is due 3 days after the completion, at the series' wall time,
    with fresh copies of its subtasks, made by the real recurrer from the published task.completed."""
    zone = "America/New_York"
    async with stack.client(zone=zone) as tools:
        first = await tools.add_task(
            title="Water plants",
            due_date="2026-11-01T09:30",
            recurrence_rule="FREQ=DAILY;INTERVAL=3",
            recurrence_from="completion",
        )
        await tools.add_task(title="Fern", parent_id=first["id"])
        await tools.add_task(title="Cactus", parent_id=first["id"])
        done = await tools.complete_task(task_id=first["id"])
        today = datetime.now(ZoneInfo(zone)).date()
        expected = datetime.combine(today + timedelta(days=3), datetime.min.time().replace(hour=9, minute=30))
        assert parsed(done["next_occurrence"]) == expected.replace(tzinfo=ZoneInfo(zone))

        async def next_exists() -> bool:
            return len(await pending_titled(tools, "Water plants")) == 1

        await eventually(next_exists, 5.0, "the next occurrence is listed")
        [new] = await pending_titled(tools, "Water plants")
        assert new["due_date"] == done["next_occurrence"] and new["recurrence_from"] == "completion"
        assert new["recurrence"]["text"] == "3 days after completion"
        copies = (await tools.list_tasks(parent_id=new["id"], sort_order="asc"))["tasks"]
        assert [(task["title"], task["status"]) for task in copies] == [("Fern", "pending"), ("Cactus", "pending")]
        await recurrer_caught_up(stack)
        assert len(await pending_titled(tools, "Water plants")) == 1


# (zone, rule, the due date in that zone, the expected next due date): each crosses a DST change (or, for Feb 29, a
# run of years), and keeps the wall-clock time while the offset follows the zone.
DST_MATRIX = [
    ("America/New_York", "FREQ=DAILY", "2027-03-13T09:00", "2027-03-14T09:00:00-04:00"),
    ("America/New_York", "FREQ=WEEKLY;BYDAY=MO", "2027-03-08T09:00", "2027-03-15T09:00:00-04:00"),
    ("America/New_York", "FREQ=MONTHLY;BYDAY=-1FR", "2027-02-26T09:00", "2027-03-26T09:00:00-04:00"),
    ("America/New_York", "FREQ=MONTHLY;BYMONTHDAY=31", "2027-01-31T09:00", "2027-03-31T09:00:00-04:00"),
    ("America/New_York", "FREQ=YEARLY", "2028-02-29T09:00", "2032-02-29T09:00:00-05:00"),
    ("Europe/London", "FREQ=DAILY", "2027-10-30T09:00", "2027-10-31T09:00:00+00:00"),
    ("Europe/London", "FREQ=WEEKLY;BYDAY=MO", "2027-10-25T09:00", "2027-11-01T09:00:00+00:00"),
    ("Europe/London", "FREQ=MONTHLY;BYDAY=-1FR", "2027-10-29T09:00", "2027-11-26T09:00:00+00:00"),
    ("Europe/London", "FREQ=MONTHLY;BYMONTHDAY=31", "2027-08-31T09:00", "2027-10-31T09:00:00+00:00"),
    ("Europe/London", "FREQ=YEARLY", "2028-02-29T09:00", "2032-02-29T09:00:00+00:00"),
    ("Australia/Sydney", "FREQ=DAILY", "2027-04-03T09:00", "2027-04-04T09:00:00+10:00"),
    ("Australia/Sydney", "FREQ=WEEKLY;BYDAY=MO", "2027-03-29T09:00", "2027-04-05T09:00:00+10:00"),
    ("Australia/Sydney", "FREQ=MONTHLY;BYDAY=-1FR", "2027-03-26T09:00", "2027-04-30T09:00:00+10:00"),
    ("Australia/Sydney", "FREQ=MONTHLY;BYMONTHDAY=31", "2027-03-31T09:00", "2027-05-31T09:00:00+10:00"),
    ("Australia/Sydney", "FREQ=YEARLY", "2028-02-29T09:00", "2032-02-29T09:00:00+11:00"),
]


async def test_dst_matrix_keeps_the_wall_clock_time(stack: Stack) -> None:
    zones = sorted({zone for zone, *_ in DST_MATRIX})
    async with (
        stack.client(zone=zones[0]) as first,
        stack.client(zone=zones[1]) as second,
        stack.client(zone=zones[2]) as third,
    ):
        clients = dict(zip(zones, (first, second, third), strict=True))
        created = []
        for zone, rule, due, expected in DST_MATRIX:
            tools = clients[zone]
            title = f"{rule} from {due}"
            task = await tools.add_task(title=title, due_date=due, recurrence_rule=rule)
            assert task["due_date"] == datetime.fromisoformat(due).replace(tzinfo=ZoneInfo(zone)).isoformat()
            assert task["recurrence"]["next_occurrences"][0] == expected, (zone, rule)
            created.append((tools, title, expected))
        for tools, title, expected in created:
            [task] = await tasks_titled(tools, title)
            done = await tools.complete_task(task_id=task["id"])
            assert done["next_occurrence"] == expected, title

        # One recurrer handles all fifteen; wait for every successor at once.
        async def all_created() -> bool:
            for tools, title, _ in created:
                if not await pending_titled(tools, title):
                    return False
            return True

        await eventually(all_created, MATRIX_TIMEOUT_S, "every DST case has its next occurrence")
        for tools, title, expected in created:
            [new] = await pending_titled(tools, title)
            assert new["due_date"] == expected, title
            # The default 60-minute lead, in the same zone: an hour before the new wall-clock time.
            assert parsed(new["remind_at"]) == parsed(expected) - timedelta(minutes=60), title
            assert new["remind_at"][-6:] == expected[-6:], title


async def test_count_3_makes_exactly_three_occurrences(stack: Stack) -> None:
    async with stack.client(zone="America/New_York") as tools:
        task = await tools.add_task(
            title="Three times", due_date="2027-11-05T09:00", recurrence_rule="FREQ=DAILY;COUNT=3"
        )
        assert task["recurrence"]["next_occurrences"] == ["2027-11-06T09:00:00-04:00", "2027-11-07T09:00:00-05:00"]
        expected = ["2027-11-06T09:00:00-04:00", "2027-11-07T09:00:00-05:00", None]
        for next_due in expected:
            done = await tools.complete_task(task_id=task["id"])
            assert done["next_occurrence"] == next_due
            if next_due is None:
                break

            async def successor() -> bool:
                return len(await pending_titled(tools, "Three times")) == 1

            await eventually(successor, 5.0, f"the occurrence due {next_due} exists")
            [task] = await pending_titled(tools, "Three times")
            assert task["due_date"] == next_due

        # The recurrer has handled the last completion (rather than not having got to it yet), and made nothing.
        await recurrer_caught_up(stack)
        series = await tasks_titled(tools, "Three times")
        assert [t["due_date"] for t in series] == [
            "2027-11-05T09:00:00-04:00",
            "2027-11-06T09:00:00-04:00",
            "2027-11-07T09:00:00-05:00",
        ]
        assert all(t["status"] == "completed" for t in series)


async def test_a_late_completion_makes_one_future_occurrence_not_a_backlog(stack: Stack) -> None:
    async with stack.client(zone="UTC") as tools:
        now = utc_now().replace(second=0, microsecond=0)
        # Due three days and an hour ago: three daily occurrences were missed by the time it is completed.
        due = now - timedelta(days=3, hours=1)
        task = await tools.add_task(title="Water the plants", due_date=at(due), recurrence_rule="FREQ=DAILY")
        done = await tools.complete_task(task_id=task["id"])
        expected = due + timedelta(days=4)  # the first occurrence after the completion: 23 h from now
        assert parsed(done["next_occurrence"]) == expected

        async def successor() -> bool:
            return bool(await pending_titled(tools, "Water the plants"))

        await eventually(successor, 5.0, "the next occurrence exists")
        await recurrer_caught_up(stack)
        [new] = await pending_titled(tools, "Water the plants")
        assert parsed(new["due_date"]) == expected and parsed(new["due_date"]) > utc_now()
        assert len(await tasks_titled(tools, "Water the plants")) == 2  # the completed one and one new one
        overdue = await tools.get_overdue_tasks()
        assert not [t for t in overdue["tasks"] if t["title"] == "Water the plants"]


# Reminders


async def test_reminder_is_delivered_on_time_and_lands_in_the_inbox_once(stack: Stack) -> None:
    async with stack.client(zone="Asia/Tokyo") as tools:
        title = f"Call the dentist {uuid.uuid4().hex[:6]}"
        task = await tools.add_task(title=title, due_date=at(utc_now() + timedelta(days=2)))
        reminder = await tools.set_reminder(task_id=task["id"], remind_at=at(utc_now() + timedelta(seconds=3)))
        remind_at = parsed(reminder["remind_at"])

        async def received() -> bool:
            return bool(stack.messages_about(title))

        await eventually(received, 10.0, "the HTTP receiver got the reminder")
        arrived = stack.receiver.arrivals[stack.receiver.snapshot().index(stack.messages_about(title)[0])]
        lateness = arrived - remind_at.timestamp()

        async def in_inbox() -> bool:
            return any(n["task_id"] == task["id"] for n in await inbox(tools))

        await eventually(in_inbox, 5.0, "the reminder is in todo://notifications")
        [note] = await inbox(tools)
        assert note["task_id"] == task["id"] and note["title"] == title
        assert parsed(note["remind_at"]) == remind_at
        assert note["remind_at"].endswith("+09:00")  # in the task's zone
        assert title in note["message"]
        [listed] = await tasks_titled(tools, title)
        assert listed["reminder_sent"] is True
        assert 0 <= lateness < REMINDER_LATENESS_S, lateness

        # It fired once: by the time a later reminder of the same user arrives, nothing more came for this one.
        sentinel = await tools.add_task(title=f"{title} (later)", due_date=at(utc_now() + timedelta(days=2)))
        await tools.set_reminder(task_id=sentinel["id"], remind_at=at(utc_now() + timedelta(seconds=1)))

        async def sentinel_in_inbox() -> bool:
            return len(await inbox(tools)) == 2

        await eventually(sentinel_in_inbox, 10.0, "the later reminder is in the inbox")
        assert len([n for n in await inbox(tools) if n["task_id"] == task["id"]]) == 1
        # The inbox row is written before the targets are attempted (in the background): wait for the later one's
        # message too, then nothing more may have come for this one.
        await eventually(
            lambda: len(stack.messages_about(title)) >= 2, 10.0, "the later reminder reached the HTTP receiver"
        )
        assert len(stack.messages_about(title)) == 2  # this one and the later one, whose title contains it


async def test_a_completed_tasks_reminder_never_fires(stack: Stack) -> None:
    async with stack.client(zone="Europe/London") as tools:
        title = f"Renew the passport {uuid.uuid4().hex[:6]}"
        task = await tools.add_task(title=title, due_date=at(utc_now() + timedelta(days=2)))
        await tools.set_reminder(task_id=task["id"], remind_at=at(utc_now() + timedelta(seconds=2)))
        await tools.complete_task(task_id=task["id"])
        # A reminder due a second after it: once this one has been delivered, the scheduler is past the first.
        sentinel_title = f"Sentinel {uuid.uuid4().hex[:6]}"
        sentinel = await tools.add_task(title=sentinel_title, due_date=at(utc_now() + timedelta(days=2)))
        await tools.set_reminder(task_id=sentinel["id"], remind_at=at(utc_now() + timedelta(seconds=3)))

        async def sentinel_delivered() -> bool:
            return bool(stack.messages_about(sentinel_title)) and len(await inbox(tools)) >= 1

        await eventually(sentinel_delivered, 10.0, "the sentinel reminder arrived")
        assert stack.messages_about(title) == []
        assert [n["task_id"] for n in await inbox(tools)] == [sentinel["id"]]
        [completed] = await tasks_titled(tools, title)
        assert completed["status"] == "completed" and completed["reminder_sent"] is False


async def test_a_moved_due_date_re_arms_a_fired_reminder(stack: Stack) -> None:
    async with stack.client(zone="America/New_York") as tools:
        title = f"Pay the rent {uuid.uuid4().hex[:6]}"
        # A zero lead: the reminder is at the due date itself.
        task = await tools.add_task(title=title, due_date=at(utc_now() + timedelta(seconds=2)), remind_before_minutes=0)
        assert task["remind_at"] == task["due_date"]

        async def fired(count: int) -> bool:
            notes = [n for n in await inbox(tools) if n["task_id"] == task["id"]]
            return len(notes) == count and len(stack.messages_about(title)) == count

        await eventually(lambda: fired(1), 10.0, "the first reminder fired")
        [listed] = await tasks_titled(tools, title)
        assert listed["reminder_sent"] is True

        moved = await tools.update_task(task_id=task["id"], due_date=at(utc_now() + timedelta(seconds=2)))
        assert moved["remind_at"] == moved["due_date"] != task["due_date"]
        assert moved["reminder_sent"] is False
        await eventually(lambda: fired(2), 10.0, "the re-armed reminder fired")
        notes = [n for n in await inbox(tools) if n["task_id"] == task["id"]]
        assert sorted(parsed(n["remind_at"]) for n in notes) == [parsed(task["remind_at"]), parsed(moved["remind_at"])]


async def test_the_outbox_reaches_kafka_and_nothing_is_parked(stack: Stack) -> None:
    """The server's relay published the tools' events to Kafka, keyed by task id, and every event written in this
    module (by tools and workers alike) went out: none is left unpublished or parked."""
    async with stack.client(user="auditor") as tools:
        task = await tools.add_task(title="Audit me")
        await tools.complete_task(task_id=task["id"])

    async def drained() -> bool:
        async with stack.engine.connect() as conn:
            return bool(
                (await conn.execute(text("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"))).scalar_one()
            )

    await eventually(drained, 10.0, "the outbox is drained")
    async with stack.engine.connect() as conn:
        parked: int = (await conn.execute(text("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL"))).scalar_one()
        on_task_events: int = (
            await conn.execute(text("SELECT count(*) FROM outbox WHERE :t = ANY(topics)"), {"t": TOPIC_TASK_EVENTS})
        ).scalar_one()
    assert parked == 0
    assert stack.kafka.kafka_bootstrap_servers is not None
    records = await read_topic(
        stack.kafka.kafka_bootstrap_servers, stack.kafka.topic(TOPIC_TASK_EVENTS), on_task_events, timeout_s=10.0
    )
    assert len(records) >= on_task_events
    mine = [json.loads(record.value) for record in records if record.key == str(task["id"]).encode()]
    assert [(event["event_type"], event["user_id"]) for event in mine] == [
        ("task.created", "auditor"),
        ("task.completed", "auditor"),
    ]
