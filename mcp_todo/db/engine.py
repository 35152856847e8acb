"""Connections: an SQLAlchemy async engine over asyncpg, built from a DSN asyncpg parses itself.

SQLAlchemy's asyncpg dialect rejects `?sslmode=` in a URL, so the engine gets its connections from
`async_creator` and asyncpg reads the whole DSN (sslmode, host lists, sockets) as libpq would.
"""

from __future__ import annotations

import logging
import re
from typing import TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

_PASSWORD_IN_URL = re.compile(r"(://[^:/@]+:)[^@]*@")


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced, for logs and error messages."""
    return _PASSWORD_IN_URL.sub(r"\1***@", dsn)


def normalize_dsn(dsn: str) -> str:
    """Accept the URL spellings users paste (SQLAlchemy's `postgresql+asyncpg://`, Heroku's `postgres://`)."""
    dsn = dsn.strip()
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql://" + dsn[len(prefix) :]
    if not dsn.startswith("postgresql://"):
        raise ConfigurationError("DATABASE_URL must start with postgresql:// (e.g. postgresql://user:pass@host/db)")
    return dsn


async def resolve_dsn(settings: Settings) -> tuple[str, bool]:
    """The DSN to use and whether it is the embedded server (which the server migrates by itself)."""
    if settings.database_url is not None:
        return normalize_dsn(settings.database_url.get_secret_value()), False
    from mcp_todo.db.embedded import start_embedded

    return await start_embedded(settings.data_dir), True


async def connect(dsn: str, *, timeout_s: float = 10.0) -> asyncpg.Connection:
    """One raw asyncpg connection, with driver errors turned into one-line configuration errors."""
    try:
        return await asyncpg.connect(dsn, timeout=timeout_s)
    except asyncpg.InvalidPasswordError as exc:
        raise ConfigurationError(f"database refused the password for {redact_dsn(dsn)}") from exc
    except asyncpg.InvalidCatalogNameError as exc:
        raise ConfigurationError(f"database does not exist: {redact_dsn(dsn)}") from exc
    except (TimeoutError, OSError, asyncpg.CannotConnectNowError) as exc:
        raise ConfigurationError(f"cannot reach the database at {redact_dsn(dsn)}: {exc.__class__.__name__}") from exc
    except asyncpg.PostgresError as exc:
        raise ConfigurationError(f"database rejected the connection to {redact_dsn(dsn)}: {exc.sqlstate}") from exc
    except ValueError as exc:  # asyncpg's DSN parser
        raise ConfigurationError("DATABASE_URL is not a valid PostgreSQL URL") from exc


def create_engine(dsn: str, *, pool_size: int = 10) -> AsyncEngine:
    async def creator() -> asyncpg.Connection:
        return await asyncpg.connect(dsn, timeout=10)

    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=creator,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


async def check_connection(dsn: str) -> None:
    conn = await connect(dsn)
    await conn.close()
