"""Rows in, shapes out: the one place a task row (`db.tasks.TaskRow`) becomes what a tool returns and what an event
carries.

What a task shows is read from the table's definition (`db/models.py`), not from a list of its fields: every stored
column appears, except the bookkeeping ones in `INTERNAL`; a time is written in the task's own zone; the column's
default (the table's) is what a lean result leaves out. Three columns stand for more than their value: `category_id`
is shown as the category, the tags follow it, and `recurrence_rule` is followed by the rule in words and its next
dates. So a column added to the table (and its migration) shows in every task result without a list to edit; the
output schema (`schemas.TaskOut`) says what a client may rely on, and an event names a field only once its payload
model (`events.TaskSnapshot`) does, since other consumers read the topics.

Two forms:

- `lean_task`, the hot path of every list and search: a row straight to its lean JSON form (no nulls, no empty
  lists, no stated defaults, times to the second, the task's zone only where it is not the user's), with no pydantic
  model per task. `lean_content` (schemas) makes the same form out of a model, for results of one task.
- `task_fields` / `task_out`, the full form (every field, null or not, times with their fraction) of `TaskOut` and
  the results that extend it; `snapshot`, the event payload's.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from mcp_todo.db.models import Task
from mcp_todo.db.tasks import PREVIEW_OCCURRENCES, TASK_COLUMNS, Label, TaskRow, expansion_start
from mcp_todo.domain import recurrence, rrule
from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.times import resolve_zone
from mcp_todo.events import snapshot_data
from mcp_todo.schemas import TaskOut

log = logging.getLogger(__name__)

# Columns that are the service's bookkeeping, never shown: whose task it is, the series' anchor and start, the
# occurrence it follows, the reminder's lead (the result shows `remind_at`), the stable UID (imports and calendars).
INTERNAL: Final = frozenset(
    {
        "user_id",
        "series_id",
        "series_start",
        "series_start_wall",
        "previous_task_id",
        "remind_before_minutes",
        "uid",
        # The last writing transaction, CalDAV's change stamp (sync tokens and ETags).
        "change_xid",
    }
)
# Shown as the category (`{id, name, color}`) instead of its id.
_CATEGORY: Final = "category_id"
_RULE: Final = "recurrence_rule"
# The columns a result shows, in the table's order.
PUBLIC_COLUMNS: Final = tuple(name for name in TASK_COLUMNS if name not in INTERNAL)
# The category and tags are shown where the category's id stands: after the column before it.
_AFTER_LABELS: Final = PUBLIC_COLUMNS[PUBLIC_COLUMNS.index(_CATEGORY) - 1]


def _column_default(name: str) -> Any:
    """The table's default for a column (None when it has none): what a lean result leaves out."""
    field = Task.model_fields.get(name)
    return None if field is None or field.is_required() else field.default


# (name, its default) of every shown column; a default of None leaves out nulls only.
_LEAN_PLAN: Final = tuple((name, _column_default(name)) for name in PUBLIC_COLUMNS if name != _CATEGORY)


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return resolve_zone(name)


def _second(value: datetime, zone: ZoneInfo) -> str:
    """ISO 8601 in `zone`, to the second (results); the stored time and the events keep the fraction."""
    return value.astimezone(zone).replace(microsecond=0).isoformat()


def _label(label: Label) -> dict[str, Any]:
    return {"id": label.id, "name": label.name, "color": label.color}


def _lean_label(label: Label) -> dict[str, Any]:
    return {"id": label.id, "name": label.name} if label.color is None else _label(label)


# --- the recurrence preview ---------------------------------------------------------------------------------------


def recurrence_preview(row: TaskRow) -> tuple[str, tuple[datetime, ...]] | None:
    """The rule in English and the next due dates after this task's; None without a rule (or with a stored rule
    this version no longer accepts: the task is shown, not an error)."""
    if row.recurrence_rule is None or row.due_date is None:
        return None
    preview = _preview(row.recurrence_rule, expansion_start(row), row.due_date, row.time_zone, row.from_completion)
    if preview is None:
        log.warning("stored recurrence rule no longer valid", extra={"task_id": row.id})
    return preview


# A pure function of its arguments, computed for the task before and after every change of a recurring task and for
# its `task.created`; cached so one call expands a rule once. Tuples, so no caller can change a cached value.
@functools.lru_cache(maxsize=1024)
def _preview(
    rule: str, series_start: datetime, due: datetime, time_zone: str, from_completion: bool = False
) -> tuple[str, tuple[datetime, ...]] | None:
    try:
        if from_completion:
            # The next dates depend on when each occurrence is completed: none can be listed ahead.
            return rrule.describe_rule(rule, from_completion=True), ()
        upcoming = recurrence.next_occurrences(rule, series_start, _zone(time_zone), due, limit=PREVIEW_OCCURRENCES)
        return rrule.describe_rule(rule), tuple(upcoming)
    except InvalidRecurrenceRuleError:
        return None


