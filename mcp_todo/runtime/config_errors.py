"""Misconfiguration as one line: the process edge that prints `Error: …` on stderr and exits 2, and the words for a
database connection that failed. (The settings' own validation errors are condensed where they are read,
`mcp_todo.settings.load_settings`.)"""

from __future__ import annotations

import re
import socket
import ssl
import sys
from typing import Final, NoReturn

CONFIG_EXIT_CODE: Final = 2


def exit_with_error(message: str, code: int = CONFIG_EXIT_CODE) -> NoReturn:
    """Print the first line of `message` as `Error: …` on stderr and exit with `code`."""
    print(f"Error: {message.splitlines()[0] if message else 'unknown error'}", file=sys.stderr, flush=True)
    raise SystemExit(code)


# PostgreSQL's own words for the connection failures that asyncpg reports by SQLSTATE alone; each is read from the
# server's message (which never holds the password) and said as what to fix.
_ROLE_MISSING = re.compile(r'role "(?P<name>[^"]*)" does not exist')
_UNKNOWN_PARAMETER = re.compile(r'unrecognized configuration parameter "(?P<name>[^"]*)"')


def describe_connect_error(exc: BaseException, where: str) -> str:
    """One line saying in words why a connection to the database at `where` (a DSN, password hidden) failed.

    Driver errors are told apart by SQLSTATE and type without importing the driver: this module is imported by every
    command, and the driver only by those that connect.
    """
    state = str(getattr(exc, "sqlstate", None) or "")
    server_says = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else "")).splitlines()
    said = server_says[0] if server_says else ""
    if state == "28P01":
        return f"database refused the password for {where}"
    if state == "3D000":
        return f"database does not exist: {where}"
    if state == "28000":
        if match := _ROLE_MISSING.search(said):
            return f'database has no role "{match["name"]}" (the user name in {where}) — create it or fix the URL'
        return f"database refused this user or host ({said}) for {where} — see the server's pg_hba.conf"
    if state == "42704" and (match := _UNKNOWN_PARAMETER.search(said)):
        return (
            f"DATABASE_URL has an unknown option `{match['name']}` (the server took it for a setting) — "
            "known ones include sslmode, sslrootcert, connect_timeout, application_name"
        )
    if state == "53300":
        return f"database at {where} has no free connection slots (too many connections)"
    if state.startswith("08"):  # a connection exception; from a pooler, its own server is unreachable
        return f"cannot reach the database at {where}: {said}"
    if state.startswith("57P"):
        return f"database at {where} is starting up or shutting down ({said})"
    if state:
        return f"database rejected the connection to {where}: {said} (SQLSTATE {state})"
    if isinstance(exc, TimeoutError):
        return f"cannot reach the database at {where}: no answer in time"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"cannot reach the database at {where}: its TLS certificate was refused ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"cannot reach the database at {where}: the TLS handshake failed ({exc.reason or 'SSLError'})"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach the database at {where}: connection refused (is PostgreSQL listening on that port?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot reach the database at {where}: unknown host name"
    if isinstance(exc, ConnectionError) and "rejected SSL" in said:
        return (
            f"cannot reach the database at {where}: the server refused SSL, which sslmode requires "
            "(enable SSL on the server, or use sslmode=prefer or disable)"
        )
    if isinstance(exc, OSError):
        detail = exc.strerror or said or exc.__class__.__name__
        return f"cannot reach the database at {where}: {detail} ({exc.__class__.__name__})"
    return f"cannot reach the database at {where}: {exc.__class__.__name__}"
