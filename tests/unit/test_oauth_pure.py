"""The OAuth pieces that need no network: the verified-token cache, the combined verifier's routing, the
protected-resource metadata, the public URL, and which zone and lead a call runs with."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.server.auth.provider import AccessToken

from mcp_todo.auth import CombinedVerifier, VerifiedTokenCache
from mcp_todo.server.oauth import public_url_for, resource_metadata
from mcp_todo.service.users import StoredUserSettings, effective_settings
from mcp_todo.settings import Settings


def settings(**env: Any) -> Settings:
    return Settings(_env_file=None, MCP_TODO_TIMEZONE="Asia/Kolkata", **env)  # type: ignore[call-arg]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A TokenVerifier that accepts the tokens it was given and counts how often it is asked."""

    def __init__(self, *accepted: str, expires_at: int | None = None) -> None:
        self.accepted = set(accepted)
        self.expires_at = expires_at
        self.asked = 0

    async def verify_token(self, token: str) -> AccessToken | None:
        self.asked += 1
        if token not in self.accepted:
            return None
        return AccessToken(token=token, client_id="c", subject="u", scopes=["s"], expires_at=self.expires_at)


def access(expires_at: int | None = None) -> AccessToken:
    return AccessToken(token="t", client_id="c", subject="u", scopes=[], expires_at=expires_at)


def test_the_cache_keeps_a_token_for_its_ttl_and_never_past_its_expiry() -> None:
    clock = Clock()
    cache = VerifiedTokenCache(ttl_s=30, clock=clock)
    cache.put("a", access())
    cache.put("b", access(expires_at=int(clock.now) + 5))
    clock.now += 4
    assert cache.get("a") is not None and cache.get("b") is not None
    clock.now += 2
    assert cache.get("a") is not None and cache.get("b") is None
    clock.now += 25
    assert cache.get("a") is None


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = VerifiedTokenCache(max_entries=2, clock=Clock())
    cache.put("a", access())
    cache.put("b", access())
    assert cache.get("a") is not None
    cache.put("c", access())
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None


async def test_mtd_tokens_go_to_the_database_others_to_the_issuer_and_each_is_asked_once_per_ttl() -> None:
    database, oauth = Counting("mtd_good"), Counting("eyJ.good")
    verifier = CombinedVerifier(database, oauth, granted_scopes=["todo"], cache=VerifiedTokenCache(clock=Clock()))
    for _ in range(3):
        mtd = await verifier.verify_token("mtd_good")
        jwt = await verifier.verify_token("eyJ.good")
    assert mtd is not None and mtd.scopes == ["todo"]  # an mtd_ token is granted the required scopes
    assert jwt is not None and jwt.scopes == ["s"]  # a JWT keeps its own
    assert (database.asked, oauth.asked) == (1, 1)
    # Refusals are not cached, and never cross over to the other verifier.
    assert await verifier.verify_token("mtd_bad") is None and await verifier.verify_token("mtd_bad") is None
    assert await verifier.verify_token("eyJ.good.but-not-mtd") is None
    assert (database.asked, oauth.asked) == (3, 2)


async def test_without_an_issuer_only_mtd_tokens_are_checked() -> None:
    database = Counting("mtd_good")
    verifier = CombinedVerifier(database, None)
    assert await verifier.verify_token("eyJ.anything") is None
    assert await verifier.verify_token("mtd_good") is not None
    assert await verifier.verify_token("mtd_" + "x" * 20_000) is None
    assert database.asked == 1


def test_metadata_names_the_issuer_only_when_there_is_one() -> None:
    none = resource_metadata(settings(), "https://todo.example.com")
    assert none["resource"] == "https://todo.example.com/mcp"
    assert "authorization_servers" not in none and "scopes_supported" not in none
    oauth = resource_metadata(
        settings(MCP_TODO_OAUTH_ISSUER="https://id.example.com/realms/team", MCP_TODO_OAUTH_SCOPES="todo  mcp"),
        "https://todo.example.com",
    )
    assert oauth["authorization_servers"] == ["https://id.example.com/realms/team"]
    assert oauth["scopes_supported"] == ["todo", "mcp"]
    assert not {"none", "HS256"} & set(oauth["resource_signing_alg_values_supported"])


