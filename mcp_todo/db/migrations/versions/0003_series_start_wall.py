"""the wall time a series was asked to start at

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from mcp_todo.db.migrate import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Nullable, no default, no rewrite: the series stored before it keep expanding from `series_start` as they did.
UPGRADE = r"""
ALTER TABLE tasks ADD COLUMN series_start_wall timestamp without time zone;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script("ALTER TABLE tasks DROP COLUMN IF EXISTS series_start_wall;")
