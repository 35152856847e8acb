"""Which failures to reach the database a starting server waits out, and which are configuration errors at once
(the waiting itself, against real processes: tests/integration/test_cli.py and tests/e2e/test_http.py)."""

from __future__ import annotations

import asyncpg
import pytest

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.server.app import is_transient


def failure(cause: BaseException) -> ConfigurationError:
    err = ConfigurationError("cannot reach the database")
    err.__cause__ = cause
    return err


@pytest.mark.parametrize(
    "cause",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        OSError(-2, "Name or service not known"),  # a DNS name not resolvable yet
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("too many clients"),
    ],
)
def test_what_is_transient_is_waited_for(cause: BaseException) -> None:
    assert is_transient(failure(cause))


@pytest.mark.parametrize(
    "cause",
    [
        asyncpg.InvalidPasswordError("password authentication failed"),
        asyncpg.InvalidCatalogNameError("database does not exist"),
        ValueError("invalid DSN"),
        None,
    ],
)
def test_configuration_errors_fail_at_once(cause: BaseException | None) -> None:
    err = ConfigurationError("DATABASE_URL is wrong")
    err.__cause__ = cause
    assert not is_transient(err)