def _recurrence(row: TaskRow, zone: ZoneInfo, write: Callable[[datetime, ZoneInfo], str]) -> dict[str, Any] | None:
    preview = recurrence_preview(row)
    if preview is None:
        return None
    words, upcoming = preview
    return {"text": words, "next_occurrences": [write(dt, zone) for dt in upcoming]}


def _iso(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).isoformat()


# --- the lean form: lists and search --------------------------------------------------------------------------------


def lean_task(row: TaskRow, user_zone: str, *, in_list: bool = True) -> dict[str, Any]:
    """The task's lean JSON form (what `schemas.lean_content` makes of its `TaskOut`), built from the row at once. In
    a list the preview gives the next date only (the task's own results give five)."""
    zone = _zone(row.time_zone)
    out: dict[str, Any] = {}
    column = row.column
    for name, default in _LEAN_PLAN:
        value = column(name)
        if value is None or value == default:
            if name == _AFTER_LABELS:
                _lean_labels(row, out)
            continue
        if isinstance(value, datetime):
            if name == "updated_at" and value.replace(microsecond=0) == row.created_at.replace(microsecond=0):
                continue  # never changed since it was created (to the second): absent means created_at
            out[name] = _second(value, zone)
        else:
            out[name] = value
        if name == _RULE:
            shown = _recurrence(row, zone, _second)
            if shown is not None:
                following = shown["next_occurrences"]
                if in_list:
                    del following[1:]
                if not following:
                    del shown["next_occurrences"]
                out["recurrence"] = shown
        if name == _AFTER_LABELS:
            _lean_labels(row, out)
    if out.get("time_zone") == user_zone:
        del out["time_zone"]
    if row.open_subtasks:
        out["open_subtasks"] = row.open_subtasks
    if row.total_subtasks:
        out["total_subtasks"] = row.total_subtasks
    if row.blocked_by:
        out["blocked_by"] = list(row.blocked_by)
    if row.blocks:
        out["blocks"] = row.blocks
    return out


def _lean_labels(row: TaskRow, out: dict[str, Any]) -> None:
    if row.category is not None:
        out["category"] = _lean_label(row.category)
    if row.tags:
        out["tags"] = [_lean_label(tag) for tag in row.tags]


@dataclass(frozen=True)
class Shaped:
    """A result already in its lean JSON form (`content`), and the model whose output schema it fits (`kind`), which
    also says how it is rendered as text: a list of tasks is shaped once, from its rows, never through a model per
    task."""

    kind: type[BaseModel]
    content: dict[str, Any]


# --- the full form: one task's results and the events -------------------------------------------------------------


def task_fields(row: TaskRow) -> dict[str, Any]:
    """Every field of the task's `TaskOut` (and of the results that extend it), null or not, times with their
    fraction in the task's zone."""
    zone = _zone(row.time_zone)
    out: dict[str, Any] = {}
    for name in PUBLIC_COLUMNS:
        value = row.column(name)
        if value is None and name not in _PROMISED:
            continue  # a column TaskOut does not name yet is shown when it says something (as in a list)
        if name == _CATEGORY:
            out["category"] = None if row.category is None else _label(row.category)
            out["tags"] = [_label(tag) for tag in row.tags]
            continue
        out[name] = _iso(value, zone) if isinstance(value, datetime) else value
        if name == _RULE:
            out["recurrence"] = _recurrence(row, zone, _iso)
    # Shown only when they say something (absent: on schedule, no subtasks).
    out["recurrence_from"] = "completion" if row.from_completion else None
    out["open_subtasks"] = row.open_subtasks or None
    out["total_subtasks"] = row.total_subtasks or None
    out["blocked_by"] = list(row.blocked_by) or None
    out["blocks"] = row.blocks or None
    return out


_PROMISED: Final = frozenset({*TaskOut.model_fields, _CATEGORY})


def task_out(row: TaskRow) -> TaskOut:
    """The Task as a tool returns it."""
    return TaskOut.model_validate(task_fields(row))


def snapshot(row: TaskRow) -> dict[str, Any]:
    """The task as its events carry it (`events.TaskSnapshot`, JSON form)."""
    zone = _zone(row.time_zone)
    return snapshot_data(
        row.column,
        zone,
        category=None if row.category is None else _label(row.category),
        tags=[_label(tag) for tag in row.tags],
        recurrence=_recurrence(row, zone, _iso),
    )
