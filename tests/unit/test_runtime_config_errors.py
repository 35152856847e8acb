"""Misconfiguration in one line: the validation errors condensed (field and problem, never the value), then
`Error: …` and exit code 2."""

from __future__ import annotations

import pydantic
import pytest

from mcp_todo.runtime.config_errors import CONFIG_EXIT_CODE, describe_validation_error, exit_with_error
from mcp_todo.settings import Settings


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
