"""The JWT verifier in-process against the real OpenID Provider: keys are fetched once and again only for an
unknown kid, at most once per interval, however many made-up kids arrive; an issuer that cannot be reached is
"unavailable" (503), never a refusal."""

from __future__ import annotations

import logging
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mcp_todo.auth import IdentityProviderUnavailable
from mcp_todo.server.oauth import IssuerKeys, JwtVerifier
from mcp_todo.settings import Settings
from tests.support.oidc import SCOPE, OidcClient, oidc_provider

PUBLIC_URL = "http://127.0.0.1:8000"
FETCHED = "fetched the OAuth issuer's keys"


def settings(issuer: str) -> Settings:
    return Settings(_env_file=None, MCP_TODO_OAUTH_ISSUER=issuer)  # type: ignore[call-arg]


async def test_made_up_kids_cost_at_most_one_fetch_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcp_todo.server.oauth")
    async with oidc_provider([OidcClient("alice", "s")]) as provider:
        verifier = JwtVerifier(settings(provider.issuer), PUBLIC_URL)
        good = await provider.token("alice", f"{PUBLIC_URL}/mcp")
        accepted = await verifier.verify_token(good)
        assert accepted is not None and accepted.subject == "alice" and accepted.scopes == [SCOPE]
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        claims = {"iss": provider.issuer, "aud": f"{PUBLIC_URL}/mcp", "sub": "m", "exp": int(time.time()) + 60}
        for n in range(20):
            junk = jwt.encode(claims, key, algorithm="RS256", headers={"kid": f"junk-{n}"})
            assert await verifier.verify_token(junk) is None
        assert await verifier.verify_token(good) is not None
        assert caplog.text.count(FETCHED) == 1

        # With no interval, an unknown kid is looked up at once: a rotation is picked up on its first token.
        eager = JwtVerifier(settings(provider.issuer), PUBLIC_URL, IssuerKeys(provider.issuer, refetch_interval_s=0))
        assert await eager.verify_token(good) is not None
        await provider.rotate()
        rotated = await provider.token("alice", f"{PUBLIC_URL}/mcp")
        assert await verifier.verify_token(rotated) is None  # within the interval of its last fetch
        assert await eager.verify_token(rotated) is not None


async def test_an_issuer_that_cannot_be_reached_is_unavailable_not_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    verifier = JwtVerifier(settings("http://127.0.0.1:1"), PUBLIC_URL)
    token = jwt.encode({"sub": "x"}, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256")
    for _ in range(3):
        with pytest.raises(IdentityProviderUnavailable):
            await verifier.verify_token(token)
    assert caplog.text.count("cannot fetch the OAuth issuer's keys") == 1  # the retries wait for the interval
