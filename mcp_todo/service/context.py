"""What every use case runs with: who, when, where (`Ctx`), and one transaction that speaks in TodoErrors.

Driver errors are translated here, once, into the codes a user can act on; SQL and driver text never leave.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_todo.db.availability import UNAVAILABLE_STATES, sqlstate
from mcp_todo.domain.errors import (
    ConflictError,
    NotFoundError,
    TodoError,
    UnavailableError,
    ValidationError,
)
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)


class Unset:
    """The type of UNSET: an argument the caller did not give (as opposed to an explicit null, which clears)."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = Unset()


@dataclass(frozen=True)
class Ctx:
    """One call's context. `now` is passed in (tests pin it); `time_zone` reads arguments without an offset and is
    stored on the tasks this call creates; `user_lead_minutes` is the user's own reminder lead (None: the server's)."""

    engine: AsyncEngine
    user_id: str
    settings: Settings
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    time_zone: str = ""
    user_lead_minutes: int | None = None

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("Ctx.now must be timezone-aware")
        if not self.time_zone:
            object.__setattr__(self, "time_zone", self.settings.timezone)

    @property
    def lead_minutes(self) -> int:
        return self.settings.reminder_lead_minutes if self.user_lead_minutes is None else self.user_lead_minutes


_RETRY_STATES = ("40001", "40P01")  # serialization failure, deadlock


def translate_db_error(err: sa_exc.DBAPIError) -> TodoError | None:
    """The TodoError for a driver error a user can act on, or None when it is a defect (shown as INTERNAL_ERROR)."""
    state = sqlstate(err)
    if err.connection_invalidated or state.startswith(UNAVAILABLE_STATES):
        return UnavailableError("the database is unreachable — try again shortly")
    if state == "23505":
        return ConflictError("that already exists — list it to see the existing one")
    if state == "23503":
        # A category, tag or task referenced by this call was deleted by a concurrent call.
        return NotFoundError("something this call refers to no longer exists — list it again to see the ids")
    if state in _RETRY_STATES:
        return ConflictError("another change to the same data happened at the same moment — try again")
    if state.startswith("22") or state == "23514":
        return ValidationError("a value is out of range or malformed — check the arguments against the tool's schema")
    return None


@asynccontextmanager
async def transaction(ctx: Ctx) -> AsyncIterator[AsyncConnection]:
    """One database transaction; commits on success, rolls back on any error, and raises TodoErrors only for the
    database's own failures (unexpected ones propagate unchanged, to be logged with their traceback at the edge)."""
    try:
        async with ctx.engine.begin() as conn:
            yield conn
    except sa_exc.DBAPIError as err:
        translated = translate_db_error(err)
        if translated is None:
            raise
        log.info("database error", extra={"sqlstate": sqlstate(err), "code": translated.code})
        raise translated from err
    except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as err:
        # Raised unwrapped when the pool cannot open a connection at all (server down, refused, timed out, too many
        # connections); errors of statements always arrive wrapped in DBAPIError.
        log.info("database unreachable", extra={"error": err.__class__.__name__})
        raise UnavailableError("the database is unreachable — try again shortly") from err
