"""The `api_tokens` table: bearer tokens for the HTTP transports, stored as the SHA-256 of their secret.

The CLI manages them over one raw asyncpg connection (`mcp-todo token …`); the HTTP server checks them through the
engine on every request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import func, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.models import ApiToken, table_of

_tokens = table_of(ApiToken)


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
    c = _tokens.c
    statement = (
        update(_tokens)
        .where(
            c.secret_sha256 == secret_sha256,
            c.revoked_at.is_(None),
            or_(c.expires_at.is_(None), c.expires_at > func.now()),
        )
        .values(last_used_at=func.now())
        .returning(c.user_id, c.expires_at)
    )
    return (await conn.execute(statement)).one_or_none()
