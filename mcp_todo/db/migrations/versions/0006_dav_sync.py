"""CalDAV: a change stamp on every task (the writing transaction's id), tombstones of tasks that left a collection,
the names clients gave the collections they created, and the VTODO properties mcp-todo does not model

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from mcp_todo.db.migrate import execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# change_xid: the id (xid8, as bigint) of the last transaction that wrote the row, set by a trigger on every insert
# and update. A sync token is a snapshot (pg_current_snapshot): the rows changed since are those whose change_xid the
# snapshot does not see, which holds in commit order, across restarts and replicas (a sequence would not: numbers are
# taken in start order, and a transaction that took a smaller one may commit after a client read a larger one).
# Rows from before this revision keep 0, which every snapshot sees.
# dav_tombstones: a task that left a collection (deleted for good, moved to another category, or its uid changed),
# so a sync-collection reports it gone.
# dav_collection_names: the path segment a client gave a collection it created (MKCALENDAR), kept for that category.
# dav_task_properties: what a client wrote that mcp-todo does not model (X- properties, LOCATION, URL, more alarms),
# as the client wrote it, and the resource name it PUT the task under when that is not `<uid>.ics`.
UPGRADE = r"""
ALTER TABLE tasks ADD COLUMN change_xid bigint NOT NULL DEFAULT 0;
CREATE INDEX ix_tasks_user_change ON tasks (user_id, change_xid);
CREATE TABLE dav_tombstones (
    user_id      text NOT NULL,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    uid          text NOT NULL,
    href         text NOT NULL,
    category_id  bigint,
    change_xid   bigint NOT NULL,
    PRIMARY KEY (user_id, id)
);
CREATE INDEX ix_dav_tombstones_user_change ON dav_tombstones (user_id, change_xid);
CREATE TABLE dav_collection_names (
    user_id      text NOT NULL,
    segment      text NOT NULL,
    category_id  bigint NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, segment)
);
CREATE INDEX ix_dav_collection_names_category ON dav_collection_names (category_id);
CREATE TABLE dav_task_properties (
    user_id      text NOT NULL,
    task_id      bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    href         text,
    kept         text,
    PRIMARY KEY (user_id, task_id)
);
CREATE UNIQUE INDEX uq_dav_task_properties_href ON dav_task_properties (user_id, href);
CREATE INDEX ix_dav_task_properties_task ON dav_task_properties (task_id);
CREATE FUNCTION mcp_todo_dav_stamp_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_xid := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
CREATE TRIGGER trg_tasks_dav_stamp BEFORE INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION mcp_todo_dav_stamp_task();
CREATE FUNCTION mcp_todo_dav_tombstone_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A row written earlier in the same transaction (a task created under the uid a client gave it) was never seen.
    IF TG_OP = 'DELETE' OR ((OLD.category_id IS DISTINCT FROM NEW.category_id OR OLD.uid <> NEW.uid)
            AND OLD.change_xid <> pg_current_xact_id()::text::bigint) THEN
        INSERT INTO dav_tombstones (user_id, uid, href, category_id, change_xid)
        VALUES (OLD.user_id, OLD.uid, coalesce((SELECT p.href FROM dav_task_properties p
                    WHERE p.user_id = OLD.user_id AND p.task_id = OLD.id), OLD.uid || '.ics'),
                OLD.category_id, pg_current_xact_id()::text::bigint);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER trg_tasks_dav_tombstone AFTER DELETE OR UPDATE OF category_id, uid ON tasks
    FOR EACH ROW EXECUTE FUNCTION mcp_todo_dav_tombstone_task();
"""

DOWNGRADE = r"""
DROP TRIGGER IF EXISTS trg_tasks_dav_tombstone ON tasks;
DROP TRIGGER IF EXISTS trg_tasks_dav_stamp ON tasks;
DROP FUNCTION IF EXISTS mcp_todo_dav_tombstone_task();
DROP FUNCTION IF EXISTS mcp_todo_dav_stamp_task();
DROP TABLE IF EXISTS dav_task_properties;
DROP TABLE IF EXISTS dav_collection_names;
DROP TABLE IF EXISTS dav_tombstones;
DROP INDEX IF EXISTS ix_tasks_user_change;
ALTER TABLE tasks DROP COLUMN IF EXISTS change_xid;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
