"""The one log format (logfmt on stderr) and the one reader of MCP_TODO_LOG_LEVEL."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_todo.runtime.logs import LOG_LEVEL_ENV, LOG_LEVELS, LogfmtFormatter, configure_logging, log_level

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_record_is_one_line_of_keys_with_its_extra_fields_and_traceback() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("mcp_todo.x", logging.WARNING, __file__, 1, "relay batch", None, exc_info)
    record.rows = 3
    record.error = "two words"
    line = LogfmtFormatter().format(record)
    assert "\n" not in line
    assert line.startswith("ts=")
    assert ' level=warning logger=mcp_todo.x msg="relay batch" rows=3 error="two words" exc="Traceback' in line


def test_the_level_comes_from_the_argument_then_the_environment_then_info(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    assert log_level() == "INFO"
    monkeypatch.setenv(LOG_LEVEL_ENV, "debug")
    assert log_level() == "DEBUG"
    assert log_level("error") == "ERROR"
    monkeypatch.setenv(LOG_LEVEL_ENV, "chatty")
    assert log_level() == "INFO"


@pytest.mark.usefixtures("restore_root_logger")
def test_configure_logging_routes_the_root_logger_through_one_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOG_LEVEL_ENV, "WARNING")
    configure_logging()
    root = logging.getLogger()
    assert root.level == logging.WARNING
    (handler,) = root.handlers
    assert isinstance(handler.formatter, LogfmtFormatter)


def test_the_readme_documents_the_variable_its_default_and_its_values() -> None:
    (row,) = [line for line in README.read_text().splitlines() if f"`{LOG_LEVEL_ENV}`" in line]
    assert "INFO" in row
    assert all(level in row for level in LOG_LEVELS)
