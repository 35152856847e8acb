"""Writes a CalDAV client asks for, through the same use cases as the tools: a new task keeps the UID the client gave
it, an edit becomes the update_task / set_reminder / tag changes it amounts to, a delete goes to the trash. Each
write checks and emits exactly what the tool calls would (task.created, task.updated, task.completed, …), and a PUT
is one transaction: the task, its tags, reminder, dependencies, kept lines and their events commit or roll back
together."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import dav as dav_db
from mcp_todo.db import labels as labels_db
from mcp_todo.db.labels import TAG
from mcp_todo.db.outbox import write_events
from mcp_todo.domain import recurrence
from mcp_todo.domain.errors import ConflictError, ValidationError
from mcp_todo.domain.times import resolve_zone
from mcp_todo.events import Envelope
from mcp_todo.service import dependencies
from mcp_todo.service.categories import add_category
from mcp_todo.service.changes import task_created
from mcp_todo.service.context import Ctx, transaction
from mcp_todo.service.dependencies import MAX_BLOCKERS
from mcp_todo.service.hierarchy import recurrence_from_value, until_tree_holds
from mcp_todo.service.labels import add_label_in
from mcp_todo.service.reminders import reminder_in
from mcp_todo.service.tags import RULES as TAG_RULES
from mcp_todo.service.tags import tag_in, untag_in
from mcp_todo.service.tasks import complete_in, delete_task, insert_task, new_task, update_in, update_task

UID_MAX = 255


@dataclass
class ClientTask:
    """A task as a client wrote it, in the tools' terms: `due_date` as update_task takes it (ISO 8601 with an offset,
    a wall time in the user's zone, or a date), the reminder as a lead or an absolute time."""

    uid: str
    title: str
    description: str | None = None
    priority: str = "medium"
    due: datetime | None = None  # the instant, to compare with the stored one
    due_date: str | None = None
    tags: list[str] = field(default_factory=list)
    rule: str | None = None
    recurrence_from: str = "schedule"
    lead: int | None = None
    remind_at: str | None = None
    reminder_given: bool = False
    completed: bool = False
    parent_uid: str | None = None
    depends_on: list[str] = field(default_factory=list)  # the UIDs of the to-dos it waits on (RFC 9253)
    kept: str | None = None


async def _tag_ids(conn: AsyncConnection, ctx: Ctx, names: list[str]) -> list[int]:
    """The ids of the tags named (ignoring case), each created when the user has none of that name yet."""
    ids: list[int] = []
    for name in dict.fromkeys(names):
        found = await labels_db.id_by_name(conn, TAG, ctx.user_id, name)
        if found is None:
            try:
                found = (await add_label_in(conn, ctx, TAG_RULES, name, None))[0]
            except ConflictError:  # created meanwhile by another request, committed while this one waited for it
                found = await labels_db.id_by_name(conn, TAG, ctx.user_id, name)
                if found is None:
                    raise
        ids.append(found)
    return list(dict.fromkeys(ids))


async def _parent_id(conn: AsyncConnection, ctx: Ctx, parent_uid: str | None) -> int | None:
    if parent_uid is None:
        return None
    found = await dav_db.task_by_uid(conn, ctx.user_id, parent_uid)
    if found is None:
        raise ValidationError(f"RELATED-TO names a parent task ({parent_uid[:80]!r}) this server does not have")
    return found


async def _blockers(conn: AsyncConnection, ctx: Ctx, task: ClientTask) -> tuple[list[int], str | None]:
    """(the ids of the tasks the client's DEPENDS-ON name, the kept lines with those this server does not have, or has
    in the trash, added back as written: a client that sends a dependency before its blocker, or still names a
    blocker deleted meanwhile, loses neither, and the next write after it arrives or is restored makes it one)."""
    if not task.depends_on:
        return [], task.kept
    found = await dav_db.ids_by_uid(conn, ctx.user_id, task.depends_on)
    unknown = [uid for uid in task.depends_on if uid not in found]
    kept = task.kept
    if unknown:
        kept = (kept or "") + "".join(f"RELATED-TO;RELTYPE=DEPENDS-ON:{_escaped(uid)}\r\n" for uid in unknown)
    ids = list(dict.fromkeys(found[uid] for uid in task.depends_on if uid in found))
    if len(ids) > MAX_BLOCKERS:
        raise ValidationError(f"a to-do depends on at most {MAX_BLOCKERS} others (DEPENDS-ON names {len(ids)})")
    return ids, kept


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _check_uid(uid: str) -> None:
    if not uid or len(uid) > UID_MAX:
        raise ValidationError(f"the VTODO needs a UID of 1-{UID_MAX} characters")


