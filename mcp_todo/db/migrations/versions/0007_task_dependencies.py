"""task dependencies: which open tasks a task waits on (blocked_by)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from mcp_todo.db.migrate import execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# One row per edge "task_id waits on blocker_id", both tasks of the same user. user_id leads the primary key and both
# foreign keys, so the rows live with their user's tasks when the tables are distributed by user; the foreign keys
# need (user_id, id) to be unique on tasks (it is: id alone is). Deleting either task deletes the edge.
UPGRADE = r"""
ALTER TABLE tasks ADD CONSTRAINT uq_tasks_user_id UNIQUE (user_id, id);
CREATE TABLE task_dependencies (
    user_id     text NOT NULL,
    task_id     bigint NOT NULL,
    blocker_id  bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_dependencies_pkey PRIMARY KEY (user_id, task_id, blocker_id),
    CONSTRAINT fk_task_dependencies_task FOREIGN KEY (user_id, task_id)
        REFERENCES tasks (user_id, id) ON DELETE CASCADE,
    CONSTRAINT fk_task_dependencies_blocker FOREIGN KEY (user_id, blocker_id)
        REFERENCES tasks (user_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_task_dependencies_not_self CHECK (task_id <> blocker_id)
);
CREATE INDEX ix_task_dependencies_blocker ON task_dependencies (user_id, blocker_id);
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS task_dependencies;
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS uq_tasks_user_id;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
