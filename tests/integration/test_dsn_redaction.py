"""A DATABASE_URL that cannot connect fails with a one-line error that never shows its password, whatever its form."""

from __future__ import annotations

import pytest

from mcp_todo.db.engine import connect
from mcp_todo.domain.errors import ConfigurationError

# Port 1 on loopback refuses at once; the unencoded `@` makes asyncpg look up the host `ss@127.0.0.1`, which fails.
UNREACHABLE = [
    "postgresql://u:S3cret@127.0.0.1:1/db",
    "postgresql://u@127.0.0.1:1/db?password=S3cret",
    "postgresql://u:p@ssS3cret@127.0.0.1:1/db",
    "postgresql://u:p%40S3cret@127.0.0.1:1/db",
    "postgresql://u:S3cret@127.0.0.1:1,127.0.0.1:2/db",
    "postgresql://u@127.0.0.1:1/db?sslmode=disable&pass%77ord=S3cret",
]


@pytest.mark.parametrize("dsn", UNREACHABLE)
async def test_connection_errors_never_show_the_password(dsn: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        await connect(dsn, timeout_s=5)
    message = str(caught.value)
    assert "S3cret" not in message and "\n" not in message
    assert message.startswith("cannot reach the database at postgresql://u"), message
