"""The recurrer's handler against the real PostgreSQL: N+1 is right, and created exactly once whatever happens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import ScalarResult, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.tasks import load_tasks
from mcp_todo.events import TASK_COMPLETED, TASK_CREATED, Envelope, TaskCreated
from mcp_todo.handlers.next_occurrence import handle_task_completed
from mcp_todo.service.shapes import task_out
from mcp_todo.settings import Settings, get_settings
from tests.support.database import insert_row
from tests.support.tasks import tag_task

USER = "alice"


@pytest.fixture
def settings() -> Settings:
    return get_settings().model_copy(update={"reminder_lead_minutes": 45})


async def insert_task(engine: AsyncEngine, **values: Any) -> int:
    row: dict[str, Any] = {
        "user_id": USER,
        "title": "Water the plants",
        "description": "the ones on the balcony",
        "status": "completed",
        "priority": "high",
        "time_zone": "UTC",
        "recurrence_rule": "FREQ=DAILY",
        "remind_before_minutes": None,
        "remind_at": None,
        "series_id": None,
        "series_start": None,
        "category_id": None,
        "previous_task_id": None,
        "reminder_sent": True,
    }
    row.update(values)
    if row["status"] == "completed":
        row.setdefault("completed_at", row["due_date"] + timedelta(minutes=30))
    else:
        row.setdefault("completed_at", None)
    return await insert_row(engine, "tasks", row)


async def completed_event(engine: AsyncEngine, task_id: int) -> Envelope:
    """The `task.completed` the service writes (docs/events.md), built from the stored row."""
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM tasks WHERE id = :id"), {"id": task_id})).mappings().one()
    return Envelope(
        event_type=TASK_COMPLETED,
        user_id=row["user_id"],
        task_id=task_id,
        data={
            "completed_at": row["completed_at"].isoformat(),
            "due_date": row["due_date"].isoformat(),
            "recurrence_rule": row["recurrence_rule"],
            "series_id": row["series_id"],
            "time_zone": row["time_zone"],
        },
    )


async def complete(engine: AsyncEngine, task_id: int, completed_at: datetime) -> Envelope:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE tasks SET status = 'completed', completed_at = :at WHERE id = :id"),
            {"at": completed_at, "id": task_id},
        )
    return await completed_event(engine, task_id)


async def series_rows(engine: AsyncEngine, series_id: int) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    text("SELECT * FROM tasks WHERE id = :id OR series_id = :id ORDER BY due_date"), {"id": series_id}
                )
            ).mappings()
        )


async def created_events(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    text("SELECT * FROM outbox WHERE event_type = :type ORDER BY id"), {"type": TASK_CREATED}
                )
            ).mappings()
        )


async def test_next_occurrence_copies_the_task(db: AsyncEngine, settings: Settings) -> None:
    async with db.begin() as conn:
        category_id: int = (
            await conn.execute(
                text("INSERT INTO categories (user_id, name) VALUES (:u, 'home') RETURNING id"), {"u": USER}
            )
        ).scalar_one()
        tag_ids: list[int] = [
            (
                await conn.execute(
                    text("INSERT INTO tags (user_id, name) VALUES (:u, :n) RETURNING id"), {"u": USER, "n": name}
                )
            ).scalar_one()
            for name in ("garden", "weekly")
        ]
    due = datetime(2026, 6, 1, 9, 0, tzinfo=ZoneInfo("Europe/London"))
    task_id = await insert_task(
        db,
        due_date=due,
        time_zone="Europe/London",
        recurrence_rule="FREQ=WEEKLY;BYDAY=MO",
        category_id=category_id,
        remind_before_minutes=15,
        remind_at=due - timedelta(minutes=15),
    )
    async with db.begin() as conn:
        for tag_id in tag_ids:
            await conn.execute(
                text("INSERT INTO task_tags (task_id, tag_id, user_id) VALUES (:t, :g, :u)"),
                {"t": task_id, "g": tag_id, "u": USER},
            )

    new_id = await handle_task_completed(db, await completed_event(db, task_id), settings=settings)

    assert new_id is not None
    rows = await series_rows(db, task_id)
    assert [r["id"] for r in rows] == [task_id, new_id]
    new = rows[1]
    expected_due = datetime(2026, 6, 8, 9, 0, tzinfo=ZoneInfo("Europe/London"))
    assert new["due_date"] == expected_due
    assert new["remind_at"] == expected_due - timedelta(minutes=15)
    assert (new["status"], new["reminder_sent"], new["completed_at"]) == ("pending", False, None)
    assert (new["title"], new["description"], new["priority"]) == (
        "Water the plants",
        "the ones on the balcony",
        "high",
    )
    assert (new["category_id"], new["recurrence_rule"], new["time_zone"]) == (
        category_id,
        "FREQ=WEEKLY;BYDAY=MO",
        "Europe/London",
    )
    assert (new["series_id"], new["series_start"], new["previous_task_id"]) == (task_id, due, task_id)
    assert new["remind_before_minutes"] == 15
    async with db.connect() as conn:
        new_tags: ScalarResult[int] = (
            await conn.execute(text("SELECT tag_id FROM task_tags WHERE task_id = :t ORDER BY tag_id"), {"t": new_id})
        ).scalars()
        assert list(new_tags) == sorted(tag_ids)

    events = await created_events(db)
    assert len(events) == 1
    payload = events[0]["payload"]
    assert (events[0]["task_id"], events[0]["message_key"], payload["user_id"]) == (new_id, str(new_id), USER)
    assert payload["data"]["id"] == new_id
    assert payload["data"]["due_date"] == "2026-06-08T09:00:00+01:00"
    assert {tag["name"] for tag in payload["data"]["tags"]} == {"garden", "weekly"}
    assert payload["data"]["category"]["name"] == "home"


async def test_default_lead_when_the_task_has_none(db: AsyncEngine, settings: Settings) -> None:
    due = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    # An absolute reminder without a lead: the next occurrence gets the default lead.
    task_id = await insert_task(db, due_date=due, remind_at=datetime(2026, 5, 20, tzinfo=UTC))
    new_id = await handle_task_completed(db, await completed_event(db, task_id), settings=settings)
    new = (await series_rows(db, task_id))[1]
    assert new["id"] == new_id
    assert new["due_date"] == due + timedelta(days=1)
    assert new["remind_at"] == due + timedelta(days=1) - timedelta(minutes=45)
    assert new["remind_before_minutes"] is None


async def test_replayed_three_times_creates_one(db: AsyncEngine, settings: Settings) -> None:
    task_id = await insert_task(db, due_date=datetime(2026, 6, 1, 9, tzinfo=UTC))
    event = await completed_event(db, task_id)
    results = [await handle_task_completed(db, event, settings=settings) for _ in range(3)]
    assert results[0] is not None
    assert results[1:] == [None, None]
    assert len(await series_rows(db, task_id)) == 2
    assert len(await created_events(db)) == 1


async def test_two_racing_handlers_create_one(db: AsyncEngine, settings: Settings) -> None:
    task_id = await insert_task(db, due_date=datetime(2026, 6, 1, 9, tzinfo=UTC))
    event = await completed_event(db, task_id)
    # Two deliveries of the same fact with different event ids (e.g. the relay published it twice).
    twin = Envelope(event.event_type, event.user_id, event.task_id, event.data)
    # A TaskGroup, not gather: should one fail, the others are finished before the next test empties the tables.
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(handle_task_completed(db, e, settings=settings)) for e in (event, twin, event)]
    results = [task.result() for task in tasks]
    assert sum(r is not None for r in results) == 1
    assert len(await series_rows(db, task_id)) == 2
    assert len(await created_events(db)) == 1


async def test_removed_rule_creates_nothing(db: AsyncEngine, settings: Settings) -> None:
    task_id = await insert_task(db, due_date=datetime(2026, 6, 1, 9, tzinfo=UTC))
    event = await completed_event(db, task_id)
    async with db.begin() as conn:
        await conn.execute(text("UPDATE tasks SET recurrence_rule = NULL WHERE id = :id"), {"id": task_id})
    assert await handle_task_completed(db, event, settings=settings) is None
    assert len(await series_rows(db, task_id)) == 1
    assert await created_events(db) == []


async def test_reopened_or_deleted_task_creates_nothing(db: AsyncEngine, settings: Settings) -> None:
    reopened = await insert_task(db, due_date=datetime(2026, 6, 1, 9, tzinfo=UTC))
    deleted = await insert_task(db, due_date=datetime(2026, 6, 1, 9, tzinfo=UTC))
    events = [await completed_event(db, reopened), await completed_event(db, deleted)]
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE tasks SET status = 'pending', completed_at = NULL WHERE id = :id"), {"id": reopened}
        )
        await conn.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": deleted})
    for event in events:
        assert await handle_task_completed(db, event, settings=settings) is None
    # Another user's id is not this user's task.
    other = await insert_task(db, due_date=datetime(2026, 6, 1, 9, tzinfo=UTC), user_id="bob")
    stolen = await completed_event(db, other)
    forged = Envelope(stolen.event_type, USER, stolen.task_id, stolen.data)
    assert await handle_task_completed(db, forged, settings=settings) is None
    assert await created_events(db) == []


async def test_count_three_makes_exactly_three(db: AsyncEngine, settings: Settings) -> None:
    start = datetime(2026, 6, 1, 9, tzinfo=UTC)
    first = await insert_task(db, due_date=start, recurrence_rule="FREQ=DAILY;COUNT=3")
    event = await completed_event(db, first)
    second = await handle_task_completed(db, event, settings=settings)
    assert second is not None
    third = await handle_task_completed(
        db, await complete(db, second, start + timedelta(days=1, hours=1)), settings=settings
    )
    assert third is not None
    after = await handle_task_completed(
        db, await complete(db, third, start + timedelta(days=2, hours=1)), settings=settings
    )
    assert after is None
    rows = await series_rows(db, first)
    assert [r["due_date"] for r in rows] == [start, start + timedelta(days=1), start + timedelta(days=2)]


async def test_late_completion_skips_to_after_completion(db: AsyncEngine, settings: Settings) -> None:
    start = datetime(2026, 5, 1, 9, tzinfo=UTC)
    # Three periods late: completed on May 4 at 10:00; the next is May 5 09:00, with no backlog of May 2-4.
    task_id = await insert_task(db, due_date=start, completed_at=datetime(2026, 5, 4, 10, tzinfo=UTC))
    event = await completed_event(db, task_id)
    assert await handle_task_completed(db, event, settings=settings) is not None
    rows = await series_rows(db, task_id)
    assert [r["due_date"] for r in rows] == [start, datetime(2026, 5, 5, 9, tzinfo=UTC)]


async def test_completion_time_comes_from_the_event(db: AsyncEngine, settings: Settings) -> None:
    start = datetime(2026, 5, 1, 9, tzinfo=UTC)
    task_id = await insert_task(db, due_date=start, completed_at=datetime(2026, 5, 1, 9, 30, tzinfo=UTC))
    event = await completed_event(db, task_id)
    # Processed a week later (a replay, a backlog): still the occurrence after the recorded completion.
    assert await handle_task_completed(db, event, settings=settings) is not None
    assert [r["due_date"] for r in await series_rows(db, task_id)][1] == datetime(2026, 5, 2, 9, tzinfo=UTC)


async def test_changed_rule_applies_from_the_next_occurrence(db: AsyncEngine, settings: Settings) -> None:
    anchor = datetime(2026, 6, 1, 9, tzinfo=UTC)  # a Monday
    first = await insert_task(db, due_date=anchor, recurrence_rule="FREQ=DAILY", status="pending")
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE tasks SET series_id = id, series_start = due_date WHERE id = :id"), {"id": first}
        )
    second = await handle_task_completed(db, await complete(db, first, anchor), settings=settings)
    assert second is not None
    # The user edits occurrence 2's rule; the service re-anchors the series there.
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE tasks SET recurrence_rule = 'FREQ=WEEKLY', series_start = due_date WHERE id = :id"),
            {"id": second},
        )
    third = await handle_task_completed(
        db, await complete(db, second, anchor + timedelta(days=1, hours=1)), settings=settings
    )
    assert third is not None
    rows = await series_rows(db, first)
    assert [r["due_date"] for r in rows] == [anchor, anchor + timedelta(days=1), anchor + timedelta(days=8)]
    assert rows[2]["recurrence_rule"] == "FREQ=WEEKLY"


# (rule, series start, due date of the completed occurrence N, expected due date of N+1), all at 09:00 wall time.
DST_CASES: dict[str, list[tuple[str, tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]]] = {
    "America/New_York": [  # DST starts 2026-03-08
        ("FREQ=DAILY", (2026, 3, 1), (2026, 3, 7), (2026, 3, 8)),
        ("FREQ=WEEKLY;BYDAY=MO", (2026, 2, 23), (2026, 3, 2), (2026, 3, 9)),
        ("FREQ=MONTHLY;BYDAY=-1FR", (2026, 1, 30), (2026, 2, 27), (2026, 3, 27)),
        ("FREQ=MONTHLY;BYMONTHDAY=31", (2026, 1, 31), (2026, 1, 31), (2026, 3, 31)),
        ("FREQ=YEARLY", (2024, 2, 29), (2024, 2, 29), (2028, 2, 29)),
    ],
    "Europe/London": [  # DST starts 2026-03-29, ends 2026-10-25
        ("FREQ=DAILY", (2026, 10, 20), (2026, 10, 24), (2026, 10, 25)),
        ("FREQ=WEEKLY;BYDAY=MO", (2026, 3, 16), (2026, 3, 23), (2026, 3, 30)),
        ("FREQ=MONTHLY;BYDAY=-1FR", (2026, 1, 30), (2026, 3, 27), (2026, 4, 24)),
        ("FREQ=MONTHLY;BYMONTHDAY=31", (2026, 1, 31), (2026, 3, 31), (2026, 5, 31)),
        ("FREQ=YEARLY", (2024, 2, 29), (2024, 2, 29), (2028, 2, 29)),
    ],
    "Australia/Sydney": [  # DST ends 2026-04-05, starts 2026-10-04
        ("FREQ=DAILY", (2026, 4, 1), (2026, 4, 4), (2026, 4, 5)),
        ("FREQ=WEEKLY;BYDAY=MO", (2026, 9, 21), (2026, 9, 28), (2026, 10, 5)),
        ("FREQ=MONTHLY;BYDAY=-1FR", (2026, 1, 30), (2026, 3, 27), (2026, 4, 24)),
        ("FREQ=MONTHLY;BYMONTHDAY=31", (2026, 1, 31), (2026, 8, 31), (2026, 10, 31)),
        ("FREQ=YEARLY", (2024, 2, 29), (2024, 2, 29), (2028, 2, 29)),
    ],
}


@pytest.mark.parametrize("zone_name", sorted(DST_CASES))
async def test_dst_matrix(db: AsyncEngine, settings: Settings, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    for rule, start, due, expected in DST_CASES[zone_name]:
        series_start = datetime(*start, 9, 0, tzinfo=zone)
        due_at = datetime(*due, 9, 0, tzinfo=zone)
        anchor = await insert_task(
            db,
            due_date=series_start,
            time_zone=zone_name,
            recurrence_rule=rule,
            status="pending" if due_at != series_start else "completed",
        )
        task_id = anchor
        if due_at != series_start:
            # Occurrence N of the series: created earlier, anchored at the series' first due date.
            task_id = await insert_task(
                db,
                due_date=due_at,
                time_zone=zone_name,
                recurrence_rule=rule,
                series_id=anchor,
                series_start=series_start,
            )
        new_id = await handle_task_completed(db, await completed_event(db, task_id), settings=settings)
        assert new_id is not None, (zone_name, rule)
        async with db.connect() as conn:
            new = (await conn.execute(text("SELECT * FROM tasks WHERE id = :id"), {"id": new_id})).mappings().one()
        local = new["due_date"].astimezone(zone)
        assert local == datetime(*expected, 9, 0, tzinfo=zone), (zone_name, rule, local)
        assert (local.hour, local.minute) == (9, 0), (zone_name, rule, local)
        assert new["remind_at"] == new["due_date"] - timedelta(minutes=45)
        assert new["series_id"] == anchor
        assert new["series_start"] == series_start


# The recurrer builds `task.created` itself (from the inserted row and the dates it expanded, in one expansion); it
# must be what the payload model makes of the task as loaded, field for field, in the cases where the one expansion
# cannot give the whole preview (the series ends within it, the horizon cuts it short) as well as the usual one.
PAYLOAD_CASES = {
    "weekly_with_category_tags_reminder": ("FREQ=WEEKLY;BYDAY=MO,TH", "Europe/London", 15),
    "daily_across_dst": ("FREQ=DAILY", "America/New_York", None),
    "count_ends_within_the_preview": ("FREQ=DAILY;COUNT=4", "Asia/Tokyo", 30),
    "until_ends_within_the_preview": ("FREQ=WEEKLY;UNTIL=20270320T000000Z", "UTC", None),
    "sparse_yearly_beyond_the_horizon": ("FREQ=YEARLY;INTERVAL=3", "Australia/Sydney", 60),
    "last_occurrence_of_a_series": ("FREQ=DAILY;COUNT=2", "UTC", None),
}


@pytest.mark.parametrize("case", sorted(PAYLOAD_CASES))
async def test_task_created_is_the_payload_model_of_the_loaded_task(
    db: AsyncEngine, settings: Settings, case: str
) -> None:
    rule, zone_name, lead = PAYLOAD_CASES[case]
    async with db.begin() as conn:
        category_id: int = (
            await conn.execute(
                text("INSERT INTO categories (user_id, name, color) VALUES (:u, 'Work', '#112233') RETURNING id"),
                {"u": USER},
            )
        ).scalar_one()
    due = datetime(2027, 3, 8, 9, 30, 0, 250000, tzinfo=ZoneInfo(zone_name))
    task_id = await insert_task(
        db,
        due_date=due,
        time_zone=zone_name,
        recurrence_rule=rule,
        category_id=category_id,
        remind_before_minutes=lead,
        remind_at=None if lead is None else due - timedelta(minutes=lead),
    )
    async with db.begin() as conn:
        for name in ("beta", "Alpha", "gamma"):
            await tag_task(conn, USER, task_id, name)

    new_id = await handle_task_completed(db, await completed_event(db, task_id), settings=settings)

    assert new_id is not None
    (event,) = await created_events(db)
    async with db.connect() as conn:
        (task,) = await load_tasks(conn, USER, [new_id])
    expected = Envelope.of(TASK_CREATED, TaskCreated.from_task(task_out(task)), user_id=USER, task_id=new_id)
    # Equal values are the same bytes on the wire: the relay publishes the outbox's jsonb as PostgreSQL prints it.
    data = event["payload"]["data"]
    assert data == expected.data
    if case == "last_occurrence_of_a_series":
        assert data["recurrence"]["next_occurrences"] == []
