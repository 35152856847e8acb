"""`mcp-todo export` and `mcp-todo import` as a user runs them: the file on stdout, the summary, the exit codes
(0, 1 when a record failed, 2 for a file that is not one of the formats), `--dry-run`, `--user`, and help."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.database import DatabaseFactory
from tests.support.processes import BIN, clean_env

MCP_TODO = str(BIN / "mcp-todo")


def run(args: list[str], tmp_path: Path, dsn: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCP_TODO, *args],
        env=clean_env(DATABASE_URL=dsn, MCP_TODO_USER="alice", MCP_TODO_TIMEZONE="Europe/Berlin") | env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//cli//EN
BEGIN:VTODO
UID:cli-1
SUMMARY:Water the plants
DUE;TZID=Europe/Berlin:20270310T180000
RRULE:FREQ=WEEKLY
CATEGORIES:home
END:VTODO
BEGIN:VTODO
UID:cli-2
END:VTODO
END:VCALENDAR
"""


@pytest.fixture
async def dsn(db_factory: DatabaseFactory) -> str:
    return await db_factory.create()


def test_help_explains_both(tmp_path: Path) -> None:
    for command, says in (("export", "--format"), ("import", "--dry-run")):
        result = subprocess.run(
            [MCP_TODO, command, "--help"], env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0 and says in result.stdout, result


def test_import_export_and_back(dsn: str, tmp_path: Path) -> None:
    source = tmp_path / "tasks.ics"
    source.write_text(ICS)

    dry = run(["import", str(source), "--dry-run"], tmp_path, dsn)
    assert dry.returncode == 1, dry.stderr  # the record without a title failed
    assert "dry run, nothing changed: would be 1 added, 0 updated, 0 unchanged, 0 skipped, 1 failed" in dry.stdout
    assert "failed: VTODO 2 (UID cli-2): it has no title" in dry.stdout
    empty = run(["export", "--format", "json"], tmp_path, dsn)
    assert empty.returncode == 0 and json.loads(empty.stdout)["tasks"] == []

    first = run(["import", str(source)], tmp_path, dsn)
    assert first.returncode == 1 and "1 added" in first.stdout, first
    again = run(["import", str(source)], tmp_path, dsn)
    assert "0 added, 0 updated, 1 unchanged" in again.stdout

    exported = run(["export", "--format", "json"], tmp_path, dsn)
    assert exported.returncode == 0, exported.stderr
    (task,) = json.loads(exported.stdout)["tasks"]
    assert (task["uid"], task["title"], task["recurrence_rule"]) == ("cli-1", "Water the plants", "FREQ=WEEKLY")
    assert (task["due_date"], task["tags"]) == ("2027-03-10T18:00:00+01:00", ["home"])
    ics = run(["export"], tmp_path, dsn)
    assert ics.stdout.startswith("BEGIN:VCALENDAR") and "UID:cli-1" in ics.stdout

    # Into another user's account, from the JSON just exported, through standard input.
    as_json = tmp_path / "tasks.json"
    as_json.write_text(exported.stdout)
    bob = run(["import", str(as_json), "--user", "bob"], tmp_path, dsn)
    assert bob.returncode == 0 and "(json) for bob:\n1 added" in bob.stdout, bob
    assert "Water the plants" in run(["export", "--user", "bob"], tmp_path, dsn).stdout


@pytest.mark.parametrize(
    ("content", "says"), [("", "the file is empty"), ("not a calendar\n", "cannot tell the format")]
)
def test_a_bad_file_is_one_error_line_and_exit_2(content: str, says: str, dsn: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    result = run(["import", str(bad)], tmp_path, dsn)
    assert result.returncode == 2, result
    assert result.stdout == "" and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and says in errors[0] and "nothing was imported" in errors[0], result.stderr
