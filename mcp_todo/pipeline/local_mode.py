"""Local mode (no KAFKA_BOOTSTRAP_SERVERS): the workers' handlers run inside the server process.

The relay hands outbox rows straight to these handlers (its LocalSink, keyed by logical topic) instead of Kafka, and
the reminder scheduler runs beside it; the code that acts on an event is the very code the worker binaries run,
including their batch path (a relay batch's events of one topic in one transaction, one by one should it fail).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.events import TOPIC_RECURRENCE, TOPIC_REMINDERS, Envelope
from mcp_todo.handlers.delivery_targets import NotifyTargets, background_notify_targets
from mcp_todo.handlers.next_occurrence import handle_task_completed, handle_task_completed_batch
from mcp_todo.handlers.reminder_delivery import (
    deliver_reminder,
    deliver_reminders,
    resume_undelivered_when_reachable,
)
from mcp_todo.jobs.reminder_scheduler import ReminderScheduler
from mcp_todo.jobs.trash_purge import run_purge_forever
from mcp_todo.pipeline.relay import run_relay_forever
from mcp_todo.runtime.supervise import supervise
from mcp_todo.settings import Settings

Handler = Callable[[Envelope], Awaitable[None]]
BatchHandler = Callable[[list[Envelope]], Awaitable[None]]


def local_handlers(engine: AsyncEngine, settings: Settings, targets: NotifyTargets) -> dict[str, Handler]:
    """The in-process handlers by logical topic, for the relay's LocalSink."""

    async def recurrence(envelope: Envelope) -> None:
        await handle_task_completed(engine, envelope, settings=settings)

    async def reminders(envelope: Envelope) -> None:
        await deliver_reminder(engine, envelope, settings, targets)

    return {TOPIC_RECURRENCE: recurrence, TOPIC_REMINDERS: reminders}


def local_batch_handlers(engine: AsyncEngine, settings: Settings, targets: NotifyTargets) -> dict[str, BatchHandler]:
    """The same handlers for a list of events in one transaction, as the workers' consumers run them."""

    async def recurrence(envelopes: list[Envelope]) -> None:
        await handle_task_completed_batch(engine, envelopes, settings=settings)

    async def reminders(envelopes: list[Envelope]) -> None:
        await deliver_reminders(engine, envelopes, settings, targets)

    return {TOPIC_RECURRENCE: recurrence, TOPIC_REMINDERS: reminders}


async def run_local_mode(engine: AsyncEngine, dsn: str, settings: Settings, stop: asyncio.Event) -> None:
    """Run the relay (to the local handlers), the reminder scheduler and the trash's daily purge until `stop` is set
    (or cancelled).

    Raises ConfigurationError at once for an invalid MCP_TODO_NOTIFY_URLS entry."""
    targets = await background_notify_targets(settings.notify_url_list)
    scheduler = ReminderScheduler(engine, dsn, settings)
    try:
        await resume_undelivered_when_reachable(engine, targets, stop)
        # Should one part fail, the other is stopped too rather than left running half of local mode.
        await supervise(
            {
                "relay": run_relay_forever(
                    settings,
                    dsn,
                    stop,
                    local_handlers(engine, settings, targets),
                    local_batch_handlers(engine, settings, targets),
                ),
                "scheduler": scheduler.run(stop),
                "purge": run_purge_forever(engine, settings, stop),
            },
            stop,
        )
    finally:
        await targets.drain(timeout_s=10.0)
