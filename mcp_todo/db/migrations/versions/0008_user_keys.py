"""user keys: every per-user table has user_id in its primary key and unique constraints, and its foreign keys to
another per-user table carry user_id (what a database distributed by user_id requires)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import time

from alembic import op
from sqlalchemy import text
from sqlalchemy.util import await_

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Built on a live database without a long lock on a large tasks table:
# 1. every new unique index is built CONCURRENTLY (writes go on; a build a failed run left invalid is dropped first);
# 2. each table's constraints are swapped in one short transaction: the old primary key and the foreign keys that
#    depend on it are dropped, the new primary key takes the index built in 1 (`USING INDEX`: no scan, the columns
#    are NOT NULL already), and the foreign keys come back over (user_id, …) NOT VALID (no scan). These hold an
#    ACCESS EXCLUSIVE lock for the catalog changes only, with a lock_timeout so a long transaction in the way makes
#    the step retry instead of queueing every writer behind it;
# 3. the foreign keys are validated (SHARE UPDATE EXCLUSIVE: reads and writes go on) and the partial unique indexes
#    replaced (DROP INDEX CONCURRENTLY, then a rename).
# Every step is safe to run again, so a run stopped half way is finished by the next `mcp-todo migrate`.
#
# categories → tasks: the foreign key is NO ACTION; deleting a category first uncategorises its tasks (the service
# does, in the same transaction): ON DELETE SET NULL would set user_id to null too, and naming only category_id
# (SET NULL (category_id)) needs PostgreSQL 15.

NEW_INDEXES = [
    ("categories_pkey_user", "categories (user_id, id)"),
    ("tags_pkey_user", "tags (user_id, id)"),
    ("tasks_pkey_user", "tasks (user_id, id)"),
    ("task_tags_pkey_user", "task_tags (user_id, task_id, tag_id)"),
    ("notifications_pkey_user", "notifications (user_id, id)"),
    ("uq_notifications_task_remind_user", "notifications (user_id, task_id, remind_at)"),
    ("outbox_pkey_user", "outbox (user_id, id)"),
    ("outbox_event_id_key_user", "outbox (user_id, event_id)"),
    ("uq_tasks_series_due_user", "tasks (user_id, series_id, due_date) WHERE series_id IS NOT NULL"),
    ("uq_tasks_previous_user", "tasks (user_id, previous_task_id) WHERE previous_task_id IS NOT NULL"),
]

# (table whose primary key is done when it leads with user_id, the swap)
SWAPS = [
    (
        "categories",
        """
        ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_category_id_fkey;
        ALTER TABLE dav_collection_names DROP CONSTRAINT IF EXISTS dav_collection_names_category_id_fkey;
        ALTER TABLE categories DROP CONSTRAINT categories_pkey;
        ALTER TABLE categories ADD CONSTRAINT categories_pkey PRIMARY KEY USING INDEX categories_pkey_user;
        ALTER TABLE tasks ADD CONSTRAINT fk_tasks_category FOREIGN KEY (user_id, category_id)
            REFERENCES categories (user_id, id) NOT VALID;
        ALTER TABLE dav_collection_names ADD CONSTRAINT fk_dav_collection_names_category
            FOREIGN KEY (user_id, category_id) REFERENCES categories (user_id, id) ON DELETE CASCADE NOT VALID;
        """,
    ),
    (
        "tags",
        """
        ALTER TABLE task_tags DROP CONSTRAINT IF EXISTS task_tags_tag_id_fkey;
        ALTER TABLE tags DROP CONSTRAINT tags_pkey;
        ALTER TABLE tags ADD CONSTRAINT tags_pkey PRIMARY KEY USING INDEX tags_pkey_user;
        ALTER TABLE task_tags ADD CONSTRAINT fk_task_tags_tag FOREIGN KEY (user_id, tag_id)
            REFERENCES tags (user_id, id) ON DELETE CASCADE NOT VALID;
        """,
    ),
    (
        "tasks",
        """
        ALTER TABLE task_tags DROP CONSTRAINT IF EXISTS task_tags_task_id_fkey;
        ALTER TABLE task_tags DROP CONSTRAINT task_tags_pkey;
        ALTER TABLE task_tags ADD CONSTRAINT task_tags_pkey PRIMARY KEY USING INDEX task_tags_pkey_user;
        ALTER TABLE dav_task_properties DROP CONSTRAINT IF EXISTS dav_task_properties_task_id_fkey;
        ALTER TABLE task_dependencies DROP CONSTRAINT fk_task_dependencies_task;
        ALTER TABLE task_dependencies DROP CONSTRAINT fk_task_dependencies_blocker;
        ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_parent_id_fkey;
        ALTER TABLE tasks DROP CONSTRAINT tasks_pkey;
        ALTER TABLE tasks DROP CONSTRAINT uq_tasks_user_id;
        ALTER TABLE tasks ADD CONSTRAINT tasks_pkey PRIMARY KEY USING INDEX tasks_pkey_user;
        ALTER TABLE tasks ADD CONSTRAINT fk_tasks_parent FOREIGN KEY (user_id, parent_id)
            REFERENCES tasks (user_id, id) ON DELETE CASCADE NOT VALID;
        ALTER TABLE task_tags ADD CONSTRAINT fk_task_tags_task FOREIGN KEY (user_id, task_id)
            REFERENCES tasks (user_id, id) ON DELETE CASCADE NOT VALID;
        ALTER TABLE dav_task_properties ADD CONSTRAINT fk_dav_task_properties_task FOREIGN KEY (user_id, task_id)
            REFERENCES tasks (user_id, id) ON DELETE CASCADE NOT VALID;
        ALTER TABLE task_dependencies ADD CONSTRAINT fk_task_dependencies_task FOREIGN KEY (user_id, task_id)
            REFERENCES tasks (user_id, id) ON DELETE CASCADE NOT VALID;
        ALTER TABLE task_dependencies ADD CONSTRAINT fk_task_dependencies_blocker FOREIGN KEY (user_id, blocker_id)
            REFERENCES tasks (user_id, id) ON DELETE CASCADE NOT VALID;
        """,
    ),
    (
        "notifications",
        """
        ALTER TABLE notifications DROP CONSTRAINT notifications_pkey;
        ALTER TABLE notifications ADD CONSTRAINT notifications_pkey PRIMARY KEY USING INDEX notifications_pkey_user;
        ALTER TABLE notifications DROP CONSTRAINT uq_notifications_task_remind;
        ALTER TABLE notifications ADD CONSTRAINT uq_notifications_task_remind
            UNIQUE USING INDEX uq_notifications_task_remind_user;
        """,
    ),
    (
        "outbox",
        """
        ALTER TABLE outbox DROP CONSTRAINT outbox_pkey;
        ALTER TABLE outbox ADD CONSTRAINT outbox_pkey PRIMARY KEY USING INDEX outbox_pkey_user;
        ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key;
        ALTER TABLE outbox ADD CONSTRAINT outbox_event_id_key UNIQUE USING INDEX outbox_event_id_key_user;
        """,
    ),
]

VALIDATE = [
    ("tasks", "fk_tasks_category"),
    ("dav_collection_names", "fk_dav_collection_names_category"),
    ("task_tags", "fk_task_tags_tag"),
    ("tasks", "fk_tasks_parent"),
    ("task_tags", "fk_task_tags_task"),
    ("dav_task_properties", "fk_dav_task_properties_task"),
    ("task_dependencies", "fk_task_dependencies_task"),
    ("task_dependencies", "fk_task_dependencies_blocker"),
]

# (old partial unique index, its replacement)
RENAMES = [("uq_tasks_series_due", "uq_tasks_series_due_user"), ("uq_tasks_previous", "uq_tasks_previous_user")]

# How long a swap waits for its lock before it gives up and tries again (a swap itself takes milliseconds).
LOCK_TIMEOUT = "2s"
SWAP_ATTEMPTS = 30


def _execute(sql: str) -> object:
    driver = op.get_bind().connection.driver_connection
    assert driver is not None, "migrations run on an open asyncpg connection"
    return await_(driver.execute(sql))


def _scalar(sql: str) -> object:
    return op.get_bind().execute(text(sql)).scalar()


def _leads_with_user_id(index: str) -> bool:
    """Whether the index of that name exists and its first column is user_id."""
    first = _scalar(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        f"WHERE i.indexrelid = to_regclass('{index}')"
    )
    return first == "user_id"


def _swap(table: str, sql: str) -> None:
    import asyncpg

    for attempt in range(1, SWAP_ATTEMPTS + 1):
        if _leads_with_user_id(f"{table}_pkey"):
            return
        try:
            _execute(f"BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; {sql} COMMIT;")
            return
        except asyncpg.LockNotAvailableError:
            _execute("ROLLBACK")
            if attempt == SWAP_ATTEMPTS:
                raise
            time.sleep(min(attempt, 5) * 0.2)
        except Exception:
            _execute("ROLLBACK")  # leave the session usable for the lock's release; the error stands
            raise


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, target in NEW_INDEXES:
            if _scalar(f"SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass('{name}')"):
                _execute(f"DROP INDEX CONCURRENTLY {name}")
            if not _leads_with_user_id(name.removesuffix("_user")):
                _execute(f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {target}")
        # The outbox keeps an index on id alone (its key no longer starts with it): local mode's live feed reads the
        # rows newer than an id, of every user.
        if _scalar("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass('ix_outbox_id')"):
            _execute("DROP INDEX CONCURRENTLY ix_outbox_id")
        _execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_outbox_id ON outbox (id)")
        for table, sql in SWAPS:
            _swap(table, sql)
        for table, constraint in VALIDATE:
            _execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {constraint}")
        for old, new in RENAMES:
            if _scalar(f"SELECT to_regclass('{new}') IS NOT NULL"):
                _execute(f"DROP INDEX CONCURRENTLY IF EXISTS {old}")
                _execute(f"ALTER INDEX {new} RENAME TO {old}")


DOWNGRADE = r"""
DROP INDEX ix_outbox_id;
ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key, DROP CONSTRAINT outbox_pkey;
ALTER TABLE outbox ADD CONSTRAINT outbox_pkey PRIMARY KEY (id), ADD CONSTRAINT outbox_event_id_key UNIQUE (event_id);
ALTER TABLE notifications DROP CONSTRAINT uq_notifications_task_remind, DROP CONSTRAINT notifications_pkey;
ALTER TABLE notifications ADD CONSTRAINT notifications_pkey PRIMARY KEY (id),
    ADD CONSTRAINT uq_notifications_task_remind UNIQUE (task_id, remind_at);
