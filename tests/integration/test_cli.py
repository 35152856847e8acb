"""The `mcp-todo` command as a user runs it: help for every command, `migrate`, and one clear line with a non-zero
exit code for every misconfiguration, never a traceback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from alembic import command

from mcp_todo.db.engine import create_engine
from mcp_todo.db.migrate import _config, head_revision
from tests.support.database import DatabaseFactory
from tests.support.processes import BIN, clean_env

MCP_TODO = str(BIN / "mcp-todo")


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCP_TODO, *args],
        env=clean_env(MCP_TODO_DATA_DIR=str(tmp_path / "data")) | env,
        cwd=tmp_path,  # no stray .env
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "serves MCP over stdio"),
        (["serve"], "--insecure-local"),
        (["migrate"], "migrations"),
        (["relay"], "outbox"),
        (["topics"], "create"),
        (["topics", "create"], "partitions and retention"),
    ],
)
def test_every_command_explains_itself(args: list[str], says: str, tmp_path: Path) -> None:
    result = run([*args, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: mcp-todo")
    assert says in result.stdout


def test_version(tmp_path: Path) -> None:
    result = run(["--version"], tmp_path)
    assert result.returncode == 0 and "mcp-todo" in result.stdout


async def test_migrate_a_fresh_database_then_again(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    dsn = await db_factory.create(migrated=False)
    first = run(["migrate"], tmp_path, DATABASE_URL=dsn)
    assert first.returncode == 0, first.stderr
    assert f"database schema at revision {head_revision()} (was empty)" in first.stderr
    again = run(["migrate"], tmp_path, DATABASE_URL=dsn.replace("postgresql://", "postgres://", 1))
    assert again.returncode == 0, again.stderr
    assert f"database schema at revision {head_revision()}\n" in again.stderr
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == head_revision()
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["migrate"], {"DATABASE_URL": "mysql://root@localhost/db"}, "DATABASE_URL must start with postgresql://"),
        ([], {"DATABASE_URL": "mysql://root@localhost/db"}, "DATABASE_URL must start with postgresql://"),
        (["migrate"], {"DATABASE_URL": "postgresql://u:secret-pw@127.0.0.1:1/db"}, "cannot reach the database"),
        (
            ["serve"],
            {"DATABASE_URL": "postgresql://u:secret-pw@127.0.0.1:1/db", "MCP_TODO_STARTUP_TIMEOUT_S": "0"},
            "cannot reach the database",
        ),
        (["serve"], {"DATABASE_URL": "postgresql://u:pw@[::1/x"}, "DATABASE_URL"),
        ([], {"MCP_TODO_TIMEZONE": "Mars/Olympus_Mons"}, "MCP_TODO_TIMEZONE"),
        (["migrate"], {"MCP_TODO_REMINDER_LEAD_MINUTES": "-5"}, "MCP_TODO_REMINDER_LEAD_MINUTES"),
        (["serve"], {"KAFKA_SECURITY_PROTOCOL": "SMOKE_SIGNALS"}, "KAFKA_SECURITY_PROTOCOL"),
    ],
)
def test_misconfiguration_is_one_line(args: list[str], env: dict[str, str], says: str, tmp_path: Path) -> None:
    line = one_error_line(run(args, tmp_path, **env))
    assert says in line
    assert "secret-pw" not in line


def test_serve_waits_for_an_unreachable_database_up_to_the_start_up_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(
        ["serve"], tmp_path, DATABASE_URL="postgresql://u:secret-pw@127.0.0.1:1/db", MCP_TODO_STARTUP_TIMEOUT_S="1.5"
    )
    took_s = time.monotonic() - started
    assert "cannot reach the database" in one_error_line(result)
    assert result.returncode == 2 and 1.5 <= took_s < 20, took_s
    retries = [line for line in result.stderr.splitlines() if "database not reachable yet" in line]
    assert retries and all("secret-pw" not in line for line in retries), result.stderr


async def test_a_missing_database_fails_at_once_whatever_the_timeout(
    db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    missing = (await db_factory.create(migrated=False)).split("?", 1)[0].rsplit("/", 1)[0] + "/mcp_todo_no_such_db"
    started = time.monotonic()
    result = await asyncio.to_thread(run, ["serve"], tmp_path, DATABASE_URL=missing, MCP_TODO_STARTUP_TIMEOUT_S="60")
    assert "database does not exist" in one_error_line(result)
    assert time.monotonic() - started < 15
    assert "database not reachable yet" not in result.stderr


async def test_outdated_or_missing_schema_names_the_command(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    empty = await db_factory.create(migrated=False)
    line = one_error_line(run(["serve"], tmp_path, DATABASE_URL=empty))
    assert "run `mcp-todo migrate`" in line

    old = await db_factory.create(migrated=False)
    engine = create_engine(old, pool_size=1)
    try:
        first_revision = next(iter(_revisions()))
        async with engine.begin() as conn:

            def upgrade(sync_conn: object) -> None:
                cfg = _config()
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, first_revision)

            await conn.run_sync(upgrade)
    finally:
        await engine.dispose()
    if first_revision == head_revision():
        pytest.skip("only one migration exists")
    line = one_error_line(run([], tmp_path, DATABASE_URL=old))
    assert f"the database schema is at revision {first_revision}" in line
    assert "run `mcp-todo migrate`" in line
    assert run(["migrate"], tmp_path, DATABASE_URL=old).returncode == 0


def _revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    return [rev.revision for rev in reversed(list(ScriptDirectory.from_config(_config()).walk_revisions()))]


@pytest.mark.parametrize(("args", "says"), [(["relay"], "KAFKA_BOOTSTRAP_SERVERS"), (["topics", "create"], "KAFKA")])
def test_kafka_commands_need_a_broker(args: list[str], says: str, tmp_path: Path) -> None:
    result = run(args, tmp_path)
    assert result.returncode == 2
    assert says in one_error_line(result)


@pytest.mark.parametrize("args", [["relay"], ["topics", "create"]])
async def test_kafka_commands_refuse_an_unreachable_broker(
    args: list[str], tmp_path: Path, db_factory: DatabaseFactory
) -> None:
    dsn = await db_factory.create()
    result = await asyncio.to_thread(run, args, tmp_path, DATABASE_URL=dsn, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert result.returncode == 2
    assert "cannot reach the Kafka broker at 127.0.0.1:1" in one_error_line(result)


async def test_token_commands(tmp_path: Path, db_factory: DatabaseFactory) -> None:
    dsn = await db_factory.create()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run(list(args), tmp_path, DATABASE_URL=dsn)

    created = await asyncio.to_thread(cli, "token", "create", "--user", "carol", "--expires", "30d")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1].split()[-1]
    assert secret.startswith("mtd_") and len(secret) > 40
    listed = await asyncio.to_thread(cli, "token", "list")
    assert "carol" in listed.stdout and "active" in listed.stdout and secret not in listed.stdout + listed.stderr
    assert (await asyncio.to_thread(cli, "token", "revoke", "1")).returncode == 0
    assert "revoked" in (await asyncio.to_thread(cli, "token", "list")).stdout
    assert "no active token 1" in one_error_line(await asyncio.to_thread(cli, "token", "revoke", "1"))
    assert "invalid duration" in one_error_line(
        await asyncio.to_thread(cli, "token", "create", "--user", "x", "--expires", "forever")
    )
    assert "--user" in (await asyncio.to_thread(cli, "token", "create")).stderr
    assert "1-200 characters" in one_error_line(await asyncio.to_thread(cli, "token", "create", "--user", "  "))


def test_python_m_mcp_todo_cli_knows_every_command_group(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mcp_todo.cli", "token", "--help"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Bearer tokens" in result.stdout
    assert all(command in result.stdout for command in ("create", "list", "revoke"))


async def test_a_refused_schema_check_leaves_no_connection_open(db_factory: DatabaseFactory) -> None:
    from pydantic import SecretStr

    from mcp_todo.cli import token_connection
    from mcp_todo.domain.errors import ConfigurationError
    from mcp_todo.settings import Settings

    dsn = await db_factory.create(migrated=False)
    settings = Settings.model_validate({"DATABASE_URL": "unset", "KAFKA_BOOTSTRAP_SERVERS": ""}).model_copy(
        update={"database_url": SecretStr(dsn)}
    )
    with pytest.raises(ConfigurationError):
        async with token_connection(settings):
            raise AssertionError("an unmigrated database must be refused")
    conn = await asyncpg.connect(dsn)
    try:
        others = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    assert others == 0
