"""OAuth 2.1 protected resource (the MCP authorization spec, RFC 9728) in front of an existing OIDC issuer.

The server is never an authorization server: it verifies JWT access tokens an issuer (Keycloak, Auth0, Entra ID,
Authentik, …) signed, with keys found through the issuer's OpenID configuration, and publishes metadata that sends
OAuth clients to that issuer. PyJWT does the JOSE work (signature, `exp`/`nbf`/`iss`/`aud`); this module only finds
the key: its JWKS is fetched with httpx (asynchronously: PyJWKClient would block the event loop with urllib), cached,
and fetched again when a token names a key id it does not know, at most once per KEY_REFETCH_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_todo.auth import CombinedVerifier, DatabaseTokenVerifier, IdentityProviderUnavailable, TokenRefused
from mcp_todo.settings import Settings

if TYPE_CHECKING:
    import httpx

# httpx and jwt (with cryptography) are imported where a JWT is checked: ~85 ms of cold start that a server
# without MCP_TODO_OAUTH_ISSUER never needs. The first import is made in a worker thread (_jose_imported), since on
# a busy machine it holds the event loop for half a second.
_JOSE_MODULES: Final = ("httpx", "jwt", "jwt.algorithms")


async def _jose_imported() -> None:
    if all(name in sys.modules for name in _JOSE_MODULES):
        return
    await asyncio.to_thread(lambda: [importlib.import_module(name) for name in _JOSE_MODULES])


log = logging.getLogger(__name__)

# Asymmetric algorithms only: never `none`, never HS* (an HMAC "signed" with the issuer's public key would verify).
ALLOWED_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
LEEWAY_S: Final = 30  # clock skew allowed on exp/nbf/iat
KEY_REFETCH_INTERVAL_S: Final = 10.0  # at most one JWKS fetch per this for unknown key ids, so junk kids cannot flood
KEYS_MAX_AGE_S: Final = 3600.0  # known keys are refreshed at least this often, so a removed key stops verifying
FETCH_TIMEOUT_S: Final = 5.0
MAX_TOKEN_CHARS: Final = 16_384
MAX_USER_CHARS: Final = 200
METADATA_PATH: Final = "/.well-known/oauth-protected-resource"
WILDCARD_HOSTS: Final = ("0.0.0.0", "::", "")


def auth_options(settings: Settings, public_url: str, engine: Callable[[], AsyncEngine]) -> dict[str, Any]:
    """The MCPServer's `token_verifier` and `auth` for HTTP: `mtd_` tokens always, JWTs of MCP_TODO_OAUTH_ISSUER
    when it is set, the required scopes, and the resource URL the SDK's 401s point to."""
    oauth = JwtVerifier(settings, public_url) if settings.oauth_issuer else None
    scopes = settings.oauth_scope_list
    verifier = CombinedVerifier(DatabaseTokenVerifier(engine), oauth, granted_scopes=scopes)
    auth = AuthSettings(
        # Only the SDK's own metadata route reads issuer_url, and ProtectedResourceMetadata answers in its place.
        issuer_url=AnyHttpUrl(settings.oauth_issuer or public_url),
        resource_server_url=AnyHttpUrl(resource_url(public_url)),
        required_scopes=scopes or None,
        # JwtVerifier checks `aud` itself (MCP_TODO_OAUTH_AUDIENCE may differ from the resource URL).
        validate_token_resource=False,
    )
    return {"token_verifier": verifier, "auth": auth}


def public_url_for(settings: Settings, host: str, port: int) -> str:
    """The URL clients reach: MCP_TODO_PUBLIC_URL, else http://host:port — never a wildcard address, which no client
    can reach (a wildcard bind names this machine and says so in the log)."""
    if settings.public_url:
        return settings.public_url
    if host in WILDCARD_HOSTS:
        name = socket.gethostname()
        log.warning(
            "MCP_TODO_PUBLIC_URL is unset and the server listens on a wildcard address: the OAuth resource URL uses "
            "this machine's name; set MCP_TODO_PUBLIC_URL to the URL clients reach",
            extra={"host_name": name},
        )
        host = name
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def resource_url(public_url: str) -> str:
    """The protected resource: the streamable HTTP endpoint."""
    return f"{public_url}/mcp"


def audience(settings: Settings, public_url: str) -> str:
    return settings.oauth_audience or resource_url(public_url)