async def create_task(ctx: Ctx, task: ClientTask, category_id: int | None, href: str | None) -> int:
    """A new task under the client's UID (and resource name, when it is not `<uid>.ics`); its id."""
    _check_uid(task.uid)
    async with transaction(ctx) as conn:
        if task.depends_on:
            await dependencies.lock(conn, ctx)
        if await dav_db.task_by_uid(conn, ctx.user_id, task.uid) is not None:
            raise ConflictError(f"a task with UID {task.uid[:80]!r} exists already under another name")
        blockers, kept = await _blockers(conn, ctx, task)
        spec = new_task(
            ctx,
            task.title,
            description=task.description,
            priority=task.priority,
            due_date=task.due_date,
            category_id=category_id,
            tag_ids=await _tag_ids(conn, ctx, task.tags),
            recurrence_rule=task.rule,
            remind_before_minutes=task.lead,
            parent_id=await _parent_id(conn, ctx, task.parent_uid),
            recurrence_from=recurrence_from_value(task.recurrence_from),
            blocked_by=blockers or None,
        )
        created = await insert_task(conn, ctx, spec)
        await dav_db.set_uid(conn, ctx.user_id, created.id, task.uid)
        await dav_db.save_properties(conn, ctx.user_id, created.id, href, kept, ctx.now)
        events: list[Envelope] = [task_created(ctx, created)]
        if task.completed:
            await complete_in(conn, ctx, created.id, events)
        if task.remind_at is not None and task.lead is None:
            await reminder_in(conn, ctx, created.id, events, remind_at=task.remind_at)
        await write_events(conn, events)
    return created.id


def advances_series(row: Any, task: ClientTask, now: datetime) -> bool:
    """Whether the client completed an occurrence by moving the task to the series' next due date, as some clients
    do with a repeating to-do (the same UID, the same rule, still open, due at the next occurrence)."""
    if row["recurrence_rule"] is None or row["status"] != "pending" or task.completed or task.due is None:
        return False
    if task.rule != row["recurrence_rule"] or row["due_date"] is None or task.due <= row["due_date"]:
        return False
    if row["recurrence_from"] == "completion":
        return False  # the next one depends on when it was completed; the client's date cannot say
    zone = resolve_zone(row["time_zone"])
    start = (
        recurrence.series_dtstart(row["series_start"], row["series_start_wall"], row["time_zone"])
        if row["series_start"] is not None
        else row["due_date"]
    )
    # The occurrence after the due date (a client advancing from it), and the one the recurrer would make now (a
    # late completion skips the missed ones).
    candidates = set(recurrence.next_occurrences(row["recurrence_rule"], start, zone, row["due_date"], limit=1))
    following = recurrence.next_occurrence(row["recurrence_rule"], start, zone, row["due_date"], now)
    if following is not None:
        candidates.add(following)
    return task.due in candidates


async def update_from_client(
    ctx: Ctx, task_id: int, task: ClientTask, category_id: int | None, href: str | None, *, restore: bool = False
) -> None:
    """Apply what changed between the stored task and what the client wrote, in one transaction (`restore`: the
    task is in the trash, and comes out of it first)."""
    await until_tree_holds(lambda: _update_from_client(ctx, task_id, task, category_id, href, restore))


