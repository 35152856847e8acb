"""The `user_settings` table: a user's own zone and reminder lead (`mcp-todo user set`); null = the server's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.models import UserSetting, table_of

_users = table_of(UserSetting)


async def get_user_setting(conn: AsyncConnection, user_id: str) -> Any:
    """The user's (user_id, time_zone, reminder_lead_minutes, updated_at) row, or None."""
    c = _users.c
    statement = select(c.user_id, c.time_zone, c.reminder_lead_minutes, c.updated_at).where(c.user_id == user_id)
    return (await conn.execute(statement)).one_or_none()


async def upsert_user_setting(conn: AsyncConnection, user_id: str, changes: dict[str, object]) -> Any:
    """Set the given columns (time_zone, reminder_lead_minutes) of the user's row, creating it; the row after."""
    c = _users.c
    statement = (
        pg_insert(_users)
        .values(user_id=user_id, **changes)
        .on_conflict_do_update(index_elements=[c.user_id], set_={**changes, "updated_at": func.now()})
        .returning(c.user_id, c.time_zone, c.reminder_lead_minutes, c.updated_at)
    )
    return (await conn.execute(statement)).one()
