"""The one way a service changes a task it holds locked: write the changes, read the row back in the same statement,
and describe what the user can see changed as a `task.updated`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.tasks import TaskRow
from mcp_todo.events import Envelope
from mcp_todo.service.changes import task_updated
from mcp_todo.service.context import Ctx


async def change_task(
    conn: AsyncConnection, ctx: Ctx, before: TaskRow, changes: dict[str, Any]
) -> tuple[TaskRow, list[Envelope]]:
    """Write `changes` (only `updated_at` when empty, e.g. after its tags changed) to the locked task `before`; the
    row after, and its `task.updated` (none when nothing the user sees changed), for the caller to write."""
    after = await tasks_db.update(conn, ctx.user_id, before.id, changes, ctx.now)
    return after, task_updated(ctx, before, after)
