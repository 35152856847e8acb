"""The workers' statements over `tasks`: each handles a whole batch of events in one round trip.

The recurrer locks the completed occurrences and inserts their successors; the notifier reads the state of the tasks
its reminders are for; the reminder scheduler claims due reminders. Rows are returned as the driver gives them (the
handlers read a few named columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.fragments import tags_of
from mcp_todo.db.tasks import TaskRow, shape_select, shaped

# FOR SHARE: a concurrent edit of a completed occurrence (reopen, rule removed) waits for us or we for it, so we never
# copy a rule the user has just removed. Locked in id order, so two recurrers with overlapping batches cannot deadlock.
_LOCK_COMPLETED: Final = text(
    """
    SELECT t.id, t.user_id, t.status, t.due_date, t.time_zone, t.recurrence_rule, t.series_id, t.series_start,
           t.series_start_wall, t.remind_before_minutes, t.completed_at, t.recurrence_from, t.deleted_at,
           EXISTS (SELECT 1 FROM tasks s WHERE s.user_id = t.user_id AND s.parent_id = t.id AND s.deleted_at IS NULL)
             AS has_subtasks
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
# for the occurrences that were inserted. The new rows come back with what their `task.created` carries (the category,
# and the tags, read from the previous occurrence: the outer SELECT cannot see the links this statement writes, and
# they are copies of those), so the recurrer does not read back what it has just written.
_INSERT_SUCCESSORS: Final = text(
    """
    WITH src AS (
        SELECT * FROM unnest(CAST(:previous_ids AS bigint[]), CAST(:user_ids AS text[]),
                             CAST(:due_dates AS timestamptz[]),
                             CAST(:series_ids AS bigint[]), CAST(:series_starts AS timestamptz[]),
                             CAST(:remind_ats AS timestamptz[]), CAST(:rules AS text[]))
                      WITH ORDINALITY
                      AS s(previous_id, user_id, due_date, series_id, series_start, remind_at, rule, ord)
    ), inserted AS (
        INSERT INTO tasks (user_id, title, description, status, priority, due_date, time_zone, category_id,
                           recurrence_rule, series_id, series_start, series_start_wall, previous_task_id,
                           remind_before_minutes, remind_at, reminder_sent, parent_id, recurrence_from)
        SELECT t.user_id, t.title, t.description, 'pending', t.priority, src.due_date, t.time_zone, t.category_id,
               src.rule, src.series_id, src.series_start, t.series_start_wall, t.id, t.remind_before_minutes,
               src.remind_at, false, t.parent_id, t.recurrence_from
        FROM src JOIN tasks t ON t.user_id = src.user_id AND t.id = src.previous_id
        ORDER BY src.ord
        ON CONFLICT DO NOTHING
        RETURNING id, user_id, title, description, status, priority, due_date, time_zone, category_id,
                  recurrence_rule, series_start, series_start_wall, previous_task_id, remind_at, reminder_sent,
                  completed_at, created_at, updated_at, parent_id, recurrence_from
    ), tagged AS (
        INSERT INTO task_tags (task_id, tag_id, user_id)
        SELECT inserted.id, tt.tag_id, tt.user_id
        FROM inserted JOIN task_tags tt ON tt.user_id = inserted.user_id AND tt.task_id = inserted.previous_task_id
    )
    SELECT i.*, c.name AS category_name, c.color AS category_color, g.tag_ids, g.tag_names, g.tag_colors
    FROM inserted i
    LEFT JOIN categories c ON c.id = i.category_id AND c.user_id = i.user_id
    """
    + tags_of("i.previous_task_id", "i.user_id")
)

# A recurring parent's new occurrence gets fresh, open copies of the previous occurrence's subtasks (those out of the
# trash): title, description and priority; no dates, reminders, tags or rules. Only for successors inserted in the
# same transaction, so they are made exactly once.
_COPY_SUBTASKS: Final = shaped(
    "WITH made AS (INSERT INTO tasks (user_id, title, description, priority, time_zone, parent_id) "
    "SELECT s.user_id, s.title, s.description, s.priority, s.time_zone, k.new_id "
    "FROM unnest(CAST(:new_ids AS bigint[]), CAST(:previous_ids AS bigint[]), CAST(:user_ids AS text[])) "
    "AS k(new_id, previous_id, user_id) "
    "JOIN tasks s ON s.user_id = k.user_id AND s.parent_id = k.previous_id AND s.deleted_at IS NULL "
    "ORDER BY k.new_id, s.id RETURNING *) " + shape_select("made")
)

_TASK_STATES: Final = text(
    """
    SELECT t.id, CASE WHEN t.deleted_at IS NULL THEN t.status ELSE 'deleted' END AS status, t.time_zone
    FROM tasks t
    JOIN unnest(CAST(:task_ids AS bigint[]), CAST(:user_ids AS text[])) AS k(id, user_id)
      ON t.id = k.id AND t.user_id = k.user_id
    """
)

