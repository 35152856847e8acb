"""`mcp-todo user set|show` as a user types them: what is stored is shown back; a bad zone or lead, or nothing to
set, is one error line and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_cli import one_error_line, run
from tests.support.database import DatabaseFactory


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--timezone", "Europe/Paris", "--reminder-lead", "-5"], "--reminder-lead"),
        (["--reminder-lead", "a lot"], "--reminder-lead"),
        ([], "nothing to set"),
    ],
)
async def test_user_set_refuses_bad_input_and_changes_nothing(
    args: list[str], says: str, db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await db_factory.create()
    stored = run(
        ["user", "set", "bob", "--timezone", "Asia/Tokyo", "--reminder-lead", "10"], tmp_path, DATABASE_URL=dsn
    )
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.splitlines() == ["user\tbob", "time_zone\tAsia/Tokyo", "reminder_lead_minutes\t10"]

    assert says in one_error_line(run(["user", "set", "bob", *args], tmp_path, DATABASE_URL=dsn))
    shown = run(["user", "show", "bob"], tmp_path, DATABASE_URL=dsn)
    assert shown.returncode == 0 and shown.stdout == stored.stdout


async def test_user_show_names_the_server_defaults(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    dsn = await db_factory.create()
    env = {"DATABASE_URL": dsn, "MCP_TODO_TIMEZONE": "America/Denver", "MCP_TODO_REMINDER_LEAD_MINUTES": "30"}
    shown = run(["user", "show", "carol"], tmp_path, **env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "user\tcarol",
        "time_zone\tAmerica/Denver (server default)",
        "reminder_lead_minutes\t30 (server default)",
    ]
    assert run(["user", "set", "carol", "--reminder-lead", "5"], tmp_path, **env).returncode == 0
    assert "reminder_lead_minutes\t5" in run(["user", "show", "carol"], tmp_path, **env).stdout
