"""The recurrer's handler: a completed occurrence N of a recurring task creates occurrence N+1, exactly once.

The next due date comes from the stored series (rule, zone, first due date) and the completion time recorded in the
event, never from this process's clock, so a replay an hour or a week later computes the same N+1. Exactly once is
enforced by the database: `uq_tasks_previous` (one successor per occurrence) and `uq_tasks_series_due` (one occurrence
per series and due date). A duplicate event, a replay after a crash, or a second recurrer racing this one all end in
`ON CONFLICT DO NOTHING` and return quietly.

`handle_task_completed_batch` takes many events in one transaction (the recurrer's consumer hands it a partition's
batch): one locking read of the completed occurrences, the next dates computed here, one INSERT … SELECT FROM unnest
for every successor (tags copied in the same statement, the new rows returned with their category and tags) and one
outbox insert for their `task.created`. `handle_task_completed` is the same code with a batch of one.

The `task.created` payload is built here from the returned row and the dates already expanded, not through the
pydantic payload model (~15 µs a task, most of the handler's time): one expansion of the rule gives
both the next occurrence and the preview that follows it. tests/integration/test_recurrence_handler.py checks that the
payload equals what `TaskCreated.from_task` makes of the task as loaded.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from datetime import time as time_of_day
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_todo.db import dependencies as dependencies_db
from mcp_todo.db import task_batches
from mcp_todo.db.engine import use_custom_plans
from mcp_todo.db.outbox import write_events
from mcp_todo.db.tasks import PREVIEW_OCCURRENCES, Label, TaskRow
from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.recurrence import next_after_completion, next_occurrences, series_dtstart
from mcp_todo.domain.reminder_times import remind_at_for
from mcp_todo.domain.rrule import describe_rule
from mcp_todo.domain.times import resolve_zone
from mcp_todo.events import TASK_COMPLETED, TASK_CREATED, Envelope, TaskCompleted, read_payload, snapshot_data
from mcp_todo.settings import Settings, get_settings

log = logging.getLogger(__name__)

# The rule in English is a pure function of the rule's text, and a series' occurrences share one rule.
_describe: Final = functools.lru_cache(maxsize=512)(describe_rule)


@functools.lru_cache(maxsize=512)
def _describe_after_completion(rule: str) -> str:
    return describe_rule(rule, from_completion=True)


# Pure in its arguments (the results depend on the instant of `after` and on `series_start` as the domain reads it:
# its instant, or a skipped wall time in `zone` itself, which compares unequal to any other zone's time), like the
# preview cache of `db.tasks`: a replayed or duplicated completion, or completions of series that
# share a start, rule and zone, expand once. Tuples, so no caller can change a cached list.
@functools.lru_cache(maxsize=1024)
def _occurrences_after(
    rule: str, series_start: datetime, zone: ZoneInfo, after: datetime
) -> tuple[tuple[datetime, ...], tuple[str, ...]]:
    """The next occurrences after `after` (up to one more than a preview holds), and each as an event writes it."""
    found = tuple(next_occurrences(rule, series_start, zone, after, limit=PREVIEW_OCCURRENCES + 1))
    return found, tuple(dt.astimezone(zone).isoformat() for dt in found)


@dataclass(slots=True)
class _Planned:
    """The successor one completed occurrence should have."""

    previous_id: int
    user_id: str
    due_date: datetime
    series_id: int
    series_start: datetime
    remind_at: datetime | None
    zone: ZoneInfo
    # The occurrences after the new one as its `task.created` preview writes them, when the expansion that found it
    # found them all; None: expand them on their own.
    following: list[str] | None
    # The rule the new occurrence carries (after completion, COUNT counts down), and whether its subtasks are copied.
    rule: str
    has_subtasks: bool


async def handle_task_completed(
    engine: AsyncEngine, envelope: Envelope, *, settings: Settings | None = None
) -> int | None:
    """Create the occurrence that follows the completed one; returns its id, or None when nothing was created."""
    return (await handle_task_completed_batch(engine, [envelope], settings=settings))[0]


async def handle_task_completed_batch(
    engine: AsyncEngine, envelopes: list[Envelope], *, settings: Settings | None = None
) -> list[int | None]:
    """Create the successor of every completed occurrence in `envelopes`, in one transaction.

    Returns, per envelope, the new task's id or None (not a `task.completed`, nothing to create, or created before:
    a later duplicate of an event in the same batch also gets None). Other event types are ignored."""
    results: list[int | None] = [None] * len(envelopes)
    # The first event per task decides, as it would one at a time: later ones find its successor and create nothing.
    first: dict[tuple[int, str], int] = {}
    for index, envelope in enumerate(envelopes):
        if envelope.event_type == TASK_COMPLETED:
            first.setdefault((envelope.task_id, envelope.user_id), index)
    if not first:
        return results
    settings = settings or get_settings()
    started = time.perf_counter()
    async with engine.begin() as conn:
        await use_custom_plans(conn)
        outcomes, created, next_dues = await _create_next(conn, [envelopes[i] for i in first.values()], settings)
    for (task_id, _user), index in first.items():
        results[index] = created.get(task_id)
    counts = Counter(outcomes.values())
    extra: dict[str, Any] = {
        "events": len(envelopes),
        "new_tasks": len(created),
        "outcomes": dict(sorted(counts.items())),
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if len(envelopes) == 1:
        envelope = envelopes[0]
        next_due = next_dues.get(envelope.task_id)
        extra |= {
            "event_id": str(envelope.event_id),
            "task_id": envelope.task_id,
            "user_id": envelope.user_id,
            "outcome": outcomes.get(envelope.task_id, "ignored"),
            "new_task_id": results[0],
            "next_due": next_due.isoformat() if next_due else None,
        }
    log.info("recurrence handled", extra=extra)
    return results


def _plan(row: Any, envelope: Envelope, settings: Settings) -> tuple[str, _Planned | None]:
    """What one completed occurrence should get: an outcome name, and the successor when there is one."""
    event = read_payload(envelope, TaskCompleted)
    if event is None:
        return "malformed", None
    if row is None:
        return "task_gone", None
    if row.deleted_at is not None:
        return "in_trash", None
    if row.recurrence_rule is None:
        return "rule_removed", None
    if row.status != "completed":
        return "not_completed", None
    due = row.due_date or event.due_date
    # The completion time the event recorded, so a late replay computes what a prompt one would have.
    completed_at = event.completed_at or row.completed_at
    if due is None or completed_at is None:
        return "no_due_date", None
    series_start = row.series_start or due
    zone = resolve_zone(row.time_zone)
    dtstart = _dtstart(row, due, zone)
    lead = row.remind_before_minutes if row.remind_before_minutes is not None else settings.reminder_lead_minutes
    all_day_at = settings.all_day_reminder_time
    if row.recurrence_from == "completion":
        return _plan_after_completion(row, due, completed_at, dtstart, series_start, zone, (lead, all_day_at))
    # The first occurrence after both the due date and the completion (a late completion skips the missed ones; they
    # still count toward COUNT), as `next_occurrence` computes it, and in the same expansion the ones after it.
    after = max(due, completed_at)
    try:
        found, written = _occurrences_after(row.recurrence_rule, dtstart, zone, after)
    except InvalidRecurrenceRuleError:
        # A stored rule is validated on write; one the domain rejects now cannot be retried into validity.
        log.warning("stored recurrence rule rejected", extra={"task_id": row.id, "user_id": row.user_id})
        return "invalid_rule", None
    if not found:
        return "series_ended", None
    # Fewer than asked for: the series ends, or the horizon (ten years past `after`, not past the new due date) cut
    # the list short; the preview is then expanded from the new due date, as for any task.
    following = list(written[1:]) if len(found) > PREVIEW_OCCURRENCES else None
    return "planned", _successor(row, found[0], series_start, zone, (lead, all_day_at), following, row.recurrence_rule)


def _plan_after_completion(
    row: Any,
    due: datetime,
    completed_at: datetime,
    dtstart: datetime,
    series_start: datetime,
    zone: ZoneInfo,
    reminder: tuple[int, time_of_day],
) -> tuple[str, _Planned | None]:
    """The successor of an occurrence that repeats the rule's interval after its completion (recurrence_from
    "completion"), from the completion time the event recorded and the series' wall-clock time."""
    try:
        following = next_after_completion(row.recurrence_rule, dtstart.astimezone(zone).time(), zone, due, completed_at)
    except InvalidRecurrenceRuleError:
        log.warning("stored recurrence rule rejected", extra={"task_id": row.id, "user_id": row.user_id})
        return "invalid_rule", None
    if following is None:
        return "series_ended", None
    next_due, rule = following
    return "planned", _successor(row, next_due, series_start, zone, reminder, [], rule)