DROP INDEX uq_tasks_series_due, uq_tasks_previous;
CREATE UNIQUE INDEX uq_tasks_series_due ON tasks (series_id, due_date) WHERE series_id IS NOT NULL;
CREATE UNIQUE INDEX uq_tasks_previous ON tasks (previous_task_id) WHERE previous_task_id IS NOT NULL;
ALTER TABLE task_dependencies DROP CONSTRAINT fk_task_dependencies_task, DROP CONSTRAINT fk_task_dependencies_blocker;
ALTER TABLE dav_task_properties DROP CONSTRAINT fk_dav_task_properties_task;
ALTER TABLE dav_collection_names DROP CONSTRAINT fk_dav_collection_names_category;
ALTER TABLE task_tags DROP CONSTRAINT fk_task_tags_task, DROP CONSTRAINT fk_task_tags_tag,
    DROP CONSTRAINT task_tags_pkey;
ALTER TABLE tasks DROP CONSTRAINT fk_tasks_parent, DROP CONSTRAINT fk_tasks_category, DROP CONSTRAINT tasks_pkey;
ALTER TABLE tags DROP CONSTRAINT tags_pkey;
ALTER TABLE categories DROP CONSTRAINT categories_pkey;
ALTER TABLE categories ADD CONSTRAINT categories_pkey PRIMARY KEY (id);
ALTER TABLE tags ADD CONSTRAINT tags_pkey PRIMARY KEY (id);
ALTER TABLE tasks ADD CONSTRAINT tasks_pkey PRIMARY KEY (id),
    ADD CONSTRAINT tasks_category_id_fkey FOREIGN KEY (category_id) REFERENCES categories (id) ON DELETE SET NULL,
    ADD CONSTRAINT tasks_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES tasks (id) ON DELETE CASCADE,
    ADD CONSTRAINT uq_tasks_user_id UNIQUE (user_id, id);
ALTER TABLE task_tags ADD CONSTRAINT task_tags_pkey PRIMARY KEY (task_id, tag_id),
    ADD CONSTRAINT task_tags_task_id_fkey FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE,
    ADD CONSTRAINT task_tags_tag_id_fkey FOREIGN KEY (tag_id) REFERENCES tags (id) ON DELETE CASCADE;
ALTER TABLE dav_task_properties ADD CONSTRAINT dav_task_properties_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE;
ALTER TABLE dav_collection_names ADD CONSTRAINT dav_collection_names_category_id_fkey
    FOREIGN KEY (category_id) REFERENCES categories (id) ON DELETE CASCADE;
ALTER TABLE task_dependencies
    ADD CONSTRAINT fk_task_dependencies_task FOREIGN KEY (user_id, task_id)
        REFERENCES tasks (user_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT fk_task_dependencies_blocker FOREIGN KEY (user_id, blocker_id)
        REFERENCES tasks (user_id, id) ON DELETE CASCADE;
"""


def downgrade() -> None:
    from mcp_todo.db.migrate import execute_script

    execute_script(DOWNGRADE)
