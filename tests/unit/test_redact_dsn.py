"""redact_dsn hides every spelling of a password a DATABASE_URL can carry, and keeps the rest readable."""

from __future__ import annotations

import pytest

from mcp_todo.db.engine import redact_dsn

SECRET_FORMS = [
    ("postgresql://u:S3cret@db.example:5432/todo", "postgresql://u:***@db.example:5432/todo"),
    ("postgresql://u@db.example/todo?password=S3cret", "postgresql://u@db.example/todo?password=***"),
    (
        "postgresql://u@db.example/todo?sslmode=require&password=S3cret&application_name=x",
        "postgresql://u@db.example/todo?sslmode=require&password=***&application_name=x",
    ),
    ("postgresql://u@db.example/todo?pass%77ord=S3cret", "postgresql://u@db.example/todo?pass%77ord=***"),
    ("postgresql://u@db.example/todo?sslpassword=S3cret", "postgresql://u@db.example/todo?sslpassword=***"),
    ("postgresql://u:p@S3cret@db.example/todo", "postgresql://u:***@db.example/todo"),
    ("postgresql://u:p%40S3cret@db.example/todo", "postgresql://u:***@db.example/todo"),
    ("postgresql://u:9/S3cret@db.example/todo", "postgresql://u:***@db.example/todo"),
    (
        "postgresql://u:S3cret@h1:5432,h2:5433/todo?sslmode=verify-full",
        "postgresql://u:***@h1:5432,h2:5433/todo?sslmode=verify-full",
    ),
    ("postgresql:///todo?host=/run/pg&user=u&password=S3cret", "postgresql:///todo?host=/run/pg&user=u&password=***"),
    ("postgresql://u:S3cret?x=y@db.example/todo", "postgresql://***"),  # asyncpg reads the query as `x=y@…`
    ("postgresql://u:S3cret#x@db.example/todo", "postgresql://***"),
    ("postgresql://u:S3cret@[::1/todo", "postgresql://***"),  # asyncpg cannot parse it: all of it is hidden
]


@pytest.mark.parametrize(("dsn", "shown"), SECRET_FORMS)
def test_every_form_of_password_is_hidden(dsn: str, shown: str) -> None:
    redacted = redact_dsn(dsn)
    assert redacted == shown
    assert "S3cret" not in redacted


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u@db.example:5432/todo",
        "postgresql://db.example/todo?sslmode=require",
        "postgresql://u@h1,h2:5433/todo?target_session_attrs=read-write",
        "postgresql://u:pw@db.example/todo?application_name=a@b",
    ],
)
def test_a_dsn_without_a_password_in_the_wrong_place_keeps_its_hosts(dsn: str) -> None:
    redacted = redact_dsn(dsn)
    assert "pw" not in redacted
    assert redacted.split("@")[-1].split("/")[0] in dsn  # the host list is still there to read
