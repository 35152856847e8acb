"""Debian's PgBouncer in transaction mode in front of the test PostgreSQL, on a free loopback port.

`TEST_POOLER=pgbouncer` makes the test session run through one (tests/conftest.py): the `engine` fixture and the
workers' DATABASE_URL go through the pooler, and LISTEN, the relay's session locks and the test's own bookkeeping
(truncation, creating databases) take the direct URL, as MCP_TODO_DIRECT_DATABASE_URL does in production.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
START_TIMEOUT_S = 10.0
# Few server connections per database and user, so that clients really share them: a test that passes here has
# had its transactions land on connections other clients used before.
DEFAULT_POOL_SIZE = 4
ADMIN_USER = "pgbouncer"


def pooler_requested() -> bool:
    return os.environ.get("TEST_POOLER", "") == "pgbouncer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """One pgbouncer process; `pooled(dsn)` is `dsn` (a database on the fronted server) through it."""

    def __init__(self, server_dsn: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        parts = urlsplit(server_dsn)
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        host = unquote(query.get("host", parts.hostname or "127.0.0.1"))
        port = parts.port or 5432
        # As root, pgbouncer runs as another user: the one who may reach the server's socket (an embedded server's
        # directory is its own system user's), else nobody.
        self.run_as = "nobody"
        if host.startswith("/"):
            (socket_file,) = Path(host).glob(".s.PGSQL.*[0-9]")
            port = int(socket_file.suffix.lstrip("."))
            self.run_as = pwd.getpwuid(socket_file.stat().st_uid).pw_name
        self.user = unquote(parts.username or "postgres")
        self.port = _free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="mcp-todo-pgbouncer-"))
        self._dir.chmod(0o777)  # pgbouncer refuses to run as root: it may be another user's
        (self._dir / "users.txt").write_text(f'"{self.user}" ""\n"{ADMIN_USER}" ""\n')
        (self._dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self._dir / 'users.txt'}\n"
            f"admin_users = {ADMIN_USER}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            # After a failed login to its server PgBouncer waits this long before the next try (default 15 s), and
            # refuses every client meanwhile: an outage would last that much longer than the database's own.
            "server_login_retry = 1\n"
            # A client waiting for a server connection is answered with an error after this long (default 120 s).
            "query_wait_timeout = 5\n"
            # asyncpg sends it at connect; PgBouncer 1.18 refuses startup parameters it does not know.
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self._dir / 'pgbouncer.log'}\n"
        )
        for path in self._dir.iterdir():
            path.chmod(0o666)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        args = [PGBOUNCER, str(self._dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            args[1:1] = ["-u", self.run_as]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start: {self.log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen within {START_TIMEOUT_S} s")

    def pooled(self, dsn: str) -> str:
        """`dsn`'s database, through the pooler."""
        database = urlsplit(dsn).path.lstrip("/")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self._dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def show(self, what: str) -> list[dict[str, str]]:
        """`SHOW <what>` on the admin console (POOLS, CLIENTS, SERVERS, STATS, …). The console speaks only the simple
        query protocol, which asyncpg uses for nothing that returns rows: psql asks."""
        out = subprocess.run(
            [
                *("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", ADMIN_USER, "-d", "pgbouncer", "-X", "-A"),
                *("-F", "\t", "-P", "footer=off", "-c", f"SHOW {what}"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.splitlines()
        header = out[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=True)) for line in out[1:]]

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextmanager
def pgbouncer(server_dsn: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(server_dsn, pool_size=pool_size).start()
    try:
        yield bouncer
    finally:
        bouncer.close()


# The session's pooler when TEST_POOLER=pgbouncer (set by tests/conftest.py), so helpers that build a subprocess's
# environment route it the same way.
ACTIVE: PgBouncer | None = None


def database_env(dsn: str) -> dict[str, str]:
    """DATABASE_URL (and MCP_TODO_DIRECT_DATABASE_URL) for a process on `dsn`, through the session's pooler if any."""
    if ACTIVE is None:
        return {"DATABASE_URL": dsn}
    return {"DATABASE_URL": ACTIVE.pooled(dsn), "MCP_TODO_DIRECT_DATABASE_URL": dsn}