def test_the_public_url_is_the_setting_else_the_bind_but_never_a_wildcard() -> None:
    assert public_url_for(settings(MCP_TODO_PUBLIC_URL="https://todo.example.com/"), "0.0.0.0", 8000) == (
        "https://todo.example.com"
    )
    assert public_url_for(settings(), "127.0.0.1", 8123) == "http://127.0.0.1:8123"
    assert public_url_for(settings(), "::1", 8123) == "http://[::1]:8123"
    for wildcard in ("0.0.0.0", "::"):
        assert "0.0.0.0" not in public_url_for(settings(), wildcard, 8000)
        assert "[::]" not in public_url_for(settings(), wildcard, 8000)


@pytest.mark.parametrize("bad", ["todo.example.com", "ftp://todo.example.com", "https://", "https://x/?a=1"])
def test_a_public_url_or_issuer_that_is_not_an_http_url_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="MCP_TODO_PUBLIC_URL"):
        settings(MCP_TODO_PUBLIC_URL=bad)
    with pytest.raises(ValueError, match="MCP_TODO_OAUTH_ISSUER"):
        settings(MCP_TODO_OAUTH_ISSUER=bad)


def test_the_audience_defaults_to_the_resource() -> None:
    from mcp_todo.server.oauth import audience

    assert audience(settings(), "https://todo.example.com") == "https://todo.example.com/mcp"
    assert audience(settings(MCP_TODO_OAUTH_AUDIENCE="api://todo"), "https://todo.example.com") == "api://todo"


def test_a_call_runs_in_the_claimed_zone_else_the_stored_else_the_servers() -> None:
    server = settings(MCP_TODO_REMINDER_LEAD_MINUTES="45")
    stored = StoredUserSettings("bob", time_zone="America/New_York", reminder_lead_minutes=15)
    assert effective_settings(server, stored, "Europe/Paris") == effective_settings(server, stored, "Europe/Paris")
    assert effective_settings(server, stored, "Europe/Paris").time_zone == "Europe/Paris"
    assert effective_settings(server, stored, "Europe/Paris").zone_source == "token"
    for junk in ("Mars/Olympus", "", 42, None, "../../etc/passwd"):
        chosen = effective_settings(server, stored, junk)
        assert (chosen.time_zone, chosen.lead_minutes, chosen.zone_source) == ("America/New_York", 15, "stored")
    nothing = effective_settings(server, StoredUserSettings("carol"))
    assert (nothing.time_zone, nothing.lead_minutes, nothing.zone_source) == ("Asia/Kolkata", 45, "default")
    # A stored zone a later tzdata no longer knows falls back to the server's instead of failing every call.
    gone = effective_settings(server, StoredUserSettings("dave", time_zone="Atlantis/Capital"))
    assert gone.time_zone == "Asia/Kolkata"


@pytest.mark.parametrize(
    "alg", ["\x1b[2Jnone\nlevel=error forged=1", "HS384", "HS256" + "x" * 5000], ids=["escapes", "hmac", "long"]
)
async def test_nothing_from_an_unverified_token_is_logged(alg: str, caplog: pytest.LogCaptureFixture) -> None:
    import base64
    import json
    import logging

    from mcp_todo.server.oauth import MAX_TOKEN_CHARS, JwtVerifier

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": alg, "kid": "\x1b]0;kid"}
    token = ".".join((b64(json.dumps(header).encode()), b64(b'{"sub": "\\u001b[31mmallory"}'), "c2ln"))
    verifier = JwtVerifier(settings(MCP_TODO_OAUTH_ISSUER="http://127.0.0.1:1"), "http://127.0.0.1:8000")
    with caplog.at_level(logging.DEBUG):
        assert len(token) > MAX_TOKEN_CHARS or await verifier.verify_token(token) is None
    assert all(not {"alg", "kid", "sub"} & set(vars(record)) for record in caplog.records)
    assert "\x1b" not in caplog.text and "mallory" not in caplog.text and "forged" not in caplog.text
