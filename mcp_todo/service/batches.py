"""Batch calls: one tool call about many tasks (`task_ids`, or `tasks` for add_task), all or nothing.

Every item runs the very code of the one-task call, in one transaction, in the order given; an item that fails is
recorded with its index and the rest still run, so the error names every bad item at once; then, when any failed,
the transaction is rolled back and nothing is changed. The events of the items are written together at the end.
The outcome does not depend on the order of the ids: a subtask completed or trashed with its parent by an earlier
item of the same batch counts as completed or trashed by its own item.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.outbox import write_events
from mcp_todo.db.tasks import TaskRow
from mcp_todo.domain.errors import TodoError, ValidationError
from mcp_todo.domain.times import format_in_zone
from mcp_todo.events import Envelope
from mcp_todo.schemas import BatchItem, BatchResult
from mcp_todo.service import dependencies
from mcp_todo.service import tags as tags_service
from mcp_todo.service.changes import task_created
from mcp_todo.service.context import Ctx, transaction
from mcp_todo.service.hierarchy import MAX_BATCH_TASKS, BatchFailures, TreeChanged, until_tree_holds
from mcp_todo.service.inputs import entity_id
from mcp_todo.service.tasks import NewTask, complete_in, insert_task, new_task, next_occurrence_of, trash_in

Item = Callable[[AsyncConnection, int, list[Envelope]], Awaitable[BatchItem]]


async def _run(ctx: Ctx, task_ids: list[int], make_item: Callable[[], Item]) -> BatchResult:
    """Run the batch; `make_item` gives the item function of one attempt (with its own state, as an attempt that finds
    the tree changed under it is rolled back and run again)."""

    async def attempt() -> BatchResult:
        item = make_item()
        failures = BatchFailures("task_ids")
        results: list[BatchItem] = []
        events: list[Envelope] = []
        async with transaction(ctx) as conn:
            await _lock_in_order(conn, ctx, task_ids)
            for index, task_id in enumerate(task_ids):
                try:
                    results.append(await item(conn, task_id, events))
                except TodoError as error:
                    failures.add(index, error)
            failures.raise_if_any(len(task_ids))
            await write_events(conn, events)
        return BatchResult(results=results)

    return await until_tree_holds(attempt)


async def _lock_in_order(conn: AsyncConnection, ctx: Ctx, task_ids: list[int]) -> None:
    """Lock the batch's tasks before any item runs, in the order every writer of the subtask tree follows, whatever
    the order of the ids: the top-level ones and the parents of the subtasks in id order, then the subtasks (see
    `tasks_db.lock_top_level`); `TreeChanged` when one has moved since it was read."""
    parents = await tasks_db.parents_of(conn, ctx.user_id, task_ids)
    subtasks = {i: parent for i, parent in parents.items() if parent is not None}
    writes = {i for i, parent in parents.items() if parent is None}
    reads = set(subtasks.values())
    if not await tasks_db.lock_top_level(conn, ctx.user_id, writes=writes, reads=reads):
        raise TreeChanged
    if not await tasks_db.lock_subtasks(conn, ctx.user_id, subtasks):
        raise TreeChanged


async def complete_tasks(ctx: Ctx, task_ids: list[int]) -> BatchResult:
    """Complete every task (with its open subtasks); one already completed is "unchanged"."""

    def make_item() -> Item:
        completed: dict[int, TaskRow] = {}

        async def item(conn: AsyncConnection, task_id: int, events: list[Envelope]) -> BatchItem:
            if task_id in completed:  # a subtask completed with its parent, an earlier item
                row, changed = completed[task_id], True
            else:
                row, changed = await complete_in(conn, ctx, task_id, events, completed)
            return BatchItem(
                task_id=task_id,
                outcome="completed" if changed else "unchanged",
                next_occurrence=format_in_zone(next_occurrence_of(row), row.time_zone),
            )

        return item

    return await _run(ctx, task_ids, make_item)


async def delete_tasks(ctx: Ctx, task_ids: list[int]) -> BatchResult:
    """Move every task (with its subtasks) to the trash."""

    def make_item() -> Item:
        trashed: set[int] = set()

        async def item(conn: AsyncConnection, task_id: int, events: list[Envelope]) -> BatchItem:
            if task_id not in trashed:  # else a subtask trashed with its parent, an earlier item
                trashed.update(row.id for row in await trash_in(conn, ctx, task_id, events))
            return BatchItem(task_id=task_id, outcome="trashed")

        return item

    return await _run(ctx, task_ids, make_item)


async def tag_tasks(ctx: Ctx, task_ids: list[int], tag_id: int, *, add: bool) -> BatchResult:
    """Put the tag on (or take it off) every task; a task that has it (or lacks it) already is "unchanged"."""
    entity_id(tag_id, "tag")
    action = tags_service.tag_in if add else tags_service.untag_in

    async def item(conn: AsyncConnection, task_id: int, events: list[Envelope]) -> BatchItem:
        _, changed = await action(conn, ctx, task_id, tag_id, events)
        if not changed:
            return BatchItem(task_id=task_id, outcome="unchanged")
        return BatchItem(task_id=task_id, outcome="tagged" if add else "untagged")

    return await _run(ctx, task_ids, lambda: item)


async def add_tasks(ctx: Ctx, items: list[dict[str, Any]], *, one_task: bool = False) -> BatchResult:
    """Create every task (each item holds add_task's fields), in the order given; `one_task`: the call gave one
    task's fields too, which is a mistake."""
    if one_task:
        raise ValidationError("give either one task's fields (title, …) or tasks (a batch), not both")
    if not 1 <= len(items) <= MAX_BATCH_TASKS:
        raise ValidationError(f"tasks must hold 1 to {MAX_BATCH_TASKS} items (got {len(items)})")
    failures = BatchFailures("tasks")
    specs: list[NewTask | None] = []
    for index, fields in enumerate(items):
        try:
            specs.append(new_task(ctx, **fields))
        except TodoError as error:
            failures.add(index, error)
            specs.append(None)
    return await until_tree_holds(lambda: _insert_all(ctx, specs, failures, len(items)))


async def _insert_all(ctx: Ctx, specs: list[NewTask | None], checked: BatchFailures, total: int) -> BatchResult:
    """One attempt of `add_tasks`: `checked` holds the items that failed before the database was read."""
    failures = BatchFailures("tasks")
    failures.failed = list(checked.failed)
    results: list[BatchItem] = []
    events: list[Envelope] = []
    async with transaction(ctx) as conn:
        if any(spec is not None and spec.blocked_by for spec in specs):
            await dependencies.lock(conn, ctx)  # before any row lock
        # The parents, share-locked in id order before any item locks one (see `tasks_db.lock_top_level`); one that
        # is a subtask as last committed is not locked, and its item is refused.
        wanted = [spec.parent_id for spec in specs if spec is not None and spec.parent_id is not None]
        parents = await tasks_db.parents_of(conn, ctx.user_id, wanted)
        if not await tasks_db.lock_top_level(conn, ctx.user_id, reads=[p for p in wanted if parents.get(p, 0) is None]):
            raise TreeChanged
        for index, spec in enumerate(specs):
            if spec is None:
                continue
            try:
                task = await insert_task(conn, ctx, spec)
            except TodoError as error:
                failures.add(index, error)
                continue
            events.append(task_created(ctx, task))
            results.append(BatchItem(task_id=task.id, outcome="created"))
        failures.failed.sort(key=lambda failure: failure[0])
        failures.raise_if_any(total)
        await write_events(conn, events)
    return BatchResult(results=results)
