"""What a database failure means, decided in one place: the database is unreachable (try again later), or not.

The service layer turns "unreachable" into UNAVAILABLE for a tool call; a worker's consumer waits for the database
instead of counting the failure against the event (an outage is no fault of the event, and parking events while the
database is down would lose their effect).
"""

from __future__ import annotations

from typing import Final

import asyncpg
from sqlalchemy import exc as sa_exc

# Connection exceptions, authorization failures, insufficient resources, operator shutdown, a dropped database:
# whatever the statement, the database cannot be used right now.
UNAVAILABLE_STATES: Final = ("08", "28", "53", "57P", "3D000")

# What the driver raises when it has no usable connection: refused or reset sockets (OSError, FileNotFoundError
# for a Unix socket), a connection closed under it, or a protocol left mid-operation by the server going away.
_CONNECTION_ERRORS: Final = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
)


def sqlstate(err: BaseException) -> str:
    """The SQLSTATE of a driver error, also when SQLAlchemy wraps it; empty when there is none."""
    orig = err.orig if isinstance(err, sa_exc.DBAPIError) else err
    return str(getattr(orig, "sqlstate", None) or "")


def database_unreachable(err: BaseException) -> bool:
    """Whether `err`, or an error it was raised from, says the database cannot be reached right now."""
    seen: BaseException | None = err
    for _ in range(10):  # a cause chain is short; this only bounds a pathological loop
        if seen is None:
            return False
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, _CONNECTION_ERRORS) or sqlstate(seen).startswith(UNAVAILABLE_STATES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
