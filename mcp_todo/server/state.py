"""What a running server shares: `AppState`, built once per lifespan and handed to tools and background jobs.

Tools read it from their request context (`ctx.request_context.lifespan_context`). What the SDK calls without a
request context reads it from the server's `LiveState`: the static `todo://notifications` resource (the SDK injects
no Context into a resource without URI parameters), `/readyz` and the bearer-token verifier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mcp.server.auth.middleware.auth_context import get_access_token
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.server.live_hub import LiveHub
from mcp_todo.service.context import Ctx
from mcp_todo.service.users import EffectiveUserSettings, UserSettingsCache, effective_settings
from mcp_todo.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppState:
    """Everything a running server shares: built once at start-up, passed to tools and background jobs."""

    settings: Settings
    engine: AsyncEngine
    dsn: str
    embedded: bool
    clock: Callable[[], datetime] = utc_now
    # Set when the server stops: background jobs finish their batch and return (within the server's grace, or they
    # are cancelled), e.g. `run_relay_forever(state.settings, state.dsn, state.stopping)`.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    background_jobs: tuple[str, ...] = ()  # the names of the jobs running beside the tools

    # HTTP without --insecure-local: each request acts for the user of its bearer token.
    token_auth: bool = False
    user_settings: UserSettingsCache = field(default_factory=UserSettingsCache)
    # This process's live subscribers (resources/subscribe, subscriptions/listen), fed by the live feed.
    live: LiveHub = field(init=False)

    def __post_init__(self) -> None:
        self.live = LiveHub(self.clock)

    def user_for_request(self) -> str:
        """The user a call acts for: the bearer token's user over authenticated HTTP, else MCP_TODO_USER."""
        if not self.token_auth:
            return self.settings.user
        access = get_access_token()
        if access is None or not access.subject:
            # The SDK's bearer middleware refuses unauthenticated requests before any tool runs.
            raise RuntimeError("an authenticated HTTP request carried no token")
        return access.subject

    async def user_settings_for_request(self, user_id: str) -> EffectiveUserSettings:
        """The zone and reminder lead this request's user runs with: the token's `zoneinfo` claim (OAuth), else the
        user's stored settings (`mcp-todo user set`), else the server's."""
        access = get_access_token() if self.token_auth else None
        claimed_zone = (access.claims or {}).get("zoneinfo") if access is not None else None
        stored = await self.user_settings.get(self.engine, self.settings, user_id)
        own = effective_settings(self.settings, stored, claimed_zone)
        # Every call and re-read passes here: the user's today-subscriptions follow a zone change from this request.
        self.live.zone_seen(user_id, own.time_zone)
        return own

    async def service_context(self, user_id: str, now: datetime) -> Ctx:
        """The service's context for a call of `user_id` at `now`, in the user's zone and with their reminder lead."""
        own = await self.user_settings_for_request(user_id)
        return Ctx(
            engine=self.engine,
            user_id=user_id,
            settings=self.settings,
            now=now,
            time_zone=own.time_zone,
            user_lead_minutes=own.lead_minutes,
        )


class LiveState:
    """The state of a server's open lifespan: the one it was built with, else the one its lifespan opened last."""

    def __init__(self, fixed: AppState | None = None) -> None:
        self._open: list[AppState] = [fixed] if fixed is not None else []

    def get(self) -> AppState:
        if not self._open:
            raise RuntimeError("the server is not running")
        return self._open[-1]

    @contextmanager
    def serving(self, state: AppState) -> Iterator[AppState]:
        """Make `state` the live one while its lifespan is open."""
        self._open.append(state)
        try:
            yield state
        finally:
            self._open.remove(state)
