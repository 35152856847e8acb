"""Outbox writes: every event is inserted in the same transaction as the change it describes."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mcp_todo.events import Envelope, topics_for

# One statement for the whole list (the recurrer and the scheduler write hundreds at once): one round trip, and the
# statement-level NOTIFY trigger fires once.
_INSERT = text(
    """INSERT INTO outbox (event_id, event_type, topics, message_key, task_id, user_id, payload)
       SELECT r.event_id, r.event_type, r.topics, r.message_key, r.task_id, r.user_id, r.payload
       FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
           event_id uuid, event_type text, topics text[], message_key text, task_id bigint, user_id text,
           payload jsonb, ord bigint)
       ORDER BY r.ord"""
)


async def write_events(db: AsyncSession | AsyncConnection, events: list[Envelope]) -> None:
    """Insert the events in list order; the caller's transaction commits them with the change."""
    if not events:
        return
    rows = [
        {
            "event_id": str(event.event_id),
            "event_type": event.event_type,
            "topics": topics_for(event.event_type, event.data),
            "message_key": event.key,
            "task_id": event.task_id,
            "user_id": event.user_id,
            "payload": event.to_dict(),
            "ord": ord_,
        }
        for ord_, event in enumerate(events)
    ]
    await db.execute(_INSERT, {"rows": json.dumps(rows, ensure_ascii=False)})
