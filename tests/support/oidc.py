"""A real OpenID Provider for the OAuth tests: npm's `oidc-provider` (tests/support/oidc/provider.mjs) on a free
loopback port, issuing JWT access tokens by the client-credentials grant for the resource (audience) a client names.

`.ci/run` installs its node modules (`npm ci`); a checkout without them installs them on first use.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc"
START_TIMEOUT_S = 30.0
SCOPE = "todo"


@dataclass(frozen=True)
class OidcClient:
    client_id: str
    client_secret: str
    zoneinfo: str | None = None


def _installed() -> None:
    if (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the OAuth tests need Node.js and npm (for tests/support/oidc)")
    subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=PROVIDER_DIR, check=True, timeout=300)


@dataclass
class OidcProvider:
    issuer: str
    process: asyncio.subprocess.Process
    clients: dict[str, OidcClient]

    async def token(self, client_id: str, resource: str, scope: str | None = SCOPE) -> str:
        """An access token from the provider's token endpoint (client credentials) for `resource`."""
        client = self.clients[client_id]
        form = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "resource": resource,
        }
        if scope is not None:
            form["scope"] = scope
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{self.issuer}/token", data=form)
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    async def rotate(self) -> str:
        """A new signing key, published first (the old one stays published); its kid."""
        kid: str = (await self._control("rotate", {}))["kid"]
        return kid

    async def sign(self, claims: dict[str, Any]) -> str:
        """A token with `claims`, signed by the provider's current key (claims it would not issue itself)."""
        token: str = (await self._control("sign", {"claims": claims}))["token"]
        return token

    async def jwks(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            keys: dict[str, Any] = (await http.get(f"{self.issuer}/jwks")).json()
        return keys

    async def _control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{self.issuer}/__test/{action}", json=body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


@asynccontextmanager
async def oidc_provider(clients: Sequence[OidcClient]) -> AsyncIterator[OidcProvider]:
    """The provider, serving until the block ends."""
    await asyncio.to_thread(_installed)
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the OAuth tests need Node.js (for tests/support/oidc)")
    config = {
        "port": 0,
        "clients": [
            {"client_id": c.client_id, "client_secret": c.client_secret, "zoneinfo": c.zoneinfo} for c in clients
        ],
        "default_resource": "urn:mcp-todo:tests",
        "scope": f"{SCOPE} other",
    }
    process = await asyncio.create_subprocess_exec(
        node,
        str(PROVIDER_DIR / "provider.mjs"),
        json.dumps(config),
        cwd=PROVIDER_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,  # its warnings about the Node version and the in-memory adapter
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        if not line.startswith(b"listening "):
            raise RuntimeError(f"the OIDC provider did not start: {line!r}")
        yield OidcProvider(line.split()[1].decode(), process, {c.client_id: c for c in clients})
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
