"""Reminder delivery (the notifier's consumer) and the user's notification inbox.

`deliver_reminders` handles a batch of `reminder.due` events in one transaction (the notifier's consumer hands it a
partition's batch): per reminder a structured log line and a row in `notifications` (unique per task and remind_at, so
a redelivered event adds nothing; one INSERT … SELECT FROM unnest for the batch), then every `MCP_TODO_NOTIFY_URLS`
target through Apprise, per reminder. `deliver_reminder` is the same code with a batch of one. The events come from
a periodic job, `mcp_todo.jobs.reminder_scheduler`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_todo.db import notifications as inbox
from mcp_todo.db import task_batches
from mcp_todo.db.availability import database_unreachable
from mcp_todo.db.engine import use_custom_plans
from mcp_todo.domain.times import format_in_zone
from mcp_todo.events import REMINDER_DUE, Envelope, ReminderDue, read_payload
from mcp_todo.handlers.delivery_targets import NotifyTargets
from mcp_todo.metrics import REMINDER_LATENESS
from mcp_todo.runtime.backoff import backoff_delay
from mcp_todo.runtime.waits import sleep_unless_stopped
from mcp_todo.settings import Settings

__all__ = [
    "NotificationOut",
    "deliver_reminder",
    "deliver_reminders",
    "list_notifications",
    "reminder_message",
    "resume_undelivered",
    "resume_undelivered_when_reachable",
]

log = logging.getLogger(__name__)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def reminder_message(title: str, due_date: datetime | None, time_zone: str | None) -> str:
    """The text a user reads: the task and its due time in the task's zone."""
    if due_date is None:
        return f"Reminder: “{title}”"
    zone = _zone(time_zone)
    local = due_date.astimezone(zone)
    when = local.strftime("%a %d %b %Y at %H:%M")
    offset = local.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}"
    return f"Reminder: “{title}” is due {when} ({zone.key}, UTC{offset})"


@dataclass(slots=True)
class _Reminder:
    envelope: Envelope
    remind_at: datetime
    due_date: datetime | None
    title: str
    message: str = ""


async def deliver_reminder(
    engine: AsyncEngine, envelope: Envelope, settings: Settings, notifier: NotifyTargets | None = None
) -> None:
    """Deliver one `reminder.due`: log line, inbox row (once), Apprise targets (retried), then mark it delivered.

    With a background `notifier` the targets are attempted after this returns, so a slow or failing target never holds
    up the partition; without one they are attempted before it returns.
    """
    await deliver_reminders(engine, [envelope], settings, notifier)


async def deliver_reminders(
    engine: AsyncEngine, envelopes: list[Envelope], settings: Settings, notifier: NotifyTargets | None = None
) -> None:
    """Deliver a batch of `reminder.due` events (other types are ignored): one transaction for every inbox row, then
    each reminder's targets, as `deliver_reminder` describes. A reminder repeated in the batch is delivered once."""
    reminders: dict[tuple[int, datetime], _Reminder] = {}
    for envelope in envelopes:
        if envelope.event_type != REMINDER_DUE:
            continue
        event = read_payload(envelope, ReminderDue)
        if event is None:
            continue
        remind_at = event.remind_at
        key = (envelope.task_id, remind_at)
        if key in reminders:
            continue
        title = event.title or f"task {envelope.task_id}"
        reminders[key] = _Reminder(envelope, remind_at, event.due_date, title)
        log.info(
            "reminder due",
            extra={"task_id": envelope.task_id, "user_id": envelope.user_id, "remind_at": remind_at.isoformat()},
        )
    if not reminders:
        return
    targets = notifier if notifier is not None else NotifyTargets(settings.notify_url_list)
    todo: list[_TargetDelivery] = []

    async with engine.begin() as conn:
        await use_custom_plans(conn)
        pending = await _pending_reminders(conn, list(reminders.values()))
        if not pending:
            return
        pending.sort(key=lambda r: (r.envelope.task_id, r.remind_at))
        new_ids = await inbox.insert_many(
            conn,
            user_ids=[r.envelope.user_id for r in pending],
            task_ids=[r.envelope.task_id for r in pending],
            remind_ats=[r.remind_at for r in pending],
            titles=[r.title for r in pending],
            due_dates=[r.due_date for r in pending],
            messages=[r.message for r in pending],
            delivered=not targets,
        )
        await inbox.announce(conn, inbox_announcements(pending, new_ids))
        for reminder in pending:
            notification_id = new_ids.get((reminder.envelope.task_id, reminder.remind_at))
            if notification_id is not None:
                todo.append(
                    _TargetDelivery(
                        engine,
                        targets,
                        reminder.envelope.user_id,
                        notification_id,
                        reminder.title,
                        reminder.message,
                        reminder.envelope,
                    )
                )
        existing = [r for r in pending if (r.envelope.task_id, r.remind_at) not in new_ids]
        if existing:
            todo += await _unfinished(conn, existing, engine, targets)

    delivered_at = datetime.now(UTC)
    for reminder in pending:
        if (reminder.envelope.task_id, reminder.remind_at) in new_ids:  # delivered now, not a redelivery
            REMINDER_LATENESS.observe((delivered_at - reminder.remind_at).total_seconds())

    if not targets:
        return
    for work in todo:
        if targets.background:
            targets.spawn(work.notification_id, work)
        else:
            await work()


