"""The root group of `mcp-todo` is the one place a command's failure becomes one `Error: …` line: whatever a
command raises, a command of a nested group too. Run in-process on a group of the same class with commands that
fail in each way; tests/integration/test_cli_errors.py runs the real commands misconfigured."""

from __future__ import annotations

import asyncpg
import click
import pytest
from click.testing import CliRunner
from sqlalchemy import exc as sa_exc

from mcp_todo.cli import OneLineErrors, main
from mcp_todo.domain.errors import ConfigurationError, NotFoundError

FAILURES: dict[str, BaseException] = {
    "configuration": ConfigurationError("DATABASE_URL must start with postgresql://\nsecond line"),
    "todo": NotFoundError("task 7 does not exist for this user"),
    "unexpected": RuntimeError("boom\n  File 'x.py', line 1"),
    "driver": asyncpg.InvalidAuthorizationSpecificationError('role "carol" does not exist'),
    "wrapped": sa_exc.DBAPIError("SELECT 1", None, asyncpg.InvalidCatalogNameError('database "x" does not exist')),
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "statement": asyncpg.NumericValueOutOfRangeError("bigint out of range"),
}


def group() -> click.Group:
    root = OneLineErrors("root")
    nested = click.Group("nested")
    root.add_command(nested)
    for name, error in FAILURES.items():

        def fail(error: BaseException = error) -> None:
            raise error

        nested.add_command(click.Command(name, callback=fail))
    nested.add_command(click.Command("usage", callback=lambda: (_ for _ in ()).throw(click.UsageError("no such x"))))
    return root


@pytest.mark.parametrize(
    ("name", "code", "says"),
    [
        ("configuration", 2, "Error: DATABASE_URL must start with postgresql://"),
        ("todo", 2, "Error: task 7 does not exist for this user"),
        ("unexpected", 1, "Error: unexpected RuntimeError: boom (MCP_TODO_LOG_LEVEL=DEBUG logs the traceback)"),
        ("driver", 1, 'Error: database has no role "carol"'),
        ("wrapped", 1, "Error: database does not exist"),
        ("refused", 1, "Error: cannot reach the database at "),
        ("statement", 1, "Error: the database refused a statement: bigint out of range (SQLSTATE 22003)"),
    ],
)
def test_a_failing_command_is_one_error_line(name: str, code: int, says: str) -> None:
    result = CliRunner().invoke(group(), ["nested", name], env={"DATABASE_URL": "postgresql://u:pw@db/todo"})
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(says), lines
    assert "Traceback" not in result.stderr and "pw@" not in result.stderr


def test_clicks_own_usage_errors_pass_through() -> None:
    result = CliRunner().invoke(group(), ["nested", "usage"])
    assert result.exit_code == 2
    assert "Error: no such x" in result.stderr and "Usage:" in result.stderr


def test_the_real_command_line_is_that_group() -> None:
    assert isinstance(main, OneLineErrors)


def test_the_greeting_names_the_uvx_command_for_an_environment_in_uvs_cache() -> None:
    """An environment uvx made lives in uv's cache and is replaced on the next rebuild: a host config that named its
    path would break after an upgrade, so the greeting gives the uvx command instead; elsewhere the executable."""
    from pathlib import Path

    from mcp_todo.cli import host_command

    cached = Path("/root/.cache/uv/archive-v0/gD4q1SdXEpGgyzCP/bin/mcp-todo")
    assert host_command(cached) == ("uvx", ["--from", "/path/to/mcp-todo", "mcp-todo"])
    installed = Path("/home/ann/.local/bin/mcp-todo")
    assert host_command(installed) == (str(installed), [])
