"""The host's zone as real processes see it: every TZ form starts (here `migrate` gets as far as the database), and
MCP_TODO_TIMEZONE that is not an IANA zone is one line and exit code 2 at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_cli import one_error_line, run

UNREACHABLE = "postgresql://u@127.0.0.1:1/db"


@pytest.mark.parametrize("tz", [":/etc/localtime", "/usr/share/zoneinfo/Europe/London", "Mars/Base"])
def test_every_tz_form_starts(tz: str, tmp_path: Path) -> None:
    line = one_error_line(run(["migrate"], tmp_path, TZ=tz, DATABASE_URL=UNREACHABLE))
    assert "cannot reach the database" in line and "TIMEZONE" not in line


@pytest.mark.parametrize("zone", ["localtime", "posix/Europe/London"])
def test_a_zone_that_is_not_iana_is_refused_at_start_up(zone: str, tmp_path: Path) -> None:
    result = run(["migrate"], tmp_path, MCP_TODO_TIMEZONE=zone, DATABASE_URL=UNREACHABLE)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "MCP_TODO_TIMEZONE" in line and "is not an IANA time zone" in line