# A user's announcement names at most this many tasks (PostgreSQL's payload limit is 8000 bytes).
_ANNOUNCED_TASKS = 200


def inbox_announcements(pending: list[_Reminder], new_ids: dict[tuple[int, datetime], int]) -> list[str]:
    """One JSON payload per user with new inbox rows: the user, and the tasks (left out when there are many)."""
    tasks: dict[str, list[int]] = {}
    for reminder in pending:
        if (reminder.envelope.task_id, reminder.remind_at) in new_ids:
            tasks.setdefault(reminder.envelope.user_id, []).append(reminder.envelope.task_id)
    return [
        json.dumps({"user": user, "tasks": ids if len(ids) <= _ANNOUNCED_TASKS else []}, separators=(",", ":"))
        for user, ids in tasks.items()
    ]


async def _pending_reminders(conn: AsyncConnection, reminders: list[_Reminder]) -> list[_Reminder]:
    """The reminders whose task is still pending (their message set); the others are dropped, logged."""
    states = await task_batches.task_states(
        conn, [r.envelope.task_id for r in reminders], [r.envelope.user_id for r in reminders]
    )
    pending: list[_Reminder] = []
    for reminder in reminders:
        state = states.get(reminder.envelope.task_id)
        if state is None or state.status != "pending":
            # Completed or deleted between the scheduler's claim and now: a reminder for it would be noise.
            log.info(
                "reminder dropped: task no longer pending",
                extra={"task_id": reminder.envelope.task_id, "user_id": reminder.envelope.user_id},
            )
            continue
        reminder.message = reminder_message(reminder.title, reminder.due_date, state.time_zone)
        pending.append(reminder)
    return pending


async def _unfinished(
    conn: AsyncConnection, reminders: list[_Reminder], engine: AsyncEngine, targets: NotifyTargets
) -> list[_TargetDelivery]:
    """Of reminders whose inbox row exists already: those whose targets were never finished (a crash mid-delivery)."""
    rows = await inbox.existing(
        conn,
        [r.envelope.user_id for r in reminders],
        [r.envelope.task_id for r in reminders],
        [r.remind_at for r in reminders],
    )
    todo: list[_TargetDelivery] = []
    for reminder in reminders:
        envelope = reminder.envelope
        existing = rows.get((envelope.task_id, reminder.remind_at))
        if existing is None:  # deleted since the conflict (the task was deleted): nothing left to deliver
            continue
        if existing.delivered_at is not None or targets.is_in_flight(existing.id):
            log.info("reminder already delivered", extra={"task_id": envelope.task_id, "user_id": envelope.user_id})
            continue
        # Attempt the targets again, with the row's own title and message.
        todo.append(
            _TargetDelivery(
                engine, targets, envelope.user_id, int(existing.id), existing.title, existing.message, envelope
            )
        )
    return todo


