"""per-user settings: the zone and reminder lead a user's calls run with over HTTP

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from mcp_todo.db.migrate import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# A user without a row (or with a null column) gets the server's MCP_TODO_TIMEZONE / MCP_TODO_REMINDER_LEAD_MINUTES.
UPGRADE = r"""
CREATE TABLE user_settings (
    user_id text PRIMARY KEY,
    time_zone text,
    reminder_lead_minutes integer,
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT ck_user_settings_lead CHECK (reminder_lead_minutes BETWEEN 0 AND 525600)
);
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script("DROP TABLE IF EXISTS user_settings;")
