"""Schema migrations (Alembic, shipped inside the package) and the check a server makes before it serves."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Serialises concurrent `migrate` runs (several replicas starting at once); any constant works, this one is ours.
_MIGRATION_LOCK_KEY = 0x6D6370746F646F


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _current(sync_conn: Connection) -> str | None:
    return MigrationContext.configure(sync_conn).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def migrate(engine: AsyncEngine) -> tuple[str | None, str]:
    """Upgrade to the newest revision; returns (before, after)."""

    def upgrade(sync_conn: Connection) -> str | None:
        sync_conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        before = _current(sync_conn)
        cfg = _config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "head")
        return before

    async with engine.begin() as conn:
        before = await conn.run_sync(upgrade)
    after = head_revision()
    log.info("database migrated", extra={"from_revision": before, "to_revision": after})
    return before, after


async def require_current_schema(engine: AsyncEngine) -> None:
    """Refuse to serve on a schema older (or newer) than this version's, naming the command that fixes it."""
    current = await current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise ConfigurationError("the database has no mcp-todo schema yet: run `mcp-todo migrate` first")
    known = {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}
    if current in known:
        raise ConfigurationError(
            f"the database schema is at revision {current}, this version needs {head}: run `mcp-todo migrate`"
        )
    raise ConfigurationError(
        f"the database schema is at revision {current}, newer than this version knows ({head}): upgrade mcp-todo"
    )


def execute_script(sql: str) -> None:
    """Run a multi-statement SQL script inside a migration.

    asyncpg prepares every statement SQLAlchemy sends, and a prepared statement holds one command; the driver's own
    `execute` without arguments uses the simple query protocol, which takes a whole script.
    """
    from alembic import op
    from sqlalchemy.util import await_

    driver = op.get_bind().connection.driver_connection
    assert driver is not None, "migrations run on an open asyncpg connection"
    await_(driver.execute(sql))