def resource_metadata(settings: Settings, public_url: str) -> dict[str, Any]:
    """RFC 9728 metadata. `authorization_servers` names the configured issuer; without one the server accepts only
    `mtd_` tokens, which no OAuth flow issues, so the member is left out rather than naming an authorization server
    that does not exist (RFC 9728 makes it optional)."""
    metadata: dict[str, Any] = {
        "resource": resource_url(public_url),
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-todo",
    }
    if settings.oauth_issuer:
        metadata["authorization_servers"] = [settings.oauth_issuer]
        metadata["resource_signing_alg_values_supported"] = list(ALLOWED_ALGORITHMS)
    if settings.oauth_scope_list:
        metadata["scopes_supported"] = settings.oauth_scope_list
    return metadata


def metadata_url(public_url: str) -> str:
    """Where the metadata of the /mcp resource lives (RFC 9728 §3.1: the well-known path, then the resource's)."""
    return f"{public_url}{METADATA_PATH}/mcp"


class ProtectedResourceMetadata:
    """Answers `GET /.well-known/oauth-protected-resource` and its `/mcp`-suffixed form with this server's metadata,
    in front of the SDK's own route (which always names an authorization server, even when there is none)."""

    PATHS: Final = (METADATA_PATH, f"{METADATA_PATH}/mcp")

    def __init__(self, app: ASGIApp, metadata: dict[str, Any]) -> None:
        self.app = app
        self.body = json.dumps(metadata).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") not in self.PATHS:
            await self.app(scope, receive, send)
            return
        # Public, and read by browser-based clients from other origins.
        cors = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, OPTIONS"}
        response: Response
        if scope["method"] == "OPTIONS":
            response = Response(status_code=204, headers={**cors, "Access-Control-Allow-Headers": "*"})
        elif scope["method"] in ("GET", "HEAD"):
            response = Response(
                self.body, media_type="application/json", headers={**cors, "Cache-Control": "public, max-age=3600"}
            )
        else:
            response = JSONResponse({"error": "method not allowed"}, status_code=405, headers={"Allow": "GET"})
        await response(scope, receive, send)


@dataclass(frozen=True)
class SigningKey:
    key: Any  # the `cryptography` public key PyJWT verifies with
    declared_alg: str | None  # the JWK's `alg`, when it names one: a token must use that one


class IssuerKeys:
    """The issuer's signing keys: discovered through `<issuer>/.well-known/openid-configuration`, cached, fetched
    again for an unknown key id (rate-limited) and at least every KEYS_MAX_AGE_S."""

    def __init__(self, issuer: str, *, refetch_interval_s: float = KEY_REFETCH_INTERVAL_S) -> None:
        self.configured_issuer = issuer
        self.issuer: str | None = None  # as the discovery document spells it (Auth0 ends it with a slash)
        self._jwks_uri: str | None = None
        self._keys: dict[str | None, SigningKey] = {}
        self._fetched_at: float | None = None  # the last fetch that succeeded
        self._attempted_at: float | None = None  # the last fetch tried, whatever came of it
        self._refetch_interval_s = refetch_interval_s
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> SigningKey | None:
        """The verification key for `kid`, or None when the issuer does not publish it. Raises
        IdentityProviderUnavailable when there are no keys and the issuer cannot be asked for them."""
        stale = self._fetched_at is None or time.monotonic() - self._fetched_at > KEYS_MAX_AGE_S
        if (stale or self._find(kid) is None) and self._may_fetch():
            await self._refresh()
        found = self._find(kid)
        if found is None and not self._keys:
            raise IdentityProviderUnavailable("no keys of the OAuth issuer yet")
        return found

    def _find(self, kid: str | None) -> SigningKey | None:
        if kid is not None:
            return self._keys.get(kid)
        # A token without `kid` is accepted only when the issuer publishes a single signing key.
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    def _may_fetch(self) -> bool:
        """At most one fetch per interval, whatever asks (an unknown kid, stale keys, or an issuer that is down)."""
        return self._attempted_at is None or time.monotonic() - self._attempted_at >= self._refetch_interval_s

    async def _refresh(self) -> None:
        await _jose_imported()
        import httpx
        import jwt

        async with self._lock:
            if not self._may_fetch():
                return  # another request fetched while this one waited
            self._attempted_at = time.monotonic()
            try:
                await self._fetch()
            except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWTError) as err:
                # Keep serving with the keys we have (if any); the next attempt waits for the interval.
                log.warning(
                    "cannot fetch the OAuth issuer's keys",
                    extra={"issuer": self.configured_issuer, "error": f"{err.__class__.__name__}: {err}"[:300]},
                )

    async def _fetch(self) -> None:
        import httpx
        import jwt

        # Made in a worker thread: a client loads the system's CA certificates when it is made (tens of ms).
        client = await asyncio.to_thread(httpx.AsyncClient, timeout=FETCH_TIMEOUT_S, follow_redirects=False)
        async with client:
            if self._jwks_uri is None:
                discovery = self.configured_issuer.rstrip("/") + "/.well-known/openid-configuration"
                document = _json_object(await client.get(discovery))
                issuer = str(document["issuer"])
                if issuer.rstrip("/") != self.configured_issuer.rstrip("/"):
                    raise ValueError(f"the discovery document names issuer {issuer!r}, not the configured one")
                self.issuer, self._jwks_uri = issuer, str(document["jwks_uri"])
            jwks = _json_object(await client.get(self._jwks_uri))
        keys: dict[str | None, SigningKey] = {}
        for entry in jwks.get("keys", []):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue
            try:
                declared = entry.get("alg")
                keys[entry.get("kid")] = SigningKey(jwt.PyJWK(entry).key, str(declared) if declared else None)
            except jwt.PyJWTError:
                continue  # a key type or curve PyJWT cannot use; the others still verify
        self._keys = keys
        self._fetched_at = time.monotonic()
        log.info("fetched the OAuth issuer's keys", extra={"issuer": self.issuer, "keys": len(keys)})


