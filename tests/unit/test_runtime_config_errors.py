"""Misconfiguration in one line: the validation errors condensed (field and problem, never the value), then
`Error: …` and exit code 2."""

from __future__ import annotations

import socket

import asyncpg
import pydantic
import pytest

from mcp_todo.runtime.config_errors import CONFIG_EXIT_CODE, describe_connect_error, exit_with_error
from mcp_todo.settings import Settings, describe_validation_error


def test_every_problem_is_named_on_one_line_without_the_value() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings.model_validate({"MCP_TODO_TIMEZONE": "Nowhere/Secret-City", "MCP_TODO_REMINDER_LEAD_MINUTES": -1})
    message = describe_validation_error(caught.value)
    assert message.startswith("invalid configuration — ")
    assert "\n" not in message
    assert "MCP_TODO_TIMEZONE" in message and "MCP_TODO_REMINDER_LEAD_MINUTES" in message
    assert "Value error," not in message
    assert message.count("; ") == 1


def test_exit_with_error_prints_the_first_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        exit_with_error("cannot reach the database\nmore detail")
    assert exited.value.code == CONFIG_EXIT_CODE == 2
    assert capsys.readouterr().err == "Error: cannot reach the database\n"


WHERE = "postgresql://u:***@db.example.com/todo"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (asyncpg.InvalidAuthorizationSpecificationError('role "carol" does not exist'), 'has no role "carol"'),
        (
            asyncpg.InvalidAuthorizationSpecificationError('no pg_hba.conf entry for host "10.0.0.1", user "u"'),
            "refused this user or host (no pg_hba.conf entry",
        ),
        (asyncpg.InvalidPasswordError('password authentication failed for user "u"'), "refused the password"),
        (asyncpg.InvalidCatalogNameError('database "todo" does not exist'), "database does not exist"),
        (asyncpg.UndefinedObjectError('unrecognized configuration parameter "sslmod"'), "unknown option `sslmod`"),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), "no free connection slots"),
        (asyncpg.CannotConnectNowError("the database system is starting up"), "starting up or shutting down"),
        (asyncpg.FeatureNotSupportedError("something new"), "something new (SQLSTATE 0A000)"),
        (ConnectionError('PostgreSQL server at "db:5432" rejected SSL upgrade'), "the server refused SSL"),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "unknown host name"),
        (TimeoutError(), "no answer in time"),
        (OSError(113, "No route to host"), "No route to host (OSError)"),
    ],
    ids=lambda value: value.__class__.__name__ if isinstance(value, BaseException) else None,
)
def test_a_connection_failure_is_said_in_words(error: BaseException, says: str) -> None:
    message = describe_connect_error(error, WHERE)
    assert says in message, message
    assert "\n" not in message
    # A bare SQLSTATE or exception name is what this replaces.
    assert message.strip() not in {"28000", "42704", "ConnectionError"}
