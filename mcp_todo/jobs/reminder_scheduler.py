"""The reminder scheduler: turns due `remind_at`s into `reminder.due` events, each exactly once.

It sleeps until the earliest unsent reminder (the partial index `ix_tasks_reminder_due` answers that at once), is
woken early by `NOTIFY mcp_todo_reminders` when a reminder is set or moved, and polls as a safety net in case a
notification was lost (dropped connection, pooled endpoint). A claim is one transaction: `FOR UPDATE SKIP LOCKED`
picks due rows no other scheduler holds, the conditional update marks them sent, and the events go to the outbox;
so several schedulers never send one reminder twice, and a crash before the commit leaves it for the next one.

Time is the database's clock (`clock_timestamp()`), the same for every replica, never this machine's.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db import task_batches
from mcp_todo.db.engine import use_custom_plans
from mcp_todo.db.outbox import write_events
from mcp_todo.domain.reminder_times import is_due_for_delivery
from mcp_todo.domain.times import format_in_zone, resolve_zone
from mcp_todo.events import REMINDER_DUE, Envelope
from mcp_todo.runtime.backoff import backoff_delay
from mcp_todo.runtime.waits import wait_any
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "mcp_todo_reminders"
MAX_LATE = timedelta(days=1)
# A timer may fire a millisecond before the reminder is due by the database clock; this keeps it from spinning.
_WAKE_SLACK_S = 0.005
_LOCKED_RETRY_S = 0.1
# What a lost or refused database connection looks like (SQLAlchemy wraps the driver's errors, but not always those
# raised while connecting); the scheduler backs off and tries again.
_DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def wait_seconds(next_at: datetime | None, now: datetime, poll_interval_s: float) -> float:
    """How long to sleep: until the next reminder, but never longer than the safety-net poll interval."""
    if next_at is None:
        return poll_interval_s
    return min(max((next_at - now).total_seconds() + _WAKE_SLACK_S, 0.0), poll_interval_s)


class ReminderScheduler:
    """Claims due reminders and writes `reminder.due` to the outbox; safe to run in several replicas."""

    def __init__(
        self,
        engine: AsyncEngine,
        dsn: str,
        settings: Settings,
        *,
        poll_interval_s: float = 30.0,
        batch_size: int = 500,
    ) -> None:
        self.engine = engine
        self.dsn = dsn
        self.settings = settings
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.ready = asyncio.Event()  # set after the first pass (catch-up done) with the listener attached
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._listener_failed = False

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        try:
            while not stop.is_set():
                listening = await self._ensure_listener()
                self._wake.clear()  # before the pass, so a NOTIFY during it causes another pass
                try:
                    claimed = await self.run_once()
                    next_at, now = await self._next_due()
                    timeout_s = wait_seconds(next_at, now, self.poll_interval_s)
                    if not claimed and next_at is not None and next_at <= now:
                        # Due but not claimable: another transaction holds the row (a scheduler mid-claim, a user's
                        # edit). Look again shortly rather than spin until it lets go.
                        timeout_s = max(timeout_s, _LOCKED_RETRY_S)
                    failures = 0
                except _DB_ERRORS as exc:
                    timeout_s = backoff_delay(failures, base_s=2.0, cap_s=self.poll_interval_s)
                    failures += 1
                    log.warning(
                        "reminder scheduler pass failed",
                        extra={"error": exc.__class__.__name__, "retry_in_s": round(timeout_s, 2)},
                    )
                if not listening:
                    timeout_s = min(timeout_s, 5.0)  # retry LISTEN soon; polling covers the meantime
                self.ready.set()
                await wait_any([stop, self._wake], timeout_s)
        finally:
            await self._close_listener()

    async def run_once(self) -> int:
        """Claim every reminder due now (in batches); returns how many were claimed."""
        total = 0
        while True:
            claimed = await self._claim_batch()
            total += claimed
            if claimed < self.batch_size:
                return total

    async def _claim_batch(self) -> int:
        async with self.engine.begin() as conn:
            await use_custom_plans(conn)
            # The events go to the outbox earliest reminder first.
            rows = await task_batches.claim_due_reminders(conn, self.batch_size)
            events: list[Envelope] = []
            stale: list[int] = []
            for row in rows:
                if is_due_for_delivery(row.remind_at, row.due_date, row.now, max_late=MAX_LATE):
                    events.append(_reminder_event(row))
                else:
                    stale.append(row.id)
            await write_events(conn, events)
        if stale:
            # Marked sent without an event: a reminder for something past due by more than a day is noise.
            log.info("stale reminders skipped", extra={"count": len(stale), "task_ids": stale[:50]})
        if rows:
            log.info("reminders claimed", extra={"fired": len(events), "skipped": len(stale)})
        return len(rows)

    async def _next_due(self) -> tuple[datetime | None, datetime]:
        async with self.engine.connect() as conn:
            return await task_batches.next_reminder_due(conn)

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    def _on_terminate(self, *_: Any) -> None:
        self._wake.set()

    async def _ensure_listener(self) -> bool:
        if self._listener is not None and not self._listener.is_closed():
            return True
        self._listener = None
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            await conn.add_listener(CHANNEL, self._on_notify)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if conn is not None:
                conn.terminate()
            if not self._listener_failed:
                log.warning("LISTEN connection failed; polling", extra={"error": exc.__class__.__name__})
            self._listener_failed = True
            return False
        conn.add_termination_listener(self._on_terminate)
        self._listener = conn
        if self._listener_failed:
            log.info("LISTEN connection restored")
        self._listener_failed = False
        return True

    async def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), timeout=5)
        except (OSError, TimeoutError, asyncpg.InterfaceError):
            conn.terminate()


def _reminder_event(row: Any) -> Envelope:
    """The `reminder.due` of a claimed row. Built as its JSON form directly (the times formatted in the task's zone,
    as the `ReminderDue` model writes them): a claim writes hundreds, and the model's validate-and-dump was most of
    the scheduler's CPU. tests/unit/test_reminders.py checks it against the model."""
    zone = resolve_zone(row.time_zone)
    data = {
        "task_id": row.id,
        "title": row.title,
        "due_date": format_in_zone(row.due_date, zone),
        "remind_at": format_in_zone(row.remind_at, zone),
    }
    return Envelope(REMINDER_DUE, row.user_id, row.id, data)
