"""The `api_tokens` table: bearer tokens for the HTTP transports, stored as the SHA-256 of their secret.

The CLI manages them over one raw asyncpg connection (`mcp-todo token …`); the HTTP server checks them through the
engine on every request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_USE: Final = text(
    """UPDATE api_tokens SET last_used_at = now()
       WHERE secret_sha256 = :digest AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
       RETURNING user_id, expires_at"""
)


async def insert_token(conn: asyncpg.Connection, user_id: str, secret_sha256: str, expires_in: timedelta | None) -> int:
    token_id = await conn.fetchval(
        "INSERT INTO api_tokens (user_id, secret_sha256, expires_at) VALUES ($1, $2, now() + $3) RETURNING id",
        user_id,
        secret_sha256,
        expires_in,
    )
    return int(token_id)


async def all_tokens(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every token (never a secret: only its digest is stored, and not returned), by id."""
    rows = await conn.fetch(
        "SELECT id, user_id, created_at, expires_at, revoked_at, last_used_at FROM api_tokens ORDER BY id"
    )
    return [dict(row) for row in rows]


async def revoke(conn: asyncpg.Connection, token_id: int) -> bool:
    """Revoke an active token; False when there is none with that id (or it is revoked already)."""
    status = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id
    )
    return bool(status.endswith(" 1"))


async def use(conn: AsyncConnection, secret_sha256: str) -> Any:
    """Record a use of the active token with this digest; its (user_id, expires_at) row, or None."""
    return (await conn.execute(_USE, {"digest": secret_sha256})).one_or_none()
