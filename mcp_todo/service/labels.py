"""Categories and tags share one implementation: per-user limits, names unique ignoring case, deleting one emits a
`task.updated` for each task that carried it. `service.categories` and `service.tags` give it their names."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import labels as labels_db
from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.labels import LabelKind
from mcp_todo.db.outbox import write_events
from mcp_todo.domain.errors import ConflictError, LimitExceededError, NotFoundError
from mcp_todo.service.changes import task_updated
from mcp_todo.service.context import Ctx, transaction
from mcp_todo.service.inputs import color_value, distinct_ids, entity_id, name_text


@dataclass(frozen=True)
class LabelRules:
    """One kind of label with its limits: how long a name may be, how many a user may have."""

    kind: LabelKind
    name_max: int
    max_per_user: int

    def not_found(self, label_id: int) -> NotFoundError:
        kind = self.kind
        return NotFoundError(f"{kind.noun} {label_id} does not exist for this user — list_{kind.plural} shows the ids")


async def require_labels(conn: AsyncConnection, rules: LabelRules, user_id: str, ids: list[int]) -> list[int]:
    """The distinct ids, all the user's; NOT_FOUND names the first that is not (missing or another user's)."""
    wanted = distinct_ids(ids, rules.kind.noun)
    if not wanted:
        return []
    found = await labels_db.owned_ids(conn, rules.kind, user_id, wanted)
    for label_id in wanted:
        if label_id not in found:
            raise rules.not_found(label_id)
    return wanted


async def add_label(ctx: Ctx, rules: LabelRules, name: str, color: str | None) -> tuple[int, str, str | None]:
    """(id, name, color) of the new label."""
    async with transaction(ctx) as conn:
        return await add_label_in(conn, ctx, rules, name, color)


async def add_label_in(
    conn: AsyncConnection, ctx: Ctx, rules: LabelRules, name: str, color: str | None
) -> tuple[int, str, str | None]:
    """`add_label` inside the caller's transaction."""
    kind = rules.kind
    name = name_text(name, "name", rules.name_max)
    color = color_value(color)
    await labels_db.lock_user_scope(conn, kind, ctx.user_id)
    if await labels_db.count(conn, kind, ctx.user_id) >= rules.max_per_user:
        raise LimitExceededError(
            f"you already have {rules.max_per_user} {kind.plural}, the most allowed — "
            f"delete_{kind.noun} one you no longer use, or reuse one from list_{kind.plural}"
        )
    new_id = await labels_db.insert_label(conn, kind, ctx.user_id, name, color, ctx.now)
    if new_id is None:
        existing = await labels_db.id_by_name(conn, kind, ctx.user_id, name)
        raise ConflictError(
            f"a {kind.noun} named {name!r} already exists (id {existing}; names ignore case) — use it, or pick "
            "another name"
        )
    return new_id, name, color


async def list_labels(ctx: Ctx, rules: LabelRules) -> list[dict[str, object]]:
    async with transaction(ctx) as conn:
        return await labels_db.with_task_counts(conn, rules.kind, ctx.user_id)


async def delete_label(ctx: Ctx, rules: LabelRules, label_id: int) -> int:
    """Delete the label; each task that carried it emits its own `task.updated`. Returns how many did."""
    kind = rules.kind
    async with transaction(ctx) as conn:
        if not await labels_db.lock_label(conn, kind, ctx.user_id, entity_id(label_id, kind.noun)):
            raise rules.not_found(label_id)
        before = await labels_db.lock_tasks_carrying(conn, kind, ctx.user_id, label_id)
        await labels_db.delete_label(conn, kind, ctx.user_id, label_id)
        after = await tasks_db.touch_many(conn, ctx.user_id, [task.id for task in before], ctx.now)
        await write_events(
            conn,
            [e for old, new in zip(before, after, strict=True) for e in task_updated(ctx, old, new)],
        )
    return len(before)
