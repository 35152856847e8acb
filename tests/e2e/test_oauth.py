"""OAuth over real HTTP: `mcp-todo serve --transport streamable-http` in front of a real OpenID Provider
(oidc-provider on loopback), called with the official MCP client; per-user zones over one server.

Refused tokens are crafted the way an attacker would (a tampered provider token, a key the provider does not have,
`alg: none`, HS256 keyed with the provider's public key) or signed by the provider itself with claims it would not
issue (expired, another issuer); the verifier under test is always the server's own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_todo.server.oauth import KEY_REFETCH_INTERVAL_S
from tests.e2e.test_http import ServerProcess, cli, create_token, server_env
from tests.support.database import DatabaseFactory
from tests.support.oidc import SCOPE, OidcClient, OidcProvider, oidc_provider
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

ALICE = OidcClient("alice", "alice-secret", zoneinfo="Europe/Paris")
BOB = OidcClient("bob", "bob-secret")
POST_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def add_task_request(title: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "add_task", "arguments": {"title": title}},
    }


@dataclass
class Stack:
    provider: OidcProvider
    server: ServerProcess
    dsn: str
    env: dict[str, str]
    carol_mtd: str

    @property
    def resource(self) -> str:
        return f"{self.server.base}/mcp"

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.provider.issuer, "aud": self.resource, "sub": "mallory", "scope": SCOPE}
        return claims | {"iat": now, "exp": now + 300} | overrides

    async def titles(self) -> list[str]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return [row["title"] for row in await conn.fetch("SELECT title FROM tasks ORDER BY id")]
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def serving(db_factory: DatabaseFactory, tmp_path: Path) -> AsyncIterator[Stack]:
    async with oidc_provider([ALICE, BOB]) as provider:
        dsn = await db_factory.create()
        env = server_env(dsn)  # MCP_TODO_TIMEZONE=Asia/Kolkata: the server's default zone
        carol = create_token(env, "carol")
        assert cli(env, "user", "set", "bob", "--timezone", "America/New_York", "--reminder-lead", "15").returncode == 0
        # The token's zoneinfo claim wins over a stored zone.
        assert cli(env, "user", "set", "alice", "--timezone", "Asia/Tokyo").returncode == 0
        server = ServerProcess(
            "streamable-http",
            dsn,
            tmp_path,
            insecure_local=False,
            MCP_TODO_OAUTH_ISSUER=provider.issuer,
            MCP_TODO_OAUTH_SCOPES=SCOPE,
        )
        try:
            await server.wait_healthy()
            yield Stack(provider, server, dsn, env, carol)
        finally:
            assert await asyncio.to_thread(server.stop) == 0
            log = server.log.read_text()
            assert "Traceback" not in log, log
            assert carol not in log


@pytest.fixture(scope="module")
async def stack(db_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with serving(db_factory, tmp_path_factory.mktemp("oauth")) as opened:
        yield opened


@contextlib.asynccontextmanager
async def mcp_client(base: str, token: str) -> AsyncIterator[Client]:
    import httpx2

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        yield client


async def post_add_task(stack: Stack, token: str, title: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            stack.resource,
            json=add_task_request(title),
            headers=POST_HEADERS | {"Authorization": f"Bearer {token}"},
        )


async def test_metadata_names_the_issuer_and_401s_point_to_it(stack: Stack) -> None:
    base = stack.server.base
    async with httpx.AsyncClient() as http:
        for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
            metadata = (await http.get(f"{base}{path}")).json()
            assert metadata["resource"] == stack.resource
            assert metadata["authorization_servers"] == [stack.provider.issuer]
            assert metadata["scopes_supported"] == [SCOPE]
            assert "none" not in metadata["resource_signing_alg_values_supported"]
        refused = await http.post(stack.resource, json=add_task_request("x"), headers=POST_HEADERS)
    assert refused.status_code == 401
    challenge = refused.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"' in challenge


async def test_a_provider_token_acts_for_its_subject_beside_mtd_tokens(stack: Stack) -> None:
    alice = await stack.provider.token("alice", stack.resource)
    async with mcp_client(stack.server.base, alice) as client:
        added = await client.call_tool("add_task", {"title": "alice via oauth"})
        assert not added.is_error, added
    async with mcp_client(stack.server.base, stack.carol_mtd) as client:
        listed = await client.call_tool("list_tasks", {})
        assert listed.structured_content is not None
        assert "alice via oauth" not in json.dumps(listed.structured_content)  # carol sees only her own
        assert not (await client.call_tool("add_task", {"title": "carol via mtd"})).is_error
    assert {"alice via oauth", "carol via mtd"} <= set(await stack.titles())
    log = stack.server.log.read_text()
    assert "user=alice" in log and "user=carol" in log
    assert alice not in log


async def test_the_same_raw_request_with_a_valid_token_creates_the_task(stack: Stack) -> None:
    # The control for the refusals below: their request is one that does create a task when let in.
    answer = await post_add_task(stack, await stack.provider.token("bob", stack.resource), "control")
    assert answer.status_code == 200, answer.text
    assert "control" in await stack.titles()


async def _expired(stack: Stack) -> str:
    now = int(time.time())
    return await stack.provider.sign(stack.claims(iat=now - 600, exp=now - 120))


async def _not_yet_valid(stack: Stack) -> str:
    return await stack.provider.sign(stack.claims(nbf=int(time.time()) + 600))


async def _wrong_audience(stack: Stack) -> str:
    return await stack.provider.token("alice", "http://other.example/mcp")


async def _wrong_issuer(stack: Stack) -> str:
    return await stack.provider.sign(stack.claims(iss="http://127.0.0.1:1"))


async def _bad_signature(stack: Stack) -> str:
    header, payload, signature = (await stack.provider.token("alice", stack.resource)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return ".".join((header, b64(json.dumps(claims | {"sub": "mallory"}).encode()), signature))


async def _unknown_key(stack: Stack) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(stack.claims(), key, algorithm="RS256", headers={"kid": "not-published"})


async def _alg_none(stack: Stack) -> str:
    return ".".join((b64(b'{"alg":"none","typ":"JWT"}'), b64(json.dumps(stack.claims()).encode()), ""))


async def _hs256_keyed_with_the_public_key(stack: Stack) -> str:
    published = (await stack.provider.jwks())["keys"][0]
    public_pem = (
        jwt.PyJWK(published)
        .key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .strip()
    )
    signing_input = ".".join(
        (b64(json.dumps({"alg": "HS256", "kid": published["kid"]}).encode()), b64(json.dumps(stack.claims()).encode()))
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


async def _no_user_claim(stack: Stack) -> str:
    claims = stack.claims()
    del claims["sub"]
    return await stack.provider.sign(claims)


@pytest.mark.parametrize(
    "craft",
    [
        _expired,
        _not_yet_valid,
        _wrong_audience,
        _wrong_issuer,
        _bad_signature,
        _unknown_key,
        _alg_none,
        _hs256_keyed_with_the_public_key,
        _no_user_claim,
    ],
)
async def test_a_bad_token_is_401_and_does_nothing(stack: Stack, craft: Any) -> None:
    title = f"must not exist {craft.__name__}"
    answer = await post_add_task(stack, await craft(stack), title)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_token"
    assert "resource_metadata=" in answer.headers["WWW-Authenticate"]
    assert title not in await stack.titles()


UNCLEAN_SUBJECTS = [" carol", "carol ", "car ol", "carol\t", "car\x1bol", "carol\u2028", "\u202ecarol"]


@pytest.mark.parametrize("subject", UNCLEAN_SUBJECTS)
async def test_a_subject_with_whitespace_or_controls_is_refused_not_trimmed(stack: Stack, subject: str) -> None:
    # Trimmed or cleaned, the claim would name carol, the user of an `mtd_` token: her tasks would be its.
    title = f"must not exist {subject!r}"
    answer = await post_add_task(stack, await stack.provider.sign(stack.claims(sub=subject)), title)
    assert answer.status_code == 401, answer.text
    says = "the token's sub claim has whitespace or control characters"
    assert answer.json()["error"] == "invalid_token" and answer.json()["error_description"].startswith(says)
    assert says in answer.headers["WWW-Authenticate"] and "resource_metadata=" in answer.headers["WWW-Authenticate"]
    assert title not in await stack.titles()


async def test_a_subject_is_the_user_exactly_as_claimed(stack: Stack) -> None:
    token = await stack.provider.sign(stack.claims(sub="Carol"))
    assert (await post_add_task(stack, token, "Carol's, not carol's")).status_code == 200
    async with mcp_client(stack.server.base, stack.carol_mtd) as client:
        listed = await client.call_tool("list_tasks", {})
    assert "Carol's, not carol's" not in json.dumps(listed.structured_content)


# 45 s: well past the leeway, whatever a loaded machine adds between signing and the request.
@pytest.mark.parametrize(("expired_s", "status"), [(10, 200), (45, 401)])
async def test_a_token_expired_within_the_30_s_leeway_is_accepted(stack: Stack, expired_s: int, status: int) -> None:
    now = int(time.time())
    token = await stack.provider.sign(stack.claims(sub=f"late-{expired_s}", iat=now - 600, exp=now - expired_s))
    answer = await post_add_task(stack, token, f"expired {expired_s} s ago")
    assert answer.status_code == status, answer.text


async def test_a_token_without_the_required_scope_is_403(stack: Stack) -> None:
    token = await stack.provider.token("alice", stack.resource, scope=None)
    assert "scope" not in jwt.decode(token, options={"verify_signature": False})
    answer = await post_add_task(stack, token, "must not exist: no scope")
    assert answer.status_code == 403, answer.text
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]
    assert "must not exist: no scope" not in await stack.titles()


async def test_each_user_sees_their_own_local_times(stack: Stack) -> None:
    """alice: her token's zoneinfo claim (Europe/Paris, over her stored Asia/Tokyo); bob: his stored zone and lead
    (America/New_York, 15 min); carol (mtd_, nothing stored): the server's (Asia/Kolkata, 60 min)."""
    expected = {
        "alice": ("2027-01-15T09:00:00+01:00", "2027-01-15T08:00:00+01:00"),
        "bob": ("2027-01-15T09:00:00-05:00", "2027-01-15T08:45:00-05:00"),
        "carol": ("2027-01-15T09:00:00+05:30", "2027-01-15T08:00:00+05:30"),
    }
    tokens = {
        "alice": await stack.provider.token("alice", stack.resource),
        "bob": await stack.provider.token("bob", stack.resource),
        "carol": stack.carol_mtd,
    }
    for user, (due, remind_at) in expected.items():
        async with mcp_client(stack.server.base, tokens[user]) as client:
            added = await client.call_tool("add_task", {"title": f"{user}'s 9am", "due_date": "2027-01-15T09:00"})
            assert added.structured_content is not None, added
            task_id = added.structured_content["id"]
            read = await client.call_tool("list_tasks", {"status": "pending", "sort_by": "due_date"})
            assert read.structured_content is not None
            task = next(t for t in read.structured_content["tasks"] if t["id"] == task_id)
            assert (task["due_date"], task["remind_at"]) == (due, remind_at), user


