"""A misspelt MCP_TODO_* variable is otherwise ignored in silence: each unknown one gets one warning at start,
naming the nearest setting."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from mcp_todo.settings import get_settings, known_variables, misspelt_variables, warn_misspelt_variables
from tests.support.processes import BIN, clean_env


def test_known_names_are_every_setting_and_the_log_level() -> None:
    assert {"MCP_TODO_TIMEZONE", "MCP_TODO_ALL_DAY_REMINDER_TIME", "MCP_TODO_LOG_LEVEL", "DATABASE_URL"} <= (
        known_variables()
    )


def test_each_unknown_variable_is_named_with_the_nearest_setting() -> None:
    environ = {
        "MCP_TODO_TIMEZOEN": "Europe/Paris",
        "MCP_TODO_REMINDER_LEAD_MINUTE": "30",
        "MCP_TODO_NOTHING_LIKE_ANY": "1",
        "MCP_TODO_TIMEZONE": "UTC",
        "MCP_TODO_LOG_LEVEL": "INFO",
        "PATH": "/usr/bin",
        "KAFKA_BOOTSTRAP_SERVER": "x",  # another prefix: other programs read KAFKA_* too
    }
    assert misspelt_variables(environ) == [
        ("MCP_TODO_NOTHING_LIKE_ANY", None),
        ("MCP_TODO_REMINDER_LEAD_MINUTE", "MCP_TODO_REMINDER_LEAD_MINUTES"),
        ("MCP_TODO_TIMEZOEN", "MCP_TODO_TIMEZONE"),
    ]


def test_one_warning_line_per_unknown_variable(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mcp_todo.settings"):
        warn_misspelt_variables({"MCP_TODO_TIMEZOEN": "x", "MCP_TODO_USER": "carol"})
    (record,) = caplog.records
    assert record.getMessage() == "unknown setting ignored"
    assert (record.__dict__["variable"], record.__dict__["did_you_mean"]) == ("MCP_TODO_TIMEZOEN", "MCP_TODO_TIMEZONE")


def test_the_warning_is_given_once_when_the_settings_are_read(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MCP_TODO_USERR", "carol")
    get_settings.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="mcp_todo.settings"):
            get_settings()
            get_settings()
    finally:
        get_settings.cache_clear()
    assert [r.__dict__.get("variable") for r in caplog.records] == ["MCP_TODO_USERR"]


def test_a_command_warns_once_on_stderr(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "mcp-todo"), "migrate"],
        env=clean_env(
            DATABASE_URL="postgresql://u@127.0.0.1:1/db", MCP_TODO_TIMEZOEN="Europe/Paris", MCP_TODO_TIMEZONE=""
        ),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    warnings = [line for line in result.stderr.splitlines() if "unknown setting" in line]
    assert len(warnings) == 1, result.stderr
    assert "variable=MCP_TODO_TIMEZOEN did_you_mean=MCP_TODO_TIMEZONE" in warnings[0]
    assert result.stdout == ""


def test_logging_is_set_up_before_the_settings_report_anything(tmp_path: Path) -> None:
    """The level is read first and alone, so what reading the other settings reports is already a logfmt line at
    that level: a refused watchdog value is logged (as a warning) beside the one-line error of a wrong zone, and at
    ERROR the misspelt name's warning is not."""
    result = subprocess.run(
        [str(BIN / "mcp-todo"), "migrate"],
        env=clean_env(MCP_TODO_LOOP_WATCHDOG_MS="soon", MCP_TODO_TIMEZONE="Nowhere/City", MCP_TODO_TIMEZOEN="x"),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = result.stderr.splitlines()
    (watchdog,) = [line for line in lines if "MCP_TODO_LOOP_WATCHDOG_MS" in line]
    assert watchdog.startswith("ts=") and " level=warning " in watchdog and " value=soon" in watchdog
    assert any(line.startswith("ts=") and "variable=MCP_TODO_TIMEZOEN" in line for line in lines), result.stderr
    assert lines[-1].startswith("Error: invalid configuration — MCP_TODO_TIMEZONE"), result.stderr
    assert result.returncode == 2

    (tmp_path / ".env").write_text("MCP_TODO_LOG_LEVEL=error\n")
    quiet = subprocess.run(
        [str(BIN / "mcp-todo"), "migrate"],
        env=clean_env(MCP_TODO_TIMEZONE="Nowhere/City", MCP_TODO_TIMEZOEN="x"),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert quiet.stderr.splitlines()[-1].startswith("Error: invalid configuration"), quiet.stderr
    assert "TIMEZOEN" not in quiet.stderr
    assert quiet.returncode == 2


def test_every_variable_the_code_names_is_known() -> None:
    """Every variable the code names is a setting, or every process that sets it would warn that it is misspelt."""
    import re

    root = Path(__file__).resolve().parents[2]
    named = {
        name
        for folder in ("mcp_todo", "workers")
        for source in (root / folder).rglob("*.py")
        for name in re.findall(r"\bMCP_TODO_[A-Z_]*[A-Z]\b", source.read_text())
    }
    assert named, "the scan found no variable names"
    assert named - known_variables() == set()