def _successor(
    row: Any,
    due: datetime,
    series_start: datetime,
    zone: ZoneInfo,
    reminder: tuple[int, time_of_day],
    following: list[str] | None,
    rule: str,
) -> _Planned:
    """The successor of the completed occurrence `row`, due at `due`, in its series."""
    return _Planned(
        previous_id=row.id,
        user_id=row.user_id,
        due_date=due,
        series_id=row.series_id if row.series_id is not None else row.id,
        series_start=series_start,
        remind_at=remind_at_for(due, reminder[0], zone=zone, all_day_at=reminder[1]),
        zone=zone,
        following=following,
        rule=rule,
        has_subtasks=row.has_subtasks,
    )


def _dtstart(row: Any, due: datetime, zone: ZoneInfo) -> datetime:
    """The start a row's series is expanded from (`due` without a series start), as `db.tasks.expansion_start`
    gives it for a `TaskRow`."""
    return due if row.series_start is None else series_dtstart(row.series_start, row.series_start_wall, zone)


async def _create_next(
    conn: AsyncConnection, envelopes: list[Envelope], settings: Settings
) -> tuple[dict[int, str], dict[int, int], dict[int, datetime]]:
    """(outcome per completed task id, new task id per completed task id, next due date per completed task id)."""
    rows = await task_batches.lock_completed(conn, [e.task_id for e in envelopes], [e.user_id for e in envelopes])
    outcomes: dict[int, str] = {}
    planned: list[_Planned] = []
    for envelope in envelopes:
        outcome, plan = _plan(rows.get(envelope.task_id), envelope, settings)
        outcomes[envelope.task_id] = outcome
        if plan is not None:
            planned.append(plan)
    next_dues = {plan.previous_id: plan.due_date for plan in planned}
    if not planned:
        return outcomes, {}, next_dues
    planned.sort(key=lambda plan: plan.previous_id)
    rows_inserted = await task_batches.insert_successors(
        conn,
        previous_ids=[p.previous_id for p in planned],
        user_ids=[p.user_id for p in planned],
        due_dates=[p.due_date for p in planned],
        series_ids=[p.series_id for p in planned],
        series_starts=[p.series_start for p in planned],
        remind_ats=[p.remind_at for p in planned],
        rules=[p.rule for p in planned],
    )
    new_rows = {row.previous_task_id: row for row in rows_inserted}
    # A new occurrence keeps what its predecessor waited on (each blocker as its series' current occurrence).
    carried = [(row.id, previous, row.user_id) for previous, row in new_rows.items()]
    await dependencies_db.carry_to_successors(
        conn, [n for n, _, _ in carried], [p for _, p, _ in carried], [u for _, _, u in carried]
    )
    blockers = await dependencies_db.open_blockers(conn, [n for n, _, _ in carried], [u for _, _, u in carried])
    # The subtasks of a recurring parent, copied fresh under its new occurrence in the same transaction.
    copy_from = [
        (new_rows[p.previous_id].id, p.previous_id, p.user_id)
        for p in planned
        if p.has_subtasks and p.previous_id in new_rows
    ]
    subtasks: dict[int, list[TaskRow]] = {}
    if copy_from:
        copies = await task_batches.copy_subtasks(
            conn, [n for n, _, _ in copy_from], [p for _, p, _ in copy_from], [u for _, _, u in copy_from]
        )
        for subtask in copies:
            subtasks.setdefault(subtask.parent_id or 0, []).append(subtask)
    created: dict[int, int] = {}
    by_user: dict[str, list[Envelope]] = {}
    for plan in planned:
        row = new_rows.get(plan.previous_id)
        if row is None:
            outcomes[plan.previous_id] = "already_created"
            continue
        outcomes[plan.previous_id] = "created"
        created[plan.previous_id] = row.id
        event = Envelope(TASK_CREATED, plan.user_id, row.id, _created_data(row, plan, blockers.get(row.id, [])))
        by_user.setdefault(plan.user_id, []).append(event)
        for subtask in subtasks.get(row.id, []):
            created_subtask = snapshot_data(
                subtask.column,
                resolve_zone(subtask.time_zone),
                category=None if subtask.category is None else _label(subtask.category),
                tags=[_label(tag) for tag in subtask.tags],
                recurrence=None,  # a subtask has no rule of its own
            )
            by_user[plan.user_id].append(
                Envelope.of(TASK_CREATED, created_subtask, user_id=plan.user_id, task_id=subtask.id)
            )
    await write_events(conn, [event for events in by_user.values() for event in events])
    return outcomes, created, next_dues


