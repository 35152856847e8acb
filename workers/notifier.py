"""`mcp-todo-notifier`: turns due reminders into `reminder.due` events and delivers them.

Runs, side by side: the reminder scheduler (claims due reminders, writes `reminder.due` to the outbox), the outbox
relay that publishes them, and the consumer loop on `task-reminders` (group `mcp-todo-notifier`) that delivers each:
log line, inbox row, `MCP_TODO_NOTIFY_URLS` targets (attempted in the background so a slow target never holds up
the partition; drained on shutdown, resumed from the inbox at the next start if cut short).
"""

from __future__ import annotations

import asyncio

from mcp_todo.events import GROUP_NOTIFIER, REMINDER_DUE, TOPIC_REMINDERS, Envelope
from mcp_todo.handlers.delivery_targets import background_notify_targets
from mcp_todo.handlers.reminder_delivery import (
    deliver_reminder,
    deliver_reminders,
    resume_undelivered_when_reachable,
)
from mcp_todo.jobs.reminder_scheduler import ReminderScheduler
from mcp_todo.pipeline.consumer import ConsumerLoop
from mcp_todo.pipeline.relay import run_relay_forever
from mcp_todo.pipeline.worker_process import announce_ready, open_database, worker_command
from mcp_todo.runtime.supervise import supervise
from mcp_todo.settings import Settings

NAME = "mcp-todo-notifier"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    targets = await background_notify_targets(settings.notify_url_list)
    async with open_database(settings) as db:

        async def handle(envelope: Envelope) -> None:
            await deliver_reminder(db.engine, envelope, settings, targets)

        async def handle_batch(envelopes: list[Envelope]) -> None:
            await deliver_reminders(db.engine, envelopes, settings, targets)

        consumer = ConsumerLoop(
            settings, TOPIC_REMINDERS, GROUP_NOTIFIER, handle, batch_handler=handle_batch, event_types={REMINDER_DUE}
        )
        scheduler = ReminderScheduler(db.engine, db.dsn, settings)
        await resume_undelivered_when_reachable(db.engine, targets, stop)
        try:
            await supervise(
                {
                    "consumer": consumer.run(stop),
                    "relay": run_relay_forever(settings, db.dsn, stop),
                    "scheduler": scheduler.run(stop),
                    "ready": announce_ready(
                        NAME,
                        [consumer.ready.wait(), scheduler.ready.wait()],
                        stop,
                        topic=consumer.topic,
                        notify_targets=len(targets.targets),
                    ),
                },
                stop,
            )
        finally:
            await targets.drain(timeout_s=10.0)


main = worker_command(
    NAME,
    "Reminder worker: fires every due reminder once (including those that came due while it was stopped, if the "
    "task is at most a day past due), publishes reminder.due to task-reminders and delivers it (consumer group "
    "mcp-todo-notifier): a log line, the user's notification inbox and every MCP_TODO_NOTIFY_URLS target. Needs "
    "KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (unset: the embedded database); without Kafka this work runs inside "
    "the server (`mcp-todo`). SIGTERM/SIGINT drain and exit.",
    serve,
)

if __name__ == "__main__":
    main()