def _json_object(response: httpx.Response) -> dict[str, Any]:
    response.raise_for_status()
    document = response.json()
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


class JwtVerifier:
    """The MCP SDK's TokenVerifier for JWT access tokens of the configured issuer: the user is `user_claim`."""

    def __init__(self, settings: Settings, public_url: str, keys: IssuerKeys | None = None) -> None:
        if not settings.oauth_issuer:
            raise ValueError("JwtVerifier needs MCP_TODO_OAUTH_ISSUER")
        self.keys = keys or IssuerKeys(settings.oauth_issuer)
        self.audience = audience(settings, public_url)
        self.user_claim = settings.oauth_user_claim

    async def verify_token(self, token: str) -> AccessToken | None:
        if len(token) > MAX_TOKEN_CHARS:
            return None
        await _jose_imported()
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return _refused("malformed")
        # Nothing read from the token is logged before its signature is checked: the header and claims are anyone's.
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            return _refused("algorithm not allowed")
        kid = header.get("kid")
        key = await self.keys.key(kid if isinstance(kid, str) else None)
        if key is None:
            return _refused("unknown key")
        if key.declared_alg not in (None, alg):
            return _refused("algorithm is not the key's")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.keys.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as err:
            return _refused(err.__class__.__name__)
        user = claims.get(self.user_claim)
        if not isinstance(user, str) or not user or len(user) > MAX_USER_CHARS:
            return _refused("no user claim", claim=self.user_claim)
        if not user.isprintable() or any(character.isspace() for character in user):
            # The claim names the user exactly as it is: trimmed or cleaned, " alice" would be the user alice.
            _refused("user claim has whitespace or control characters", claim=self.user_claim)
            raise TokenRefused(
                f"the token's {self.user_claim} claim has whitespace or control characters; mcp-todo names the user "
                "by it exactly, so it must have none"
            )
        client_id = claims.get("client_id") or claims.get("azp") or user
        return AccessToken(
            token=token,
            client_id=str(client_id),
            subject=user,
            scopes=_scopes(claims),
            # When this server stops accepting it: PyJWT allowed LEEWAY_S past `exp`, and the SDK and the cache of
            # verified tokens each check this again.
            expires_at=int(claims["exp"]) + LEEWAY_S,
            resource=self.audience,
            claims={name: claims[name] for name in ("iss", "zoneinfo") if name in claims},
        )


def _scopes(claims: dict[str, Any]) -> list[str]:
    """`scope` (RFC 9068: space-separated), else `scp` (Entra ID, Okta: a string or a list)."""
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, list):
        return [str(scope) for scope in raw]
    return str(raw).split()


def _refused(reason: str, **extra: str) -> AccessToken | None:
    log.info("bearer token refused", extra={"reason": reason, **extra})
    return None
