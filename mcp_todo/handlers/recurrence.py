"""The recurrer's handler: a completed occurrence N of a recurring task creates occurrence N+1, exactly once.

The next due date comes from the stored series (rule, zone, first due date) and the completion time recorded in the
event, never from this process's clock, so a replay an hour or a week later computes the same N+1. Exactly once is
enforced by the database: `uq_tasks_previous` (one successor per occurrence) and `uq_tasks_series_due` (one occurrence
per series and due date). A duplicate event, a replay after a crash, or a second recurrer racing this one all end in
`ON CONFLICT DO NOTHING` and return quietly.

`handle_task_completed_batch` takes many events in one transaction (the recurrer's consumer hands it a partition's
batch): one locking read of the completed occurrences, the next dates computed here, one INSERT … SELECT FROM unnest
for every successor (tags copied in the same statement), one read of the new tasks and one outbox insert for their
`task.created`. `handle_task_completed` is the same code with a batch of one.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_todo.db.queries import load_tasks
from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.recurrence import next_occurrence
from mcp_todo.domain.reminders import remind_at_for
from mcp_todo.domain.times import resolve_zone
from mcp_todo.events import TASK_COMPLETED, TASK_CREATED, Envelope, TaskCompleted, TaskCreated, read_payload
from mcp_todo.handlers.plans import CUSTOM_PLANS
from mcp_todo.outbox import write_events
from mcp_todo.settings import Settings, get_settings

log = logging.getLogger(__name__)

# FOR SHARE: a concurrent edit of a completed occurrence (reopen, rule removed) waits for us or we for it, so we never
# copy a rule the user has just removed. Locked in id order, so two recurrers with overlapping batches cannot deadlock.
_LOAD_COMPLETED = text(
    """
    SELECT t.id, t.user_id, t.status, t.due_date, t.time_zone, t.recurrence_rule, t.series_id, t.series_start,
           t.remind_before_minutes, t.completed_at
    FROM tasks t
    JOIN unnest(CAST(:task_ids AS bigint[]), CAST(:user_ids AS text[])) AS k(id, user_id)
      ON t.id = k.id AND t.user_id = k.user_id
    ORDER BY t.id
    FOR SHARE OF t
    """
)

# Without a conflict target DO NOTHING covers both partial unique indexes (series + due date, previous task), also
# between two rows of the same statement. Rows go in previous-task order (the order the locks above were taken in),
# so racing recurrers wait for each other rather than deadlock. The tags are copied in the same statement, and only
# for the occurrences that were inserted.
_INSERT_NEXT = text(
    """
    WITH src AS (
        SELECT * FROM unnest(CAST(:previous_ids AS bigint[]), CAST(:due_dates AS timestamptz[]),
                             CAST(:series_ids AS bigint[]), CAST(:series_starts AS timestamptz[]),
                             CAST(:remind_ats AS timestamptz[]))
                      WITH ORDINALITY AS s(previous_id, due_date, series_id, series_start, remind_at, ord)
    ), inserted AS (
        INSERT INTO tasks (user_id, title, description, status, priority, due_date, time_zone, category_id,
                           recurrence_rule, series_id, series_start, previous_task_id, remind_before_minutes,
                           remind_at, reminder_sent)
        SELECT t.user_id, t.title, t.description, 'pending', t.priority, src.due_date, t.time_zone, t.category_id,
               t.recurrence_rule, src.series_id, src.series_start, t.id, t.remind_before_minutes,
               src.remind_at, false
        FROM src JOIN tasks t ON t.id = src.previous_id
        ORDER BY src.ord
        ON CONFLICT DO NOTHING
        RETURNING id, previous_task_id
    ), tagged AS (
        INSERT INTO task_tags (task_id, tag_id, user_id)
        SELECT inserted.id, tt.tag_id, tt.user_id
        FROM inserted JOIN task_tags tt ON tt.task_id = inserted.previous_task_id
    )
    SELECT id, previous_task_id FROM inserted
    """
)


@dataclass(slots=True)
class _Planned:
    """The successor one completed occurrence should have."""

    previous_id: int
    user_id: str
    due_date: datetime
    series_id: int
    series_start: datetime
    remind_at: datetime | None


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
        await conn.execute(CUSTOM_PLANS)
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
    try:
        next_due = next_occurrence(row.recurrence_rule, series_start, resolve_zone(row.time_zone), due, completed_at)
    except InvalidRecurrenceRuleError:
        # A stored rule is validated on write; one the domain rejects now cannot be retried into validity.
        log.warning("stored recurrence rule rejected", extra={"task_id": row.id, "user_id": row.user_id})
        return "invalid_rule", None
    if next_due is None:
        return "series_ended", None
    lead = row.remind_before_minutes if row.remind_before_minutes is not None else settings.reminder_lead_minutes
    return "planned", _Planned(
        previous_id=row.id,
        user_id=row.user_id,
        due_date=next_due,
        series_id=row.series_id if row.series_id is not None else row.id,
        series_start=series_start,
        remind_at=remind_at_for(next_due, lead),
    )


async def _create_next(
    conn: AsyncConnection, envelopes: list[Envelope], settings: Settings
) -> tuple[dict[int, str], dict[int, int], dict[int, datetime]]:
    """(outcome per completed task id, new task id per completed task id, next due date per completed task id)."""
    rows = {
        row.id: row
        for row in await conn.execute(
            _LOAD_COMPLETED,
            {"task_ids": [e.task_id for e in envelopes], "user_ids": [e.user_id for e in envelopes]},
        )
    }
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
    inserted = (
        await conn.execute(
            _INSERT_NEXT,
            {
                "previous_ids": [p.previous_id for p in planned],
                "due_dates": [p.due_date for p in planned],
                "series_ids": [p.series_id for p in planned],
                "series_starts": [p.series_start for p in planned],
                "remind_ats": [p.remind_at for p in planned],
            },
        )
    ).all()
    created = {int(row.previous_task_id): int(row.id) for row in inserted}
    for plan in planned:
        outcomes[plan.previous_id] = "created" if plan.previous_id in created else "already_created"
    by_user: defaultdict[str, list[int]] = defaultdict(list)
    for plan in planned:
        if plan.previous_id in created:
            by_user[plan.user_id].append(created[plan.previous_id])
    events: list[Envelope] = []
    for user_id, new_ids in by_user.items():
        for task in await load_tasks(conn, user_id, new_ids):
            events.append(Envelope.of(TASK_CREATED, TaskCreated.from_task(task), user_id=user_id, task_id=task.id))
    await write_events(conn, events)
    return outcomes, created, next_dues
