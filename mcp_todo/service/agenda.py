"""The live resources' reads (docs/live.md): one task as a tool shows it (`todo://tasks/{id}`), and today's agenda in
the user's zone as a few short lines of text (`todo://today`), sized for a model's context."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Final

from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.task_lists import SOONEST_FIRST, TaskFilter, page_of_tasks
from mcp_todo.db.tasks import TaskRow
from mcp_todo.domain.times import resolve_zone
from mcp_todo.service.context import Ctx, transaction
from mcp_todo.service.shapes import lean_task

# The agenda shows at most this many tasks (then says how many more there are), each title cut to TITLE_SHOWN
# characters and at most TAGS_SHOWN tags of TAG_SHOWN characters: the whole text stays under 2 KB.
AGENDA_TASKS: Final = 20
TITLE_SHOWN: Final = 32
TAGS_SHOWN: Final = 1
TAG_SHOWN: Final = 10
_SHOWN_PRIORITIES: Final = {"low": " !low", "high": " !high", "urgent": " !urgent"}


async def one_task(ctx: Ctx, task_id: int) -> dict[str, Any]:
    """The task's lean JSON form, as a tool's result shows one task (NOT_FOUND for another user's, or one in the
    trash)."""
    async with transaction(ctx) as conn:
        row = await tasks_db.fetch(conn, ctx.user_id, task_id)
    return lean_task(row, ctx.time_zone, in_list=False)


def day_bounds(now: datetime, zone_name: str) -> tuple[date, datetime, datetime]:
    """The user's local date at `now`, and that day's start and end (the next local midnight) as aware times."""
    zone = resolve_zone(zone_name)
    day = now.astimezone(zone).date()
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return day, start, end


async def today_text(ctx: Ctx) -> str:
    """Today's agenda: pending tasks overdue, due today, or with a reminder today (due later), in the user's zone."""
    day, start, end = day_bounds(ctx.now, ctx.time_zone)
    where = TaskFilter(ctx.user_id)
    where.pending_today(start, end)
    async with transaction(ctx) as conn:
        rows, total = await page_of_tasks(conn, where, SOONEST_FIRST, AGENDA_TASKS, 0)
    return render_agenda(rows, total, day, start, end, ctx.time_zone)


def render_agenda(rows: list[TaskRow], total: int, day: date, start: datetime, end: datetime, zone_name: str) -> str:
    zone = resolve_zone(zone_name)
    overdue = [r for r in rows if r.due_date is not None and r.due_date < start]
    due = [r for r in rows if r.due_date is not None and start <= r.due_date < end]
    reminded = [r for r in rows if r not in overdue and r not in due]
    head = (
        f"today {day.isoformat()} {day.strftime('%a')} {zone_name}: "
        f"{len(overdue)} overdue, {len(due)} due, {len(reminded)} reminders"
    )
    lines = [head]
    for name, section, when in (
        ("overdue", overdue, "%m-%d %H:%M"),
        ("due today", due, "%H:%M"),
        ("reminders today", reminded, None),
    ):
        if section:
            lines.append(f"{name}:")
            lines += [_line(row, zone, when, start, end) for row in section]
    if total > len(rows):
        lines.append(f"+{total - len(rows)} more: list_tasks or get_overdue_tasks")
    if len(lines) == 1:
        lines.append("nothing due today")
    return "\n".join(lines)


def _line(row: TaskRow, zone: Any, when: str | None, start: datetime, end: datetime) -> str:
    """`#id [when] title [!priority] [#tag…] [~rep] [@reminder]`: when is the due time (the date too if overdue)."""
    parts = [f"#{row.id}"]
    if when is not None and row.due_date is not None:
        parts.append(row.due_date.astimezone(zone).strftime(when))
    title = row.title if len(row.title) <= TITLE_SHOWN else row.title[: TITLE_SHOWN - 1] + "…"
    parts.append(title)
    text = " ".join(parts) + _SHOWN_PRIORITIES.get(row.priority, "")
    for tag in row.tags[:TAGS_SHOWN]:
        text += " #" + tag.name[:TAG_SHOWN]
    if row.recurrence_rule:
        text += " ~rep"
    if row.remind_at is not None and start <= row.remind_at < end and not row.reminder_sent:
        text += " @" + row.remind_at.astimezone(zone).strftime("%H:%M")
    return text
