"""`mcp-todo-recurrer`: consumes `task-recurrence` and creates the next occurrence of each completed recurring task.

Runs, side by side: the consumer loop (group `mcp-todo-recurrer`; a partition's batch of events in one transaction;
offsets committed after the new occurrences are), the outbox relay that publishes the `task.created` events it
writes, and the trash's daily purge (`mcp_todo.jobs.trash_purge`).
"""

from __future__ import annotations

import asyncio

from mcp_todo.events import GROUP_RECURRER, TASK_COMPLETED, TOPIC_RECURRENCE, Envelope
from mcp_todo.handlers.next_occurrence import handle_task_completed, handle_task_completed_batch
from mcp_todo.jobs.trash_purge import run_purge_forever
from mcp_todo.pipeline.consumer import ConsumerLoop
from mcp_todo.pipeline.relay import run_relay_forever
from mcp_todo.pipeline.worker_process import announce_ready, open_database, worker_command
from mcp_todo.runtime.supervise import supervise
from mcp_todo.settings import Settings

NAME = "mcp-todo-recurrer"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    async with open_database(settings) as db:

        async def handle(envelope: Envelope) -> None:
            await handle_task_completed(db.engine, envelope, settings=settings)

        async def handle_batch(envelopes: list[Envelope]) -> None:
            await handle_task_completed_batch(db.engine, envelopes, settings=settings)

        consumer = ConsumerLoop(
            settings,
            TOPIC_RECURRENCE,
            GROUP_RECURRER,
            handle,
            batch_handler=handle_batch,
            event_types={TASK_COMPLETED},
        )
        await supervise(
            {
                "consumer": consumer.run(stop),
                "relay": run_relay_forever(settings, db.dsn, stop),
                "purge": run_purge_forever(db.engine, settings, stop),
                "ready": announce_ready(NAME, [consumer.ready.wait()], stop, topic=consumer.topic),
            },
            stop,
        )


main = worker_command(
    NAME,
    "Recurrence worker: consumes task-recurrence (consumer group mcp-todo-recurrer) and creates the next occurrence "
    "of every completed recurring task, exactly once. Needs KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (unset: the "
    "embedded database); without Kafka this work runs inside the server (`mcp-todo`). SIGTERM/SIGINT drain and exit.",
    serve,
)

if __name__ == "__main__":
    main()
