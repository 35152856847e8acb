"""Connections: an SQLAlchemy async engine over asyncpg, built from a DSN asyncpg parses itself.

SQLAlchemy's asyncpg dialect rejects `?sslmode=` in a URL, so the engine gets its connections from
`async_creator` and asyncpg reads the whole DSN (sslmode, host lists, sockets) as libpq would.
"""

from __future__ import annotations

import logging
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import quote, quote_plus, unquote_plus

import asyncpg
from asyncpg.connect_utils import _parse_connect_dsn_and_args
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.runtime.config_errors import describe_connect_error
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# The query parameters asyncpg reads a secret from (it unquotes their names, so `pass%77ord` is one too).
_SECRET_PARAMETERS: Final = frozenset({"password", "sslpassword"})
_HIDDEN: Final = "***"

# Custom plans for the handlers' batch transactions. The engine's connections prepare every statement once (asyncpg's
# statement cache), and after five executions PostgreSQL may settle on a generic plan, which it keeps until the table
# is analyzed again. A generic plan cannot see how many ids an array parameter holds, and one made while the tables
# were small stays after they have grown: the workers benchmark caught `load_tasks` (`user_id = $1 AND id = ANY($2)`)
# filtering every task of the user through `ix_tasks_user_category` for a batch of 40 (12 000 rows read, 64 ms), and
# a reminder claim in a nested loop over all pending reminders. A batch transaction runs a handful of statements
# for hundreds of events, so planning each of them for its actual arguments costs nothing that shows, and `SET LOCAL`
# ends with the transaction (it is safe behind a transaction-pooling proxy too).
CUSTOM_PLANS: Final = text("SET LOCAL plan_cache_mode = force_custom_plan")


async def use_custom_plans(conn: AsyncConnection) -> None:
    """Plan each statement of the rest of this transaction for its own arguments (`CUSTOM_PLANS` says why)."""
    await conn.execute(CUSTOM_PLANS)