def _created_data(row: Any, plan: _Planned, blocked_by: list[int]) -> dict[str, Any]:
    """The `task.created` payload of a new occurrence, in its JSON form (`events.snapshot_data`: every field of
    `TaskCreated`, times in the task's zone with their offset); `blocked_by`, the blockers it was given, is not a
    column of the inserted row."""
    category = (
        {"id": row.category_id, "name": row.category_name, "color": row.category_color}
        if row.category_id is not None and row.category_name is not None
        else None
    )
    tags = [
        {"id": i, "name": n, "color": c}
        for i, n, c in zip(row.tag_ids or (), row.tag_names or (), row.tag_colors or (), strict=True)
    ]

    def column(name: str) -> Any:
        return blocked_by if name == "blocked_by" else getattr(row, name)

    return snapshot_data(column, plan.zone, category=category, tags=tags, recurrence=_preview(row, plan))


def _label(label: Label) -> dict[str, Any]:
    return {"id": label.id, "name": label.name, "color": label.color}


def _preview(row: Any, plan: _Planned) -> dict[str, Any] | None:
    """The rule in English and the next due dates after the new task's (`db.tasks.recurrence_preview`)."""
    rule, due = row.recurrence_rule, row.due_date
    if rule is None or due is None:
        return None
    zone = plan.zone
    if row.recurrence_from == "completion":
        try:
            return {"text": _describe_after_completion(rule), "next_occurrences": []}
        except InvalidRecurrenceRuleError:
            return None
    try:
        following = plan.following
        if following is None:
            upcoming = next_occurrences(rule, _dtstart(row, due, zone), zone, due, limit=PREVIEW_OCCURRENCES)
            following = [dt.astimezone(zone).isoformat() for dt in upcoming]
        text = _describe(rule)
    except InvalidRecurrenceRuleError:
        log.warning("stored recurrence rule no longer valid", extra={"task_id": row.id})
        return None
    return {"text": text, "next_occurrences": following}
