"""Per-user settings on the real database: `set` stores only what it is given and refuses bad values without
writing; the server's cache reads a user's row once per TTL."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.domain.errors import ValidationError
from mcp_todo.service.users import UserSettingsCache, get_user_settings, set_user_settings
from mcp_todo.settings import Settings


def settings() -> Settings:
    return Settings(_env_file=None, MCP_TODO_TIMEZONE="UTC")  # type: ignore[call-arg]


async def test_set_stores_what_it_is_given_and_keeps_the_rest(db: AsyncEngine) -> None:
    config = settings()
    assert (await get_user_settings(db, config, "bob")).time_zone is None
    await set_user_settings(db, config, "bob", time_zone="Europe/Paris")
    both = await set_user_settings(db, config, "bob", reminder_lead_minutes=15)
    assert (both.time_zone, both.reminder_lead_minutes) == ("Europe/Paris", 15)
    again = await get_user_settings(db, config, " bob ")
    assert (again.user_id, again.time_zone, again.reminder_lead_minutes) == ("bob", "Europe/Paris", 15)


@pytest.mark.parametrize(
    "change",
    [
        {"time_zone": "Mars/Olympus"},
        {"time_zone": "Europe/Paris", "reminder_lead_minutes": -1},
        {"time_zone": "Europe/Paris", "reminder_lead_minutes": 525_601},
        {},
    ],
)
async def test_a_bad_value_changes_nothing(db: AsyncEngine, change: dict[str, object]) -> None:
    config = settings()
    await set_user_settings(db, config, "bob", time_zone="Asia/Tokyo", reminder_lead_minutes=5)
    with pytest.raises(ValidationError):
        await set_user_settings(db, config, "bob", **change)  # type: ignore[arg-type]
    kept = await get_user_settings(db, config, "bob")
    assert (kept.time_zone, kept.reminder_lead_minutes) == ("Asia/Tokyo", 5)
    with pytest.raises(ValidationError):
        await set_user_settings(db, config, "  ", time_zone="UTC")


async def test_the_cache_reads_a_user_once_per_ttl(db: AsyncEngine) -> None:
    config = settings()
    now = [0.0]
    cache = UserSettingsCache(ttl_s=30, clock=lambda: now[0])
    assert (await cache.get(db, config, "bob")).time_zone is None
    await set_user_settings(db, config, "bob", time_zone="Europe/Paris")
    now[0] = 29.0
    assert (await cache.get(db, config, "bob")).time_zone is None  # still the row read at 0
    now[0] = 30.5
    assert (await cache.get(db, config, "bob")).time_zone == "Europe/Paris"
