"""write_events: one statement for a whole list, rows in list order, every envelope field kept."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.outbox import write_events
from mcp_todo.events import TASK_COMPLETED, TASK_UPDATED, TOPIC_RECURRENCE, TOPIC_TASK_EVENTS, Envelope


async def test_events_are_written_in_list_order_with_their_topics(db: AsyncEngine) -> None:
    events = [
        Envelope(event_type=TASK_UPDATED, user_id="zoë", task_id=100 - i, data={"title": f"t «{i}» ✓"})
        for i in range(50)
    ]
    events.append(Envelope(event_type=TASK_COMPLETED, user_id="zoë", task_id=7, data={"recurrence_rule": "FREQ=DAILY"}))
    async with db.begin() as conn:
        await write_events(conn, events)
        await write_events(conn, [])
    async with db.connect() as conn:
        rows = (
            await conn.execute(text("SELECT event_id, topics, message_key, task_id, payload FROM outbox ORDER BY id"))
        ).all()
    assert [uuid.UUID(str(row.event_id)) for row in rows] == [e.event_id for e in events]
    assert [row.payload for row in rows] == [e.to_dict() for e in events]
    assert rows[0].message_key == "100" and rows[0].task_id == 100
    assert rows[0].topics == [TOPIC_TASK_EVENTS]
    assert rows[-1].topics == [TOPIC_TASK_EVENTS, TOPIC_RECURRENCE]