async def _update_from_client(
    ctx: Ctx, task_id: int, task: ClientTask, category_id: int | None, href: str | None, restore: bool
) -> None:
    async with transaction(ctx) as conn:
        await dependencies.lock(conn, ctx)
        events: list[Envelope] = []
        if restore:
            await update_in(conn, ctx, task_id, events, status="pending")
        row = await dav_db.item(conn, ctx.user_id, task_id)
        if row is None:
            raise ConflictError("the to-do was purged meanwhile — PUT it again")
        if task.uid != row["uid"]:
            raise ConflictError("the UID of a stored to-do cannot change — PUT a new resource for another UID")
        changes = await _changes(conn, ctx, row, task, category_id)
        blockers, kept = await _blockers(conn, ctx, task)
        await update_in(conn, ctx, task_id, events, **changes, blockers=blockers)
        await _reminder(conn, ctx, events, row, task)
        await _retag(conn, ctx, events, task_id, list(row["tag_names"] or []), task.tags)
        await dav_db.save_properties(conn, ctx.user_id, task_id, href, kept, ctx.now)
        await write_events(conn, events)


async def _changes(
    conn: AsyncConnection, ctx: Ctx, row: Any, task: ClientTask, category_id: int | None
) -> dict[str, Any]:
    """The update_task arguments that make the stored task (`row`, a dav item mapping) what the client wrote."""
    changes: dict[str, Any] = {}
    if task.title != row["title"]:
        changes["title"] = task.title
    if task.description != row["description"]:
        changes["description"] = task.description
    if task.priority != row["priority"]:
        changes["priority"] = task.priority
    if category_id != row["category_id"]:
        changes["category_id"] = category_id
    parent_id = await _parent_id(conn, ctx, task.parent_uid)
    if parent_id != row["parent_id"]:
        changes["parent_id"] = parent_id
    completing = task.completed and row["status"] != "completed"
    if advances_series(row, task, ctx.now):
        completing = True  # the stored occurrence is completed; the recurrer makes the next one
    else:
        if task.due != row["due_date"]:
            changes["due_date"] = task.due_date
        if task.rule != row["recurrence_rule"]:
            changes["recurrence_rule"] = task.rule
        if task.rule is not None and task.recurrence_from != row["recurrence_from"]:
            changes["recurrence_from"] = recurrence_from_value(task.recurrence_from)
    if completing:
        changes["status"] = "completed"
    elif not task.completed and row["status"] == "completed":
        changes["status"] = "pending"
    return changes


async def _reminder(conn: AsyncConnection, ctx: Ctx, events: list[Envelope], row: Any, task: ClientTask) -> None:
    if not task.reminder_given:
        return
    task_id = int(row["id"])
    if task.lead is not None:
        if task.lead != row["remind_before_minutes"]:
            await reminder_in(conn, ctx, task_id, events, remind_before_minutes=task.lead)
    elif task.remind_at is not None:
        await reminder_in(conn, ctx, task_id, events, remind_at=task.remind_at)
    elif row["remind_at"] is not None or row["remind_before_minutes"] is not None:
        await reminder_in(conn, ctx, task_id, events, remind_at=None)


async def _retag(
    conn: AsyncConnection, ctx: Ctx, events: list[Envelope], task_id: int, before: list[str], after: list[str]
) -> None:
    had = {name.lower() for name in before}
    wanted = {name.lower(): name for name in after}
    if had == set(wanted):
        return
    for name in sorted(had - set(wanted)):
        tag_id = await labels_db.id_by_name(conn, TAG, ctx.user_id, name)
        if tag_id is not None:
            await untag_in(conn, ctx, task_id, tag_id, events)
    for tag_id in await _tag_ids(conn, ctx, [wanted[name] for name in sorted(set(wanted) - had)]):
        await tag_in(conn, ctx, task_id, tag_id, events)


async def trash_task(ctx: Ctx, task_id: int) -> None:
    """DELETE: to the trash, with its subtasks (update_task status=pending brings it back, to the clients too)."""
    await delete_task(ctx, task_id)


async def move_task(ctx: Ctx, task_id: int, category_id: int | None) -> None:
    """A to-do moved to another collection changes category."""
    await update_task(ctx, task_id, category_id=category_id)


async def create_collection(ctx: Ctx, segment: str, name: str, color: str | None) -> int:
    """MKCALENDAR: a new category (named by the client's display name, else the path segment it chose), reachable
    under that segment."""
    created = await add_category(ctx, name, color)
    async with transaction(ctx) as conn:
        await dav_db.name_collection(conn, ctx.user_id, segment, created.id)
    return created.id
