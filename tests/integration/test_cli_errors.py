"""Every command of `mcp-todo`, misconfigured, prints one `Error: …` line on stderr saying in words what is wrong,
exits non-zero, and shows no traceback: run as a subprocess against loopback (a closed port, a role the real
PostgreSQL does not have, a missing database, a misspelt URL option, TLS a server without TLS refuses).

The commands are read from the click group itself, so a command added later is covered (or this test says which
arguments it needs)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
import pytest

from mcp_todo.cli import main
from tests.support.database import DatabaseFactory
from tests.support.processes import BIN, clean_env

MCP_TODO = str(BIN / "mcp-todo")

# The arguments each command needs to get as far as the database; () is `mcp-todo` alone (the stdio server).
ARGS: dict[tuple[str, ...], list[str]] = {
    (): [],
    ("serve",): [],
    ("migrate",): [],
    ("relay",): [],
    ("topics", "create"): [],
    ("token", "create"): ["--user", "alice"],
    ("token", "list"): [],
    ("token", "revoke"): ["1"],
    ("user", "set"): ["alice", "--timezone", "Europe/Paris"],
    ("user", "show"): ["alice"],
    ("export",): [],
    ("import",): ["tasks.ics"],
    ("doctor",): [],
}
# Commands that print a report on stdout before their error line.
REPORTS = {("doctor",)}
# Commands that talk to the broker, not the database (with the broker unreachable, that is their error).
BROKER_ONLY = {("topics", "create")}
TOKEN_COMMANDS = [path for path in ARGS if path[:1] == ("token",)]
ICS_LINES = ("BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//t//EN", "BEGIN:VTODO", "UID:a@t", "SUMMARY:x")
ICS = "\r\n".join((*ICS_LINES, "END:VTODO", "END:VCALENDAR", ""))
# Several subprocesses at a time: each spends most of its ~1.5 s importing, and the matrix has dozens.
PARALLEL = 4


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def server_url(base: str, *, user: str | None = None, database: str | None = None, query: str = "") -> str:
    """The test server's URL (`base`) with another user or database, or one more query option."""
    split = urlsplit(base)
    netloc = f"{user}:secret-pw@{split.netloc.rpartition('@')[2]}" if user else split.netloc
    path = f"/{database}" if database else split.path
    return urlunsplit((split.scheme, netloc, path, "&".join(q for q in (split.query, query) if q), ""))


# (DATABASE_URL, or None for one on the test server; what the error line says in words)
CASES: dict[str, tuple[str | None, str]] = {
    "closed port": ("postgresql://u:secret-pw@127.0.0.1:1/db", "connection refused"),
    "no such role": (None, 'has no role "mcp_todo_no_such_role"'),
    "missing database": (None, "database does not exist"),
    "misspelt option": (None, "unknown option `sslmod`"),
    "tls refused": (None, "the server refused SSL"),
    "bad port": ("postgresql://u:secret-pw@127.0.0.1:99999/db", "port must be 1-65535"),
}


def case_url(case: str, base: str) -> str:
    url = CASES[case][0]
    if url is not None:
        return url
    return {
        "no such role": server_url(base, user="mcp_todo_no_such_role"),
        "missing database": server_url(base, database="mcp_todo_no_such_database"),
        "misspelt option": server_url(base, query="sslmod=require"),
        "tls refused": server_url(base, query="sslmode=require"),
    }[case]


def run(path: tuple[str, ...], tmp_path: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "tasks.ics").write_text(ICS)
    env = clean_env(
        MCP_TODO_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        MCP_TODO_STARTUP_TIMEOUT_S="0",
    )
    return subprocess.run(
        [MCP_TODO, *path, *ARGS[path]],
        env=env,
        cwd=tmp_path,  # no stray .env; tasks.ics is here
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
    )


def assert_one_error_line(path: tuple[str, ...], result: subprocess.CompletedProcess[str]) -> str:
    shown = f"mcp-todo {' '.join(path)}: {result.stderr}"
    assert result.returncode != 0, shown
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, shown
    assert "secret-pw" not in result.stderr + result.stdout, shown
    if path not in REPORTS:
        assert result.stdout == "", shown
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, shown
    # Nothing else but log lines (logfmt, one per line): no driver output, no second explanation.
    assert all(line.startswith("ts=") for line in lines if not line.startswith("Error: ")), shown
    return errors[0]


def run_all(paths: list[tuple[str, ...]], tmp_path: Path, database_url: str) -> dict[tuple[str, ...], str]:
    def one(path: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
        folder = tmp_path / ("-".join(path) or "root")
        folder.mkdir()
        return path, assert_one_error_line(path, run(path, folder, database_url))

    with ThreadPoolExecutor(PARALLEL) as pool:
        return dict(pool.map(one, paths))


def test_every_command_has_arguments_here() -> None:
    """A command added to the group fails this test until it is in ARGS, and so in the matrix below."""
    assert {(), *leaf_commands(main)} == set(ARGS)


@pytest.mark.slow
def test_every_command_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    """All of them share one database path and one error edge: an unreachable database is enough to show that
    each gets there and reports in one line. The kinds of failure are told apart below."""
    for path, line in run_all(list(ARGS), tmp_path, case_url("closed port", "")).items():
        if path in BROKER_ONLY:
            assert "cannot reach the Kafka broker at 127.0.0.1:1" in line, line
        else:
            assert "cannot reach the database at postgresql://u:***@127.0.0.1:1/db: connection refused" in line, line


@pytest.mark.slow
@pytest.mark.parametrize("case", [case for case in CASES if case != "closed port"])
def test_token_commands_say_what_is_wrong_in_one_line(case: str, tmp_path: Path, pg_server_dsn: str) -> None:
    says = CASES[case][1]
    url = case_url(case, pg_server_dsn)
    for path, line in run_all(TOKEN_COMMANDS, tmp_path, url).items():
        if says not in line and case == "tls refused":
            # The test server is shared, and a suite testing TLS may turn its `ssl` on for a moment: once more, in
            # a folder of its own. A command that ignores sslmode fails both times.
            line = assert_one_error_line(path, run(path, tmp_path / "again", url))
        assert says in line, (path, line)


async def test_a_token_id_beyond_any_token_is_refused_in_one_line(tmp_path: Path, db_factory: DatabaseFactory) -> None:
    dsn = await db_factory.create()
    result = await asyncio.to_thread(
        subprocess.run,
        [MCP_TODO, "token", "revoke", "99999999999999999999"],
        env=clean_env(MCP_TODO_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=dsn),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "99999999999999999999 is not in the range" in errors[0], result.stderr


def test_a_server_refusing_tls_fails_at_once_not_after_the_start_up_wait(tmp_path: Path, pg_server_dsn: str) -> None:
    """A starting server waits for a database that is not up yet; TLS refused is an answer, not a wait."""
    env = clean_env(
        MCP_TODO_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=server_url(pg_server_dsn, query="sslmode=require"),
        MCP_TODO_STARTUP_TIMEOUT_S="600",
    )
    result = subprocess.run(
        [MCP_TODO, "serve"], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90
    )
    line = assert_one_error_line(("serve",), result)
    if "the server refused SSL" not in line:  # the shared server's ssl turned on for a moment (see above): again
        line = assert_one_error_line(("serve",), run(("serve",), tmp_path / "again", env["DATABASE_URL"]))
    assert "the server refused SSL" in line
    assert "database not reachable yet" not in result.stderr
