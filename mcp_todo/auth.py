"""Bearer tokens for HTTP: `mcp-todo token create|list|revoke`, and the verifier the HTTP server authenticates with.

A token's secret is random (256 bits), shown once, and stored only as its SHA-256, so a leaked table grants nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
from mcp.server.auth.provider import AccessToken, TokenVerifier
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db import tokens as tokens_db
from mcp_todo.domain.errors import UnavailableError, ValidationError
from mcp_todo.runtime.expiring import ExpiringCache
from mcp_todo.service.context import translate_db_error

SECRET_PREFIX = "mtd_"
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}


def parse_duration(text: str) -> timedelta:
    """`90m`, `12h`, `30d`, `2w` → timedelta."""
    match = _DURATION.match(text.lower())
    if not match or int(match.group(1)) == 0:
        raise ValidationError(f"invalid duration {text!r}: use a number and m, h, d or w, e.g. 30d")
    minutes = int(match.group(1)) * _UNIT_MINUTES[match.group(2)]
    if minutes > 10 * 366 * 24 * 60:
        raise ValidationError("a token may last at most ten years")
    return timedelta(minutes=minutes)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user_id: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= datetime.now(UTC):
            return "expired"
        return "active"


async def create_token(conn: asyncpg.Connection, user_id: str, expires_in: timedelta | None) -> tuple[int, str]:
    user_id = user_id.strip()
    if not user_id or len(user_id) > 200:
        raise ValidationError("--user must be 1-200 characters")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    return await tokens_db.insert_token(conn, user_id, digest(secret), expires_in), secret


async def list_tokens(conn: asyncpg.Connection) -> list[TokenInfo]:
    return [TokenInfo(**row) for row in await tokens_db.all_tokens(conn)]


async def revoke_token(conn: asyncpg.Connection, token_id: int) -> bool:
    return await tokens_db.revoke(conn, token_id)


class TokenStoreUnavailable(Exception):
    """The database that holds the tokens cannot be asked, so a request can be neither let in nor turned away: the
    HTTP server answers 503 with Retry-After, as the tools answer UNAVAILABLE."""

    description = "the database is unreachable — retry later"


class TokenRefused(Exception):
    """A token that verified but cannot be used, for a reason its holder should be told (the HTTP server answers 401
    with this description) rather than the bare "Authentication required" of a token that did not verify."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class IdentityProviderUnavailable(TokenStoreUnavailable):
    """The OAuth issuer's keys cannot be fetched (and none are cached): a JWT can be neither accepted nor refused."""

    description = "the identity provider is unreachable — retry later"


class DatabaseTokenVerifier:
    """The MCP SDK's TokenVerifier over the api_tokens table: the token's user is who the server acts for."""

    def __init__(self, engine: Callable[[], AsyncEngine]) -> None:
        self._engine = engine

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token.startswith(SECRET_PREFIX) or len(token) > 200:
            return None
        try:
            async with self._engine().begin() as conn:
                row = await tokens_db.use(conn, digest(token))
        except sa_exc.DBAPIError as err:
            if not isinstance(translate_db_error(err), UnavailableError):
                raise  # a defect, not an outage: the server logs it with its traceback
            raise TokenStoreUnavailable(err.__class__.__name__) from err
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as err:
            # Raised unwrapped when the pool cannot open a connection at all (server down, refused, timed out).
            raise TokenStoreUnavailable(err.__class__.__name__) from err
        if row is None:
            return None
        return AccessToken(
            token=token,
            client_id=row.user_id,
            subject=row.user_id,
            scopes=[],
            expires_at=int(row.expires_at.timestamp()) if row.expires_at else None,
        )


# A verified token is trusted again without asking the database or the issuer for this long (and never past its
# `exp`): a revoked `mtd_` token keeps working for up to this many seconds on a server that saw it recently.
TOKEN_CACHE_TTL_S: Final = 30.0
TOKEN_CACHE_MAX: Final = 10_000
MAX_BEARER_CHARS: Final = 16_384


class VerifiedTokenCache:
    """Tokens verified in the last TOKEN_CACHE_TTL_S seconds, keyed by their SHA-256 (least recently used go first
    when full). Refusals are not cached: a bad token costs a check every time, a good one once per TTL."""

    def __init__(
        self,
        ttl_s: float = TOKEN_CACHE_TTL_S,
        max_entries: int = TOKEN_CACHE_MAX,
        clock: Callable[[], float] = time.time,  # wall-clock seconds, as a token's `exp` is
    ) -> None:
        self._entries: ExpiringCache[str, AccessToken] = ExpiringCache(ttl_s, max_entries, clock)

    def get(self, token: str) -> AccessToken | None:
        return self._entries.get(digest(token))

    def put(self, token: str, access: AccessToken) -> None:
        self._entries.put(digest(token), access, until=access.expires_at)


class CombinedVerifier:
    """`mtd_` tokens are checked against the database, any other against the OAuth issuer (when one is configured);
    both through one short cache of verified tokens, so a request costs no database query or signature check.

    An `mtd_` token is its user's full-access credential: it is granted the scopes the server requires of OAuth
    tokens, so requiring scopes never locks `mtd_` tokens out."""

    def __init__(
        self,
        database: TokenVerifier | None,
        oauth: TokenVerifier | None,
        *,
        granted_scopes: Sequence[str] = (),
        cache: VerifiedTokenCache | None = None,
    ) -> None:
        self._database = database
        self._oauth = oauth
        self._granted_scopes = list(granted_scopes)
        self._cache = cache or VerifiedTokenCache()

    async def verify_token(self, token: str) -> AccessToken | None:
        if len(token) > MAX_BEARER_CHARS:
            return None
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        is_mtd = token.startswith(SECRET_PREFIX)
        verifier = self._database if is_mtd else self._oauth
        if verifier is None:
            return None
        access = await verifier.verify_token(token)
        if access is None:
            return None
        if is_mtd:
            access = access.model_copy(update={"scopes": self._granted_scopes})
        self._cache.put(token, access)
        return access
