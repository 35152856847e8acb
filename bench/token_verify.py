"""What checking a bearer token costs a request, with and without the short cache of verified tokens.

    .venv/bin/python -m bench.token_verify      # from the repository root; needs Node.js for the OpenID Provider

- `mtd_` token: the database verifier alone (one UPDATE … RETURNING per request) against the combined verifier the
  server runs (the same, then the cache for TOKEN_CACHE_TTL_S).
- OAuth JWT of a real OpenID Provider (tests/support/oidc, keys fetched once): signature and claims checked per
  request against the cache.

Prints a Markdown table and writes bench/results/token_verify.md (BENCH_OUTPUT_DIR); BENCH_TOKEN_VERIFY_CALLS sets
the calls per row (2000).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable

from mcp.server.auth.provider import AccessToken

from bench.common import RESULTS_DIR, percentile
from mcp_todo.auth import TOKEN_CACHE_TTL_S, CombinedVerifier, DatabaseTokenVerifier, create_token
from mcp_todo.db.engine import connect, create_engine
from mcp_todo.server.oauth import JwtVerifier
from mcp_todo.settings import Settings
from tests.support.database import DatabaseFactory, PostgresServer
from tests.support.oidc import OidcClient, oidc_provider

CALLS = int(os.environ.get("BENCH_TOKEN_VERIFY_CALLS", "2000"))
PUBLIC_URL = "http://127.0.0.1:8000"


async def per_call_ms(verify: Callable[[str], Awaitable[AccessToken | None]], token: str) -> tuple[float, float]:
    """Mean and p95 milliseconds of one verification, after a warm-up call."""
    assert await verify(token) is not None
    samples = []
    for _ in range(CALLS):
        started = time.perf_counter()
        assert await verify(token) is not None
        samples.append((time.perf_counter() - started) * 1000)
    return sum(samples) / len(samples), percentile(samples, 0.95)


async def main() -> None:
    postgres = await asyncio.to_thread(PostgresServer, "mcp-todo-bench-")
    databases = DatabaseFactory(postgres.dsn, prefix="mcp_todo_bench")
    rows: list[tuple[str, float, float]] = []
    try:
        dsn = await databases.create()
        engine = create_engine(dsn)
        conn = await connect(dsn)
        try:
            _, secret = await create_token(conn, "bench", None)
        finally:
            await conn.close()
        database = DatabaseTokenVerifier(lambda: engine)
        rows.append(("mtd_, database verifier (no cache)", *await per_call_ms(database.verify_token, secret)))
        combined = CombinedVerifier(database, None)
        rows.append(("mtd_, combined verifier (cached)", *await per_call_ms(combined.verify_token, secret)))
        await engine.dispose()

        async with oidc_provider([OidcClient("bench", "bench-secret")]) as provider:
            settings = Settings(_env_file=None, MCP_TODO_OAUTH_ISSUER=provider.issuer)  # type: ignore[call-arg]
            jwt_verifier = JwtVerifier(settings, PUBLIC_URL)
            token = await provider.token("bench", f"{PUBLIC_URL}/mcp")
            rows.append(("OAuth JWT RS256, verifier (no cache)", *await per_call_ms(jwt_verifier.verify_token, token)))
            cached = CombinedVerifier(None, jwt_verifier)
            rows.append(("OAuth JWT RS256, combined verifier (cached)", *await per_call_ms(cached.verify_token, token)))
    finally:
        await databases.drop_all()
        await asyncio.to_thread(postgres.close)

    lines = [
        f"# Bearer-token verification cost ({CALLS} calls each, one process, cache TTL {TOKEN_CACHE_TTL_S:g} s)",
        "",
        "| verifier | mean ms/verify | p95 ms | verifies/s |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {mean:.4f} | {p95:.4f} | {1000 / mean:,.0f} |" for name, mean, p95 in rows),
    ]
    report = "\n".join(lines) + "\n"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "token_verify.md").write_text(report, encoding="utf-8")
    sys.stdout.write(report)


if __name__ == "__main__":
    asyncio.run(main())
