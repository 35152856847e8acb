"""Reminder delivery (the notifier's consumer) and the user's notification inbox.

`deliver_reminder` handles one `reminder.due` event: a structured log line, a row in `notifications` (unique per task
and remind_at, so a redelivered event adds nothing) and every `MCP_TODO_NOTIFY_URLS` target through Apprise. The
scheduler that produces the events lives in `mcp_todo.handlers.scheduler` and is re-exported here.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_todo.domain.times import format_in_zone
from mcp_todo.events import REMINDER_DUE, Envelope
from mcp_todo.handlers.scheduler import ReminderScheduler
from mcp_todo.handlers.targets import NotifyTargets
from mcp_todo.settings import Settings

__all__ = [
    "NotificationOut",
    "ReminderScheduler",
    "deliver_reminder",
    "list_notifications",
    "reminder_message",
    "resume_undelivered",
]

log = logging.getLogger(__name__)

_TASK_STATE = text("SELECT status, time_zone FROM tasks WHERE id = :task_id AND user_id = :user_id")

_INSERT_NOTIFICATION = text(
    """
    INSERT INTO notifications (user_id, task_id, remind_at, title, due_date, message, delivered_at)
    VALUES (:user_id, :task_id, :remind_at, :title, :due_date, :message,
            CASE WHEN :no_targets THEN now() END)
    ON CONFLICT ON CONSTRAINT uq_notifications_task_remind DO NOTHING
    RETURNING id
    """
)

_EXISTING_NOTIFICATION = text(
    "SELECT id, delivered_at, title, message FROM notifications WHERE task_id = :task_id AND remind_at = :remind_at"
)

_MARK_DELIVERED = text("UPDATE notifications SET delivered_at = now() WHERE id = :id AND delivered_at IS NULL")


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


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


async def deliver_reminder(
    engine: AsyncEngine, envelope: Envelope, settings: Settings, notifier: NotifyTargets | None = None
) -> None:
    """Deliver one `reminder.due`: log line, inbox row (once), Apprise targets (retried), then mark it delivered.

    With a background `notifier` the targets are attempted after this returns, so a slow or failing target never holds
    up the partition; without one they are attempted before it returns.
    """
    if envelope.event_type != REMINDER_DUE:
        return
    data = envelope.data
    remind_at = _parse_time(data.get("remind_at"))
    if remind_at is None:
        log.warning("reminder event without remind_at ignored", extra={"event_id": str(envelope.event_id)})
        return
    due_date = _parse_time(data.get("due_date"))
    title = str(data.get("title") or f"task {envelope.task_id}")
    log.info(
        "reminder due",
        extra={"task_id": envelope.task_id, "user_id": envelope.user_id, "remind_at": remind_at.isoformat()},
    )
    targets = notifier if notifier is not None else NotifyTargets(settings.notify_url_list)

    async with engine.begin() as conn:
        state = (
            await conn.execute(_TASK_STATE, {"task_id": envelope.task_id, "user_id": envelope.user_id})
        ).one_or_none()
        if state is None or state.status != "pending":
            # Completed or deleted between the scheduler's claim and now: a reminder for it would be noise.
            log.info(
                "reminder dropped: task no longer pending",
                extra={"task_id": envelope.task_id, "user_id": envelope.user_id},
            )
            return
        message = reminder_message(title, due_date, state.time_zone)
        notification_id = (
            await conn.execute(
                _INSERT_NOTIFICATION,
                {
                    "user_id": envelope.user_id,
                    "task_id": envelope.task_id,
                    "remind_at": remind_at,
                    "title": title,
                    "due_date": due_date,
                    "message": message,
                    "no_targets": not targets,
                },
            )
        ).scalar_one_or_none()
        if notification_id is None:
            existing = (
                await conn.execute(_EXISTING_NOTIFICATION, {"task_id": envelope.task_id, "remind_at": remind_at})
            ).one()
            if existing.delivered_at is not None or targets.is_in_flight(existing.id):
                log.info("reminder already delivered", extra={"task_id": envelope.task_id, "user_id": envelope.user_id})
                return
            # The row exists but its targets were never finished (a crash mid-delivery): attempt them again.
            notification_id, title, message = existing.id, existing.title, existing.message

    if not targets:
        return
    work = _TargetDelivery(engine, targets, int(notification_id), title, message, envelope)
    if targets.background:
        targets.spawn(int(notification_id), work)
    else:
        await work()


class _TargetDelivery:
    def __init__(
        self,
        engine: AsyncEngine,
        targets: NotifyTargets,
        notification_id: int,
        title: str,
        message: str,
        envelope: Envelope | None,
    ) -> None:
        self.engine = engine
        self.targets = targets
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
                await conn.execute(_MARK_DELIVERED, {"id": self.notification_id})
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
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT id, title, message FROM notifications
                    WHERE delivered_at IS NULL AND created_at > now() - make_interval(hours => :hours)
                    ORDER BY id
                    """
                ),
                {"hours": max_age_hours},
            )
        ).all()
    for row in rows:
        work = _TargetDelivery(engine, targets, int(row.id), row.title, row.message, None)
        if targets and targets.background:
            targets.spawn(int(row.id), work)
        elif targets:
            await work()
        else:
            async with engine.begin() as conn:
                await conn.execute(_MARK_DELIVERED, {"id": row.id})
    if rows:
        log.info("undelivered notifications resumed", extra={"count": len(rows)})
    return len(rows)


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
    rows = (
        await conn.execute(
            text(
                """
                SELECT n.id, n.task_id, n.title, n.message, n.due_date, n.remind_at, n.created_at, n.delivered_at,
                       t.time_zone
                FROM notifications n
                LEFT JOIN tasks t ON t.id = n.task_id AND t.user_id = n.user_id
                WHERE n.user_id = :user_id
                ORDER BY n.created_at DESC, n.id DESC
                LIMIT :limit
                """
            ),
            {"user_id": user_id, "limit": max(1, min(limit, 500))},
        )
    ).all()
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
