"""Subtasks, the trash and repeating after completion: the rules the task services share.

Subtasks are one level deep (as in Things and TickTick's checklists): a subtask's parent is a top-level task of the
same user, out of the trash, and a task with subtasks cannot become a subtask. So no chain of parents can loop, and
a parent's subtasks are always found by one `parent_id = …` (no recursive query). A subtask has no recurrence rule of
its own: it repeats with its parent, whose next occurrence gets fresh copies of the subtasks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.tasks import TaskRow
from mcp_todo.domain import recurrence
from mcp_todo.domain.errors import ConflictError, TodoError, ValidationError
from mcp_todo.service.inputs import entity_id

RECURRENCE_FROM: Final = ("schedule", "completion")
MAX_BATCH_IDS: Final = 100
MAX_BATCH_TASKS: Final = 50


def _refuse_unless_parent(parent: TaskRow) -> None:
    if parent.parent_id is not None:
        raise ValidationError(
            f"task {parent.id} is itself a subtask (of task {parent.parent_id}); subtasks are one level deep — "
            f"use parent_id={parent.parent_id}, or a top-level task"
        )


async def check_parent(conn: AsyncConnection, user_id: str, parent_id: int, child_id: int | None = None) -> None:
    """Refuse, without taking or waiting on any lock, a parent that is not one as last committed (NOT_FOUND: not the
    user's or in the trash; VALIDATION_ERROR: a subtask, or the child itself). A refusal changes nothing, so it is
    right whatever commits meanwhile; `require_parent` checks again under its lock."""
    entity_id(parent_id, "task")
    if parent_id == child_id:
        raise ValidationError(f"task {parent_id} cannot be its own parent — give parent_id of another task")
    _refuse_unless_parent(await tasks_db.fetch(conn, user_id, parent_id))


async def require_parent(conn: AsyncConnection, user_id: str, parent_id: int, child_id: int | None = None) -> TaskRow:
    """The task `parent_id` as a parent for `child_id` (a new task when None); NOT_FOUND when it is not the user's or
    is in the trash, VALIDATION_ERROR when it would nest deeper than one level or loop.

    The parent stays share-locked until the transaction ends, so it can neither become a subtask nor go to the trash
    before the new subtask commits; `child_id` is locked for update too, so it gets no subtask of its own meanwhile
    (both in the order `tasks_db.lock_top_level` describes). A parent refused as last committed is refused before any
    lock is taken."""
    await check_parent(conn, user_id, parent_id, child_id)
    if child_id is not None:
        # Held already when update_task calls; an import may move a subtask to another parent.
        await tasks_db.lock_one(conn, user_id, child_id)
    parent = await tasks_db.fetch(conn, user_id, parent_id, for_share=True)
    _refuse_unless_parent(parent)
    if child_id is not None and await tasks_db.has_subtasks(conn, user_id, child_id):
        raise ValidationError(
            f"task {child_id} has subtasks of its own, so it cannot become a subtask (one level deep) — "
            "move or delete its subtasks first"
        )
    return parent


LOCK_ATTEMPTS: Final = 5
_T = TypeVar("_T")


class TreeChanged(Exception):
    """A task moved in the tree between the unlocked read that chose what to lock and the locks: the caller rolls
    back (releasing what it locked) and starts again."""


def changed_too_often() -> ConflictError:
    return ConflictError("other changes to the same tasks kept happening at the same moment — try again")


async def until_tree_holds(attempt: Callable[[], Awaitable[_T]]) -> _T:
    """Run `attempt` (one transaction) again while it finds the tree changed under it; CONFLICT after LOCK_ATTEMPTS."""
    for _ in range(LOCK_ATTEMPTS):
        try:
            return await attempt()
        except TreeChanged:
            continue  # rolled back, so the locks taken for the tree as it was are released
    raise changed_too_often()


SUBTASK_NO_RULE: Final = (
    "a subtask repeats with its parent (a recurring parent's next occurrence gets fresh copies of its subtasks), so it "
    "has no recurrence_rule of its own — put the rule on the parent, or make the task top-level (parent_id null)"
)


def recurrence_from_value(value: str) -> str:
    if value not in RECURRENCE_FROM:
        raise ValidationError(f"recurrence_from must be schedule or completion (got {str(value)[:20]!r})")
    return value


def validated_rule(rule: str, due: datetime, zone: ZoneInfo, recurrence_from: str) -> str:
    """The normalized rule for this mode: any supported RRULE on a schedule, an interval after completion."""
    if recurrence_from == "completion":
        return recurrence.validate_completion_rule(rule, due, zone)
    return recurrence.validate_rule(rule, due, zone)


def batch_ids(task_id: int | None, task_ids: list[int] | None) -> list[int] | None:
    """None for a call about one task (`task_id`), else the batch's ids; exactly one of the two must be given, and
    a batch holds 1 to 100 distinct ids."""
    if (task_id is None) == (task_ids is None):
        raise ValidationError("give exactly one of task_id (one task) or task_ids (a batch of up to 100)")
    if task_ids is None:
        return None
    if not 1 <= len(task_ids) <= MAX_BATCH_IDS:
        raise ValidationError(f"task_ids must hold 1 to {MAX_BATCH_IDS} ids (got {len(task_ids)})")
    seen: set[int] = set()
    for index, value in enumerate(task_ids):
        entity_id(value, "task")
        if value in seen:
            raise ValidationError(f"task_ids[{index}] repeats task {value} — give each task once")
        seen.add(value)
    return list(task_ids)


class BatchFailures:
    """The items of a batch that failed, by index; `raise_if_any` fails the whole call (nothing is changed)."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.failed: list[tuple[int, TodoError]] = []

    def add(self, index: int, error: TodoError) -> None:
        self.failed.append((index, error))

    def raise_if_any(self, total: int) -> None:
        if not self.failed:
            return
        codes = {type(error) for _, error in self.failed}
        kind = codes.pop() if len(codes) == 1 else ValidationError
        items = "; ".join(f"{self.field}[{index}]: {error.render()}" for index, error in self.failed[:20])
        more = f"; and {len(self.failed) - 20} more" if len(self.failed) > 20 else ""
        raise kind(
            f"{len(self.failed)} of {total} items failed, so nothing was changed — {items}{more}. "
            "Fix or drop those items and call again"
        )