def redact_dsn(dsn: str) -> str:
    """The DSN with every password in it replaced by ***, for logs and error messages.

    The user info is taken to end at the last `@` before the query, so a password with an unencoded `@` or `/`
    (`u:p@ss@host`) is hidden whole, where a URL parser would stop at its first `@`. `?password=` and
    `?sslpassword=` are hidden too. The password asyncpg itself would send is hidden wherever it still shows (a
    password with an unencoded `?` or `#` ends the host part early), and a DSN asyncpg cannot parse is hidden after
    its scheme: nothing says where its password ends.
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return _HIDDEN
    try:
        sent = _password_asyncpg_sends(dsn)
    except (ValueError, TypeError, OSError, asyncpg.InterfaceError):
        return f"{scheme}://{_HIDDEN}"
    head, query_sep, query = rest.partition("?")
    found = False
    if "@" in head:
        userinfo, _, hosts = head.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        found = bool(colon)
        head = f"{user}:{_HIDDEN}@{hosts}" if colon else head
    parameters = query.split("&") if query_sep else []
    for i, parameter in enumerate(parameters):
        name, equals, _ = parameter.partition("=")
        if equals and unquote_plus(name) in _SECRET_PARAMETERS:
            parameters[i] = f"{name}={_HIDDEN}"
            found = True
    redacted = f"{head}{query_sep}{'&'.join(parameters)}"
    if sent and not found:
        for spelling in {sent, quote(sent, safe=""), quote_plus(sent)}:
            redacted = redacted.replace(spelling, _HIDDEN)
    return f"{scheme}://{redacted}"


def _password_asyncpg_sends(dsn: str) -> str | None:
    """The password asyncpg reads from ``dsn`` (with a ~/.pgpass or service-file lookup, as a connect does)."""
    # The parser also builds the TLS context (`sslmode=verify-full` loads the root certificate), which has no bearing
    # on the password and may fail where the redacted DSN is being shown for another reason.
    head, _, query = dsn.partition("?")
    query = "&".join(p for p in query.split("&") if not unquote_plus(p).startswith("ssl"))
    _addrs, params = _parse_connect_dsn_and_args(
        dsn=f"{head}?{query}" if query else head,
        host=None,
        port=None,
        user=None,
        password=None,
        passfile=None,
        database=None,
        ssl=None,
        service=None,
        servicefile=None,
        direct_tls=None,
        server_settings=None,
        target_session_attrs=None,
        krbsrvname=None,
        gsslib=None,
    )
    password = params.password
    return password if isinstance(password, str) else None


def normalize_dsn(dsn: str, variable: str = "DATABASE_URL") -> str:
    """Accept the URL spellings users paste (SQLAlchemy's `postgresql+asyncpg://`, Heroku's `postgres://`)."""
    dsn = dsn.strip()
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql://" + dsn[len(prefix) :]
    if not dsn.startswith("postgresql://"):
        raise ConfigurationError(f"{variable} must start with postgresql:// (e.g. postgresql://user:pass@host/db)")
    return dsn


@dataclass(frozen=True)
class Database:
    """Where to connect.

    `engine` carries the transactions of the tools, handlers and jobs; it may be a transaction-mode pooler (PgBouncer,
    Neon's pooled endpoint), where each transaction can land on another server connection. `session` is a connection
    that keeps what a session holds between transactions: LISTEN, the relay's session advisory locks, migrations, the
    CLI's raw connections. It is MCP_TODO_DIRECT_DATABASE_URL when that is set (and `pooled` is then true), else the
    same DSN as `engine`.
    """

    engine: str
    session: str
    embedded: bool
    pooled: bool


async def resolve_database(settings: Settings) -> Database:
    """DATABASE_URL (and MCP_TODO_DIRECT_DATABASE_URL), or the embedded server, which the server migrates itself."""
    if settings.database_url is not None:
        dsn = normalize_dsn(settings.database_url.get_secret_value())
        if settings.direct_database_url is None:
            return Database(dsn, dsn, embedded=False, pooled=False)
        direct = normalize_dsn(settings.direct_database_url.get_secret_value(), "MCP_TODO_DIRECT_DATABASE_URL")
        return Database(dsn, direct, embedded=False, pooled=True)
    from mcp_todo.db.embedded import start_embedded

    dsn = await start_embedded(settings.data_dir)
    return Database(dsn, dsn, embedded=True, pooled=False)


async def connect(dsn: str, *, timeout_s: float = 10.0) -> asyncpg.Connection:
    """One raw asyncpg connection, with driver errors turned into one-line configuration errors."""
    try:
        return await asyncpg.connect(dsn, timeout=timeout_s)
    except OverflowError as exc:  # the socket's own check of the port
        raise ConfigurationError("DATABASE_URL's port must be 1-65535") from exc
    except ValueError as exc:  # asyncpg's DSN parser
        raise ConfigurationError("DATABASE_URL is not a valid PostgreSQL URL") from exc
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        message = describe_connect_error(exc, redact_dsn(dsn))
        if isinstance(exc, ssl.SSLError) or (isinstance(exc, ConnectionError) and "rejected SSL" in str(exc)):
            # A TLS refusal is an OSError, which a starting server takes for a database not up yet and waits for;
            # but asking again gets the same answer: without the cause it fails at once, like a refused password.
            raise ConfigurationError(message) from None
        raise ConfigurationError(message) from exc


def create_engine(dsn: str, *, pool_size: int = 10, pooled: bool = False) -> AsyncEngine:
    """The engine of `dsn`; `pooled` when that is a transaction-mode pooler (see `Database`).

    Behind such a pooler a statement prepared in one transaction is not there in the next (another server
    connection), and asyncpg's names (`__asyncpg_stmt_1__`, counted per process) collide on a server connection
    another replica prepared on: "prepared statement … does not exist / already exists". PgBouncer before 1.21
    (Debian 12 has 1.18) cannot track them at all. So a pooled engine keeps no statement cache, neither asyncpg's
    nor SQLAlchemy's, and names each statement it prepares uniquely; a statement is then parsed and planned in the
    transaction that runs it, which is what a transaction pooler can carry.
    """
    connect_kwargs: dict[str, Any] = {"statement_cache_size": 0} if pooled else {}

    async def creator() -> asyncpg.Connection:
        return await asyncpg.connect(dsn, timeout=10, **connect_kwargs)

    engine = create_async_engine(
        "postgresql+asyncpg://" + ("?prepared_statement_cache_size=0" if pooled else ""),
        async_creator=creator,
        connect_args={"prepared_statement_name_func": _unique_statement_name} if pooled else {},
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
    )
    event.listen(engine.sync_engine.pool, "checkin", _note_idle_since)
    event.listen(engine.sync_engine.pool, "checkout", _refuse_closed_connection)
    return engine


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


# A connection back in use within this long is handed out without a round trip; one that sat idle longer is pinged
# first, since the server may have ended it (restart, idle timeout) before this process read the news.
IDLE_PING_AFTER_S: Final = 1.0
# A ping that gets no answer in this long means a dead link (no FIN came): the pool opens a fresh connection.
PING_TIMEOUT_S: Final = 5.0


def _note_idle_since(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _known_closed(driver: asyncpg.Connection) -> bool:
    """Whether asyncpg has already read that the server ended the connection."""
    return bool(driver.is_closed())


def _refuse_closed_connection(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Hand out no pooled connection the server has closed (a restart, an idle timeout, pg_terminate_backend).

    asyncpg marks a connection closed as soon as the event loop has read the server's goodbye, which costs nothing;
    a connection idle for IDLE_PING_AFTER_S or more is also pinged, because that read may not have happened yet.
    Busy connections (calls in quick succession) skip the ping, where `pool_pre_ping` would add a round trip to
    every call. Raising DisconnectionError makes the pool discard the connection and open a fresh one. A connection
    that dies in the middle of a call is reported as invalidated and becomes UNAVAILABLE for that call.
    """
    driver = dbapi_connection.driver_connection
    if driver is None or _known_closed(driver):
        raise exc.DisconnectionError("the server closed this pooled connection")
    idle_since = record.info.get("idle_since")
    if idle_since is not None and time.monotonic() - idle_since >= IDLE_PING_AFTER_S:
        try:
            await_(driver.execute("SELECT 1", timeout=PING_TIMEOUT_S))
        # InternalClientError: the protocol was left mid-operation by the server's goodbye, unread.
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        ) as err:
            raise exc.DisconnectionError("the pooled connection did not answer a ping") from err


async def check_connection(dsn: str, *, timeout_s: float = 10.0) -> None:
    """Raise ConfigurationError unless the database at `dsn` answers a query.

    A connection alone proves little behind a pooler: PgBouncer lets a client in while its server is down, and says
    so at the first query ("server login has been failing", SQLSTATE 08P01).
    """
    conn = await connect(dsn, timeout_s=timeout_s)
    try:
        await conn.execute("SELECT 1", timeout=timeout_s)  # the simple query protocol: nothing prepared
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ConfigurationError(describe_connect_error(exc, redact_dsn(dsn))) from exc
    finally:
        await conn.close()


async def server_version(conn: asyncpg.Connection, *, timeout_s: float) -> str:
    """The server's version number, as `15.4` (of `15.4 (Debian 15.4-1.pgdg120+1)`)."""
    return str(await conn.fetchval("SHOW server_version", timeout=timeout_s)).split()[0]
