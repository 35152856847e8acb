"""Tags: at most 100 per user (names unique ignoring case) and 10 per task; tagging is idempotent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import labels as labels_db
from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.labels import TAG
from mcp_todo.db.outbox import write_events
from mcp_todo.db.tasks import TaskRow
from mcp_todo.domain.errors import LimitExceededError
from mcp_todo.events import Envelope
from mcp_todo.schemas import DeletedTag, TagCount, TagList, TagOut, TaskOut
from mcp_todo.service.context import Ctx, transaction
from mcp_todo.service.edits import change_task
from mcp_todo.service.inputs import TAG_NAME_MAX, entity_id
from mcp_todo.service.labels import LabelRules, add_label, delete_label, list_labels, require_labels
from mcp_todo.service.shapes import task_out

MAX_TAGS_PER_USER: Final = 100
MAX_TAGS_PER_TASK: Final = 10
RULES: Final = LabelRules(TAG, TAG_NAME_MAX, MAX_TAGS_PER_USER)


def too_many_tags_on_task(task_id: int | None = None) -> LimitExceededError:
    subject = f"task {task_id}" if task_id is not None else "a task"
    return LimitExceededError(
        f"{subject} can have at most {MAX_TAGS_PER_TASK} tags — remove_tag_from_task one first, or pick fewer"
    )


async def require_tags(conn: AsyncConnection, user_id: str, tag_ids: list[int]) -> list[int]:
    """The distinct ids, all the user's; NOT_FOUND names the first that is not (missing or another user's)."""
    return await require_labels(conn, RULES, user_id, tag_ids)


async def add_tag(ctx: Ctx, name: str, color: str | None = None) -> TagOut:
    new_id, name, color = await add_label(ctx, RULES, name, color)
    return TagOut(id=new_id, name=name, color=color)


async def list_tags(ctx: Ctx) -> TagList:
    tags = [TagCount.model_validate(row) for row in await list_labels(ctx, RULES)]
    return TagList(tags=tags, total=len(tags))


async def delete_tag(ctx: Ctx, tag_id: int) -> DeletedTag:
    """Delete the tag; each task that carried it emits its own `task.updated` with its new tags."""
    affected = await delete_label(ctx, RULES, tag_id)
    return DeletedTag(deleted_tag_id=tag_id, tasks_affected=affected)


Retag = Callable[[AsyncConnection, Ctx, int, int, list[Envelope]], Awaitable[tuple[TaskRow, bool]]]


async def tag_in(
    conn: AsyncConnection, ctx: Ctx, task_id: int, tag_id: int, events: list[Envelope]
) -> tuple[TaskRow, bool]:
    """Tag the task (its `task.updated` added to `events`); the task after, and False when it carried the tag
    already."""
    before = await tasks_db.fetch(conn, ctx.user_id, entity_id(task_id, "task"), for_update=True)
    entity_id(tag_id, "tag")
    if tag_id in before.tag_ids:
        return before, False
    if len(before.tags) >= MAX_TAGS_PER_TASK:
        await require_tags(conn, ctx.user_id, [tag_id])  # a missing tag is reported before the limit
        raise too_many_tags_on_task(task_id)
    if not await labels_db.tag_task(conn, ctx.user_id, task_id, tag_id):
        raise RULES.not_found(tag_id)
    after, updated = await change_task(conn, ctx, before, {})
    events.extend(updated)
    return after, True


async def untag_in(
    conn: AsyncConnection, ctx: Ctx, task_id: int, tag_id: int, events: list[Envelope]
) -> tuple[TaskRow, bool]:
    """Untag the task (its `task.updated` added to `events`); the task after, and False when it did not carry the
    tag."""
    before = await tasks_db.fetch(conn, ctx.user_id, entity_id(task_id, "task"), for_update=True)
    entity_id(tag_id, "tag")
    if tag_id not in before.tag_ids:
        await require_tags(conn, ctx.user_id, [tag_id])
        return before, False
    await labels_db.untag_task(conn, ctx.user_id, task_id, tag_id)
    after, updated = await change_task(conn, ctx, before, {})
    events.extend(updated)
    return after, True


async def add_tag_to_task(ctx: Ctx, task_id: int, tag_id: int) -> TaskOut:
    """Tag the task; tagging it again changes nothing and emits nothing."""
    return await _retag(ctx, task_id, tag_id, tag_in)


async def remove_tag_from_task(ctx: Ctx, task_id: int, tag_id: int) -> TaskOut:
    """Untag the task; removing a tag it does not carry changes nothing and emits nothing."""
    return await _retag(ctx, task_id, tag_id, untag_in)


async def _retag(ctx: Ctx, task_id: int, tag_id: int, action: Retag) -> TaskOut:
    events: list[Envelope] = []
    async with transaction(ctx) as conn:
        after, _ = await action(conn, ctx, task_id, tag_id, events)
        await write_events(conn, events)
    return task_out(after)
