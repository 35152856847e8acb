from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.auth import DatabaseTokenVerifier, create_token, digest, list_tokens, parse_duration, revoke_token
from mcp_todo.domain.errors import ValidationError


@pytest.fixture
async def pool(db: AsyncEngine, database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_dsn, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def test_a_created_token_authenticates_its_user_until_revoked(pool: asyncpg.Pool, db: AsyncEngine) -> None:
    async with pool.acquire() as conn:
        token_id, secret = await create_token(conn, "alice", timedelta(days=30))
        stored = await conn.fetchval("SELECT secret_sha256 FROM api_tokens WHERE id = $1", token_id)
    assert stored == digest(secret) and secret not in stored
    verifier = DatabaseTokenVerifier(lambda: db)
    access = await verifier.verify_token(secret)
    assert access is not None and access.subject == "alice" and access.expires_at is not None
    async with pool.acquire() as conn:
        assert await revoke_token(conn, token_id)
        assert not await revoke_token(conn, token_id)
        (info,) = await list_tokens(conn)
    assert info.state == "revoked"
    assert await verifier.verify_token(secret) is None


async def test_wrong_and_expired_tokens_are_refused(pool: asyncpg.Pool, db: AsyncEngine) -> None:
    async with pool.acquire() as conn:
        _, secret = await create_token(conn, "bob", None)
        token_id, expired = await create_token(conn, "bob", timedelta(minutes=1))
        await conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", token_id)
    verifier = DatabaseTokenVerifier(lambda: db)
    assert await verifier.verify_token(secret + "x") is None
    assert await verifier.verify_token("Bearer " + secret) is None
    assert await verifier.verify_token("") is None
    assert await verifier.verify_token(expired) is None
    assert (await verifier.verify_token(secret)) is not None


@pytest.mark.parametrize("text", ["", "0d", "30", "d", "-1d", "30y", "9999999w", "1.5h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_duration(text)


def test_durations() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration(" 2W ") == timedelta(weeks=2)
