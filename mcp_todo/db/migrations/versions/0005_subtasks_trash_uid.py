"""subtasks, repeat-from-completion, the trash, and a stable UID per task (import/export)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from mcp_todo.db.migrate import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# parent_id: a subtask's parent (same user, checked by the service; deleting a parent deletes its subtasks).
# recurrence_from: 'schedule' repeats on the rule's dates, 'completion' a fixed interval after each completion.
# deleted_at: set when the task is in the trash; purged after MCP_TODO_TRASH_DAYS.
# uid: the iCalendar UID an export carries and an import is keyed on (unique per user).
UPGRADE = r"""
ALTER TABLE tasks
    ADD COLUMN parent_id bigint REFERENCES tasks (id) ON DELETE CASCADE,
    ADD COLUMN recurrence_from varchar(10) NOT NULL DEFAULT 'schedule',
    ADD COLUMN deleted_at timestamptz,
    ADD COLUMN uid text NOT NULL DEFAULT gen_random_uuid()::text,
    ADD CONSTRAINT ck_tasks_recurrence_from CHECK (recurrence_from IN ('schedule', 'completion')),
    ADD CONSTRAINT ck_tasks_not_own_parent CHECK (parent_id IS NULL OR parent_id <> id);
CREATE INDEX ix_tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX ix_tasks_trash ON tasks (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE UNIQUE INDEX uq_tasks_user_uid ON tasks (user_id, uid);
"""

DOWNGRADE = r"""
DROP INDEX IF EXISTS uq_tasks_user_uid;
DROP INDEX IF EXISTS ix_tasks_trash;
DROP INDEX IF EXISTS ix_tasks_parent;
ALTER TABLE tasks
    DROP COLUMN IF EXISTS uid,
    DROP COLUMN IF EXISTS deleted_at,
    DROP COLUMN IF EXISTS recurrence_from,
    DROP COLUMN IF EXISTS parent_id;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