class _TargetDelivery:
    def __init__(
        self,
        engine: AsyncEngine,
        targets: NotifyTargets,
        user_id: str,
        notification_id: int,
        title: str,
        message: str,
        envelope: Envelope | None,
    ) -> None:
        self.engine = engine
        self.targets = targets
        self.user_id = user_id
        self.notification_id = notification_id
        self.title = title
        self.message = message
        self.context: dict[str, object] = {"notification_id": notification_id}
        if envelope is not None:
            self.context |= {"task_id": envelope.task_id, "user_id": envelope.user_id}

    async def __call__(self) -> None:
        report = await self.targets.send(f"Reminder: {self.title}", self.message, context=self.context)
        try:
            async with self.engine.begin() as conn:
                await inbox.mark_delivered(conn, self.user_id, self.notification_id)
        except (SQLAlchemyError, OSError) as exc:
            # The inbox row stays undelivered; the next start resumes it (at least once for the targets).
            log.warning(
                "could not mark notification delivered", extra={**self.context, "error": exc.__class__.__name__}
            )
            return
        log.info(
            "reminder delivered",
            extra={**self.context, "targets_ok": report.delivered, "targets_failed": report.failed},
        )


async def resume_undelivered(engine: AsyncEngine, targets: NotifyTargets, *, max_age_hours: int = 24) -> int:
    """At start-up: attempt the targets of inbox rows a previous process created but never finished."""
    async with engine.connect() as conn:
        rows = await inbox.undelivered(conn, max_age_hours)
    for row in rows:
        work = _TargetDelivery(engine, targets, row.user_id, int(row.id), row.title, row.message, None)
        if targets and targets.background:
            targets.spawn(int(row.id), work)
        elif targets:
            await work()
        else:
            async with engine.begin() as conn:
                await inbox.mark_delivered(conn, row.user_id, int(row.id))
    if rows:
        log.info("undelivered notifications resumed", extra={"count": len(rows)})
    return len(rows)


async def resume_undelivered_when_reachable(
    engine: AsyncEngine, targets: NotifyTargets, stop: asyncio.Event, *, max_age_hours: int = 24
) -> int:
    """`resume_undelivered`, waiting with backoff while the database cannot be reached (a worker may start while
    PostgreSQL restarts: its first connection can fail mid-handshake) instead of failing the process; 0 when `stop`
    is set first. Any other error is raised."""
    attempt = 0
    while True:
        try:
            return await resume_undelivered(engine, targets, max_age_hours=max_age_hours)
        except Exception as err:
            if not database_unreachable(err):
                raise
            delay_s = backoff_delay(attempt, base_s=0.5, cap_s=10.0)
            log.warning(
                "undelivered notifications not resumed yet: database unreachable",
                extra={"error": type(err).__name__, "attempt": attempt + 1, "retry_in_s": round(delay_s, 2)},
            )
            if not await sleep_unless_stopped(stop, delay_s):
                return 0
            attempt += 1


class NotificationOut(BaseModel):
    """One delivered reminder in the user's inbox; times in the task's zone (UTC once the task is gone)."""

    id: int
    task_id: int
    title: str
    message: str
    due_date: str | None = Field(description="The task's due date when the reminder fired")
    remind_at: str
    created_at: str
    delivered_at: str | None


async def list_notifications(conn: AsyncConnection, user_id: str, limit: int = 50) -> list[NotificationOut]:
    """The user's most recent reminders, newest first (the `todo://notifications` resource)."""
    rows = await inbox.recent(conn, user_id, max(1, min(limit, 500)))
    out = []
    for row in rows:
        zone = _zone(row.time_zone)
        out.append(
            NotificationOut(
                id=row.id,
                task_id=row.task_id,
                title=row.title,
                message=row.message,
                due_date=format_in_zone(row.due_date, zone),
                remind_at=format_in_zone(row.remind_at, zone) or "",
                created_at=format_in_zone(row.created_at, zone) or "",
                delivered_at=format_in_zone(row.delivered_at, zone),
            )
        )
    return out
