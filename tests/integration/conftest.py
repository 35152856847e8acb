"""The integration tests' shared clients: alice's tools through the MCP client, on the session database (a module
that needs other clients — another user, an injected clock — defines its own `tools`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import Tools, server_for, tools_of


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "alice")) as client:
        yield client


@pytest.fixture
async def other(db: AsyncEngine, database_dsn: str) -> AsyncIterator[Tools]:
    """A second client of its own server on the same database, as a second replica would be."""
    async with tools_of(server_for(db, database_dsn, "alice")) as client:
        yield client