async def test_key_rotation_at_the_provider_is_picked_up_without_a_restart(
    db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    async with serving(db_factory, tmp_path) as stack:
        before = await stack.provider.token("alice", stack.resource)
        async with mcp_client(stack.server.base, before) as client:
            assert not (await client.call_tool("add_task", {"title": "before rotation"})).is_error
        new_kid = await stack.provider.rotate()
        after = await stack.provider.token("bob", stack.resource)
        assert jwt.get_unverified_header(after)["kid"] == new_kid

        # An unknown kid makes the server fetch the keys again, at most once per KEY_REFETCH_INTERVAL_S (so junk
        # kids cannot flood the issuer): the new key verifies within that time of the last fetch.
        async def accepted() -> bool:
            return (await post_add_task(stack, after, "after rotation (raw)")).status_code == 200

        await eventually(accepted, KEY_REFETCH_INTERVAL_S + 10, "a token of the new key is accepted", interval_s=0.5)
        async with mcp_client(stack.server.base, after) as client:
            assert not (await client.call_tool("add_task", {"title": "after rotation"})).is_error
        assert {"before rotation", "after rotation"} <= set(await stack.titles())


async def test_without_an_issuer_the_metadata_names_no_authorization_server(
    db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await db_factory.create()
    env = server_env(dsn)
    secret = create_token(env, "dave")
    server = ServerProcess(
        "streamable-http", dsn, tmp_path, insecure_local=False, MCP_TODO_PUBLIC_URL="https://todo.example.com"
    )
    await server.wait_healthy()
    try:
        async with httpx.AsyncClient() as http:
            metadata = (await http.get(f"{server.base}/.well-known/oauth-protected-resource")).json()
            assert metadata["resource"] == "https://todo.example.com/mcp"
            assert "authorization_servers" not in metadata
            refused = await http.post(f"{server.base}/mcp", json=add_task_request("x"), headers=POST_HEADERS)
            assert refused.status_code == 401
            assert (
                'resource_metadata="https://todo.example.com/.well-known/oauth-protected-resource/mcp"'
                in refused.headers["WWW-Authenticate"]
            )
            # A JWT-looking token is refused without an issuer to check it against.
            assert (
                await http.post(
                    f"{server.base}/mcp",
                    json=add_task_request("x"),
                    headers=POST_HEADERS | {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"},
                )
            ).status_code == 401
        async with mcp_client(server.base, secret) as client:
            assert not (await client.call_tool("add_task", {"title": "dave via mtd"})).is_error
    finally:
        assert await asyncio.to_thread(server.stop) == 0