# Two statements: the due rows are locked first (through `ix_tasks_reminder_due`, every user's: the one cross-user
# scan of the scheduler), then marked by their primary key (user_id, id) from the arrays the first returned. Written
# as one `UPDATE … FROM due` (a CTE join), the planner trusted stale statistics for the CTE's size (one row) and picked
# a nested loop that rescanned the CTE for every pending reminder: 250-340 ms per claim of 500 instead of ~8 ms. The
# rows stay locked between the two (FOR UPDATE in this transaction), so they still hold when they are marked.
_LOCK_DUE_REMINDERS: Final = text(
    """
    SELECT t.user_id, t.id FROM tasks t
    WHERE t.status = 'pending' AND NOT t.reminder_sent AND t.remind_at <= clock_timestamp() AND t.deleted_at IS NULL
    ORDER BY t.remind_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
    """
)
_MARK_REMINDERS_SENT: Final = text(
    """
    UPDATE tasks t SET reminder_sent = true
    FROM unnest(CAST(:task_ids AS bigint[]), CAST(:user_ids AS text[])) AS k(id, user_id)
    WHERE t.user_id = k.user_id AND t.id = k.id
    RETURNING t.id, t.user_id, t.title, t.due_date, t.remind_at, t.time_zone, clock_timestamp() AS now
    """
)

_NEXT_REMINDER_DUE: Final = text(
    """
    SELECT (SELECT min(remind_at) FROM tasks WHERE status = 'pending' AND NOT reminder_sent AND deleted_at IS NULL)
           AS next_at,
           clock_timestamp() AS now
    """
)


async def lock_completed(conn: AsyncConnection, task_ids: list[int], user_ids: list[str]) -> dict[int, Any]:
    """The (task id, user id) pairs' rows, share-locked in id order, by id; pairs that match no task are absent."""
    rows = await conn.execute(_LOCK_COMPLETED, {"task_ids": task_ids, "user_ids": user_ids})
    return {row.id: row for row in rows}


async def insert_successors(
    conn: AsyncConnection,
    *,
    previous_ids: Sequence[int],
    user_ids: Sequence[str],
    due_dates: Sequence[datetime],
    series_ids: Sequence[int],
    series_starts: Sequence[datetime],
    remind_ats: Sequence[datetime | None],
    rules: Sequence[str],
) -> list[Any]:
    """Insert the next occurrence of each previous task (tags copied); the rows inserted (an occurrence that exists
    already is skipped), each with its columns, `category_name`/`category_color` and the `tag_ids`/`tag_names`/
    `tag_colors` arrays in name order."""
    inserted = await conn.execute(
        _INSERT_SUCCESSORS,
        {
            "previous_ids": list(previous_ids),
            "user_ids": list(user_ids),
            "due_dates": list(due_dates),
            "series_ids": list(series_ids),
            "series_starts": list(series_starts),
            "remind_ats": list(remind_ats),
            "rules": list(rules),
        },
    )
    return list(inserted)


async def copy_subtasks(
    conn: AsyncConnection, new_ids: Sequence[int], previous_ids: Sequence[int], user_ids: Sequence[str]
) -> list[TaskRow]:
    """Fresh open copies of each previous occurrence's subtasks under its new occurrence (of that user); the new
    rows, by parent and then in the order of the subtasks copied."""
    keys = {"new_ids": list(new_ids), "previous_ids": list(previous_ids), "user_ids": list(user_ids)}
    rows = await conn.execute(_COPY_SUBTASKS, keys)
    return sorted(map(TaskRow.from_mapping, rows.mappings()), key=lambda row: (row.parent_id or 0, row.id))


async def task_states(conn: AsyncConnection, task_ids: list[int], user_ids: list[str]) -> dict[int, Any]:
    """Status and zone of the (task id, user id) pairs' tasks, by id."""
    rows = await conn.execute(_TASK_STATES, {"task_ids": task_ids, "user_ids": user_ids})
    return {int(row.id): row for row in rows}


async def claim_due_reminders(conn: AsyncConnection, batch: int) -> list[Any]:
    """Mark up to `batch` due, unsent reminders sent (skipping rows others hold); their rows, earliest first."""
    due = (await conn.execute(_LOCK_DUE_REMINDERS, {"batch": batch})).all()
    if not due:
        return []
    keys = {"task_ids": [row.id for row in due], "user_ids": [row.user_id for row in due]}
    rows = (await conn.execute(_MARK_REMINDERS_SENT, keys)).all()
    # RETURNING has no order.
    return sorted(rows, key=lambda r: (r.remind_at, r.id))


async def next_reminder_due(conn: AsyncConnection) -> tuple[datetime | None, datetime]:
    """(the earliest unsent reminder's time, the database's clock now)."""
    row = (await conn.execute(_NEXT_REMINDER_DUE)).one()
    return row.next_at, row.now
