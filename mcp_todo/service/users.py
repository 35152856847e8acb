"""Per-user settings: each user's zone and reminder lead (`mcp-todo user set|show`), and what a call runs with.

A call's zone is the OIDC `zoneinfo` claim of its token when that names a valid IANA zone, else the user's stored
one, else the server's MCP_TODO_TIMEZONE; the lead is the stored one, else MCP_TODO_REMINDER_LEAD_MINUTES. A running
server reads a user's row at most once per USER_CACHE_TTL_S, so `user set` reaches it within that time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db import users as users_db
from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.reminder_times import validate_lead
from mcp_todo.domain.times import resolve_zone
from mcp_todo.runtime.expiring import ExpiringCache
from mcp_todo.service.context import Ctx, transaction
from mcp_todo.settings import Settings

USER_CACHE_TTL_S: Final = 30.0
USER_CACHE_MAX: Final = 10_000
MAX_USER_CHARS: Final = 200


@dataclass(frozen=True)
class StoredUserSettings:
    """A user's own settings as stored; None = the server's default."""

    user_id: str
    time_zone: str | None = None
    reminder_lead_minutes: int | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class EffectiveUserSettings:
    """What a call runs with, and where the zone came from."""

    time_zone: str
    lead_minutes: int
    zone_source: Literal["token", "stored", "default"]


def _user_name(user_id: str) -> str:
    name = user_id.strip()
    if not name or len(name) > MAX_USER_CHARS:
        raise ValidationError(f"a user name must be 1-{MAX_USER_CHARS} characters")
    return name


def _stored(row: Any) -> StoredUserSettings:
    return StoredUserSettings(
        user_id=row.user_id,
        time_zone=row.time_zone,
        reminder_lead_minutes=row.reminder_lead_minutes,
        updated_at=row.updated_at,
    )


async def set_user_settings(
    engine: AsyncEngine,
    settings: Settings,
    user_id: str,
    *,
    time_zone: str | None = None,
    reminder_lead_minutes: int | None = None,
) -> StoredUserSettings:
    """Store the given settings of a user (the others stay as they are); everything is checked before anything is
    written, so a bad value changes nothing."""
    name = _user_name(user_id)
    changes: dict[str, object] = {}
    if time_zone is not None:
        resolve_zone(time_zone)
        changes["time_zone"] = time_zone
    if reminder_lead_minutes is not None:
        changes["reminder_lead_minutes"] = validate_lead(reminder_lead_minutes)
    if not changes:
        raise ValidationError("nothing to set — give --timezone ZONE and/or --reminder-lead MINUTES")
    async with transaction(Ctx(engine=engine, user_id=name, settings=settings)) as conn:
        row = await users_db.upsert_user_setting(conn, name, changes)
    return _stored(row)


async def get_user_settings(engine: AsyncEngine, settings: Settings, user_id: str) -> StoredUserSettings:
    """The user's stored settings (all None when the user has set nothing)."""
    name = _user_name(user_id)
    async with transaction(Ctx(engine=engine, user_id=name, settings=settings)) as conn:
        row = await users_db.get_user_setting(conn, name)
    return StoredUserSettings(user_id=name) if row is None else _stored(row)


def effective_settings(
    settings: Settings, stored: StoredUserSettings, claimed_zone: object = None
) -> EffectiveUserSettings:
    """The zone and lead a call runs with: a valid `zoneinfo` claim, else the stored zone, else the server's."""
    lead = stored.reminder_lead_minutes if stored.reminder_lead_minutes is not None else settings.reminder_lead_minutes
    if isinstance(claimed_zone, str) and _is_zone(claimed_zone):
        return EffectiveUserSettings(claimed_zone, lead, "token")
    # A stored zone was valid when set; one a later tzdata dropped falls back rather than failing every call.
    if stored.time_zone is not None and _is_zone(stored.time_zone):
        return EffectiveUserSettings(stored.time_zone, lead, "stored")
    return EffectiveUserSettings(settings.timezone, lead, "default")


def _is_zone(name: str) -> bool:
    try:
        resolve_zone(name)
    except ValidationError:
        return False
    return True


class UserSettingsCache:
    """Users' stored settings as read in the last USER_CACHE_TTL_S seconds (least recently used go first when full),
    so a call does not cost a query for them."""

    def __init__(
        self,
        ttl_s: float = USER_CACHE_TTL_S,
        max_entries: int = USER_CACHE_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: ExpiringCache[str, StoredUserSettings] = ExpiringCache(ttl_s, max_entries, clock)

    async def get(self, engine: AsyncEngine, settings: Settings, user_id: str) -> StoredUserSettings:
        stored = self._entries.get(user_id)
        if stored is None:
            stored = await get_user_settings(engine, settings, user_id)
            self._entries.put(user_id, stored)
        return stored
