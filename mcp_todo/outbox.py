"""Outbox writes: every event is inserted in the same transaction as the change it describes."""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mcp_todo.events import Envelope, topics_for
from mcp_todo.models import OutboxRow


async def write_events(db: AsyncSession | AsyncConnection, events: list[Envelope]) -> None:
    """Insert the events; the caller's transaction commits them with the change (and the trigger wakes the relay)."""
    if not events:
        return
    rows = [
        {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "topics": topics_for(event.event_type, event.data),
            "message_key": event.key,
            "task_id": event.task_id,
            "user_id": event.user_id,
            "payload": event.to_dict(),
        }
        for event in events
    ]
    await db.execute(insert(OutboxRow), rows)
