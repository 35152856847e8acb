"""`mcp-todo doctor` as a user runs it: what it reports on a healthy installation, and what it says is wrong (with
exit code 1) on broken ones, quickly, without a traceback and without the password."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from mcp_todo import __version__
from mcp_todo.db.migrate import head_revision
from tests.support.database import DatabaseFactory
from tests.support.processes import BIN, clean_env

MCP_TODO = str(BIN / "mcp-todo")


async def doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [MCP_TODO, "doctor"],
        env=clean_env(MCP_TODO_DATA_DIR=str(tmp_path / "data"), MCP_TODO_TIMEZONE="Europe/Paris") | env,
        cwd=tmp_path,  # no stray .env
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def with_password(dsn: str) -> str:
    """The DSN with a password (the test server trusts loopback, so any password connects)."""
    scheme, _, rest = dsn.partition("://")
    userinfo, at, host = rest.rpartition("@")
    return f"{scheme}://{userinfo.split(':')[0]}:secret-pw{at}{host}" if at else dsn


def report(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The report's `name  value` lines by name (a problem line under a finding is kept with it)."""
    found: dict[str, str] = {}
    name = ""
    for line in result.stdout.splitlines():
        if line.startswith(" "):
            found[name] += "\n" + line.strip()
        else:
            name, _, value = line.partition("  ")
            found[name] = value.strip()
    return found


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "secret-pw" not in result.stderr + result.stdout
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


async def test_a_healthy_local_installation(tmp_path: Path, db_factory: DatabaseFactory) -> None:
    dsn = with_password(await db_factory.create())
    result = await doctor(tmp_path, DATABASE_URL=dsn, MCP_TODO_USER="carol")
    assert result.returncode == 0, result.stderr
    assert error_lines(result) == []
    found = report(result)
    assert found["version"] == f"mcp-todo {__version__}"
    assert "unused: DATABASE_URL is set" in found["data directory"]
    assert found["database"].startswith(dsn.replace("secret-pw", "***")) and "reachable" in found["database"]
    assert found["schema"] == f"revision {head_revision()} (current)"
    assert found["broker"].startswith("none (local mode")
    assert found["workers package"].startswith("mcp-todo-server's own")
    assert found["user"].startswith("carol")
    assert found["zone"].startswith("Europe/Paris")
    assert found["mode"].startswith("local:")
    assert not any("problem:" in value for value in found.values())


async def test_an_embedded_database_not_created_yet_is_not_created(tmp_path: Path) -> None:
    result = await doctor(tmp_path)
    assert result.returncode == 0, result.stderr
    found = report(result)
    assert "not created yet" in found["database"] and "embedded" in found["database"]
    assert "embedded database" in found["mode"]
    assert not (tmp_path / "data").exists()


async def test_another_distribution_installing_workers_is_a_problem(tmp_path: Path) -> None:
    # The metadata of PyPI's `workers` 0.1 as pip records it (no package files: nothing it holds gets imported),
    # on the path of the doctor's interpreter as a second site directory would be.
    site = tmp_path / "site"
    info = site / "workers-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: workers\nVersion: 0.1\n")
    (info / "RECORD").write_text(
        "workers/__init__.py,,\nworkers/workerpool.py,,\nworkers/processpool.py,,\nworkers-0.1.dist-info/RECORD,,\n"
    )
    result = await doctor(tmp_path, PYTHONPATH=str(site))
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert line.startswith("Error: 1 problem — workers package: workers installs an import package `workers` too")
    assert report(result)["workers package"].startswith("also installed by workers\nproblem:")


async def test_a_database_without_the_schema_names_the_fix(tmp_path: Path, db_factory: DatabaseFactory) -> None:
    dsn = with_password(await db_factory.create(migrated=False))
    result = await doctor(tmp_path, DATABASE_URL=dsn)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert line == "Error: 1 problem — schema: the database has no mcp-todo schema: run `mcp-todo migrate`"
    assert report(result)["schema"].startswith("empty\nproblem:")


async def test_nothing_reachable_is_said_quickly_and_in_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    result = await doctor(
        tmp_path, DATABASE_URL="postgresql://u:secret-pw@127.0.0.1:1/todo", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"
    )
    took_s = time.monotonic() - started
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert line.startswith("Error: 2 problems — database: cannot reach the database at postgresql://u:***@127.0.0.1:1")
    assert "; broker: cannot reach the Kafka broker at 127.0.0.1:1" in line
    found = report(result)
    assert found["schema"] == f"unknown (this version's is {head_revision()})"
    assert found["mode"].startswith("Kafka:")
    # Each check stops after 3 s; a refused port answers at once. The bound is for a loaded 2-core machine, where
    # starting the interpreter alone has taken several seconds.
    assert took_s < 30, took_s


async def test_misconfiguration_is_one_line(tmp_path: Path) -> None:
    result = await doctor(tmp_path, MCP_TODO_TIMEZONE="Mars/Olympus_Mons")
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert "MCP_TODO_TIMEZONE" in line and result.stdout == ""


@pytest.mark.kafka
async def test_a_reachable_broker(tmp_path: Path, db_factory: DatabaseFactory, kafka_broker: str) -> None:
    dsn = await db_factory.create()
    result = await doctor(tmp_path, DATABASE_URL=dsn, KAFKA_BOOTSTRAP_SERVERS=kafka_broker)
    assert result.returncode == 0, result.stdout + result.stderr
    found = report(result)
    assert found["broker"] == f"{kafka_broker} (PLAINTEXT), reachable"
    assert found["mode"].startswith("Kafka: run mcp-todo-notifier and mcp-todo-recurrer")
