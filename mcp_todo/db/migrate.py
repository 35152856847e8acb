"""Schema migrations (Alembic, shipped inside the package) and the check a server makes before it serves."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Serialises concurrent `migrate` runs (several replicas starting at once); any constant works, this one is ours.
_MIGRATION_LOCK_KEY = 0x6D6370746F646F
# A revision file's own `revision = "…"` and `down_revision = "…"` (or None) lines, as Alembic's template writes them.
_REVISION_LINE = re.compile(r"""^(revision|down_revision)\s*(?::[^=]*)?=\s*(?:["']([^"']+)["']|None)\s*$""", re.M)


def _config() -> Config:
    # Alembic is imported only to migrate (or to explain an unknown revision): it is a tenth of a second of a
    # server's start that a server on a current schema does not need.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@functools.cache
def _revisions() -> dict[str, str | None]:
    """Each revision this version ships and the one it revises, read from the revision files' text (not imported)."""
    revisions: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        found = dict((name, value or None) for name, value in _REVISION_LINE.findall(path.read_text()))
        if "revision" in found and found["revision"] is not None:
            revisions[found["revision"]] = found.get("down_revision")
    return revisions


def head_revision() -> str:
    """The newest revision: the one no other revises. Alembic's own reading decides whenever the files do not name
    exactly one (it says what is wrong with them)."""
    revisions = _revisions()
    heads = set(revisions) - set(revisions.values())
    if len(heads) == 1:
        return heads.pop()
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _load_alembic() -> None:
    from alembic import command  # noqa: F401  (imported for its side effect: loaded once, off the loop)
    from alembic.runtime import migration  # noqa: F401
    from alembic.script import ScriptDirectory

    ScriptDirectory.from_config(_config()).get_current_head()


def _current(sync_conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(sync_conn).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: no schema yet), read as Alembic keeps it: the one row of
    `alembic_version` on the search path."""
    async with engine.connect() as conn:
        if (await conn.execute(text("SELECT to_regclass('alembic_version')"))).scalar() is None:
            return None
        rows: list[str] = list((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all())
        if len(rows) <= 1:
            return rows[0] if rows else None
        return await conn.run_sync(_current)  # several heads: Alembic's own error says so


async def migrate(engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade to the newest revision (or to `revision`); returns (before, after)."""

    def upgrade(sync_conn: Connection) -> str | None:
        # A session lock, not a transaction's: each revision commits on its own, and one (building indexes
        # CONCURRENTLY on a live database) runs outside any transaction.
        sync_conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        sync_conn.commit()
        try:
            before = _current(sync_conn)
            sync_conn.commit()
            from alembic import command

            cfg = _config()
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, revision)
        finally:
            sync_conn.rollback()
            sync_conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            sync_conn.commit()
        return before

    # The upgrade runs on the event loop's thread (SQLAlchemy's run_sync); Alembic's first import (~0.2-0.4 s) and
    # its reading of the revision files happen in a worker thread first, so they do not hold the loop.
    await asyncio.to_thread(_load_alembic)
    async with engine.connect() as conn:
        before = await conn.run_sync(upgrade)
    after = head_revision() if revision == "head" else revision
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
    if current in _revisions():
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
