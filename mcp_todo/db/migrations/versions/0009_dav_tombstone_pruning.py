"""dav tombstone pruning: when each tombstone was made, and per user the newest pruned one

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from mcp_todo.db.migrate import execute_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Tombstones older than the retention are pruned by the daily purge; a sync token that does not see the newest one
# pruned for its user (`dav_sync_horizons.pruned_xid`) could miss a deletion, so it is refused (RFC 6578
# valid-sync-token) and the client syncs afresh. Tombstones there before this revision count as made now.
UPGRADE = r"""
ALTER TABLE dav_tombstones ADD COLUMN made_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX ix_dav_tombstones_made ON dav_tombstones (made_at);
CREATE TABLE dav_sync_horizons (
    user_id     text NOT NULL,
    pruned_xid  bigint NOT NULL,
    PRIMARY KEY (user_id)
);
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS dav_sync_horizons;
DROP INDEX IF EXISTS ix_dav_tombstones_made;
ALTER TABLE dav_tombstones DROP COLUMN IF EXISTS made_at;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
