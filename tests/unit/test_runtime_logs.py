"""The one log format (logfmt on stderr), and MCP_TODO_LOG_LEVEL: a setting read before the others, that never fails."""

from __future__ import annotations

import json
import logging
import random
import sys
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mcp_todo.runtime.logs import (
    _RECORD_FIELDS,
    EXC_MAX_CHARS,
    VALUE_MAX_CHARS,
    LogfmtFormatter,
    configure_logging,
)
from mcp_todo.settings import LOG_LEVELS, Settings, log_level

LOG_LEVEL_ENV = "MCP_TODO_LOG_LEVEL"

README = Path(__file__).resolve().parents[2] / "README.md"
# The module-level switches configure_logging turns off (the caller's frame, thread, process).
LOGGING_SWITCHES = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    switches = {name: getattr(logging, name) for name in LOGGING_SWITCHES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in switches.items():
        setattr(logging, name, value)


def test_a_record_is_one_line_of_keys_with_its_extra_fields_and_traceback() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("mcp_todo.x", logging.WARNING, __file__, 1, "relay batch", None, exc_info)
    record.rows = 3
    record.error = "two words"
    line = LogfmtFormatter().format(record)
    assert "\n" not in line
    assert line.startswith("ts=")
    assert ' level=warning logger=mcp_todo.x msg="relay batch" rows=3 error="two words" exc="Traceback' in line


def test_the_level_comes_from_the_environment_then_info(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no `.env` of the working directory
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    assert log_level() == "INFO"
    monkeypatch.setenv(LOG_LEVEL_ENV, "debug")
    assert log_level() == "DEBUG"
    monkeypatch.setenv(LOG_LEVEL_ENV, "chatty")
    assert log_level() == "INFO"
    monkeypatch.setenv(LOG_LEVEL_ENV, "")
    assert log_level() == "INFO"


def test_the_level_is_read_from_dot_env_too_and_is_one_of_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    (tmp_path / ".env").write_text(f"{LOG_LEVEL_ENV}=warning\n")
    assert log_level() == "WARNING"
    assert Settings().log_level == "WARNING"


def test_a_dot_env_it_cannot_read_leaves_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The level is read before anything can be logged, so it cannot fail; the full settings report the file.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    (tmp_path / ".env").write_bytes(b"MCP_TODO_LOG_LEVEL=\xff\xfe debug\n")
    assert log_level() == "INFO"


@pytest.mark.usefixtures("restore_root_logger")
def test_configure_logging_routes_the_root_logger_through_one_handler() -> None:
    configure_logging("WARNING")
    root = logging.getLogger()
    assert root.level == logging.WARNING
    (handler,) = root.handlers
    assert isinstance(handler.formatter, LogfmtFormatter)
    assert not any(getattr(logging, name) for name in LOGGING_SWITCHES)


def test_the_readme_documents_the_variable_its_default_and_its_values() -> None:
    (row,) = [line for line in README.read_text().splitlines() if f"`{LOG_LEVEL_ENV}`" in line]
    assert "INFO" in row
    assert all(level in row for level in LOG_LEVELS)


def _is_control(ch: str) -> bool:
    return (
        unicodedata.category(ch) in ("Cc", "Zl", "Zp")
        or unicodedata.bidirectional(ch) in BIDI_CONTROLS
        or ch in BIDI_MARKS
    )


BIDI_CONTROLS = ("LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI")
BIDI_MARKS = "\u200e\u200f\u061c"  # left-to-right, right-to-left and Arabic letter marks


def _reference_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if text and not any(ch in ' ="\\' or _is_control(ch) for ch in text):
        return text
    return "".join(f"\\u{ord(ch):04x}" if _is_control(ch) else ch for ch in json.dumps(text, ensure_ascii=False))


def _reference_format(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The formatter as first written (a dict of fields, json.dumps for every non-string): the faster one must write
    the same bytes."""
    fields: dict[str, object] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")})
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    return " ".join(f"{key}={_reference_value(value)}" for key, value in fields.items())


EXTRAS: list[dict[str, object]] = [
    {},
    {"task_id": 42, "user_id": "alice", "remind_at": "2027-03-08T08:30:00-05:00"},
    {"count": 0, "ok": True, "failed": False, "none": None, "ratio": 0.25, "big": 10**30, "neg": -3},
    {"empty": "", "spaces": "two words", "quote": 'say "hi"', "eq": "a=b", "nl": "a\nb", "tab": "a\tb", "bs": "a\\b"},
    {"outcomes": {"created": 3}, "ids": [1, 2], "uni": "Größe ✓", "obj": ValueError("x"), "path": Path("/tmp/a b")},
    {"ts": "mine", "level": 7, "logger": None, "exc": "extra exc", "later": 1},
    {"_private": 1, "public": 2},
    {"esc": "\x1b[2J", "vt_ff": "a\x0bb\x0cc", "nel": "a\x85b", "seps": "a\u2028b\u2029c", "del": "\x7f", "c1": "\x9b"},
    {"rlo": "user\u202eevil", "nul": "a\x00b", "fs": "a\x1cb\x1db\x1eb"},
]
CREATED = [0.0, 1764625373.0, 1764625373.9994999, 1764625373.9995, 1764625373.9999996, 1764625374.123456789]


@pytest.mark.parametrize("extra", EXTRAS, ids=range(len(EXTRAS)))
@pytest.mark.parametrize("created", CREATED)
@pytest.mark.parametrize("with_exc", [False, True])
def test_the_line_is_byte_for_byte_the_reference_format(
    extra: dict[str, object], created: float, with_exc: bool
) -> None:
    exc_info = None
    if with_exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("mcp_todo.handlers", logging.INFO, __file__, 1, "reminder %s", ("due",), exc_info)
    record.__dict__.update(extra)
    record.created = created
    formatter = LogfmtFormatter()
    for _ in range(2):  # the second line reuses the cached second
        assert formatter.format(record) == _reference_format(formatter, record)


def test_the_timestamp_rounds_as_datetime_does() -> None:
    rng = random.Random(7)
    formatter = LogfmtFormatter()
    base = 1764625373
    fractions = [rng.random() for _ in range(5000)] + [(i + 0.5) / 1e6 for i in range(0, 1_000_000, 997)]
    for created in [base + f for f in fractions] + [base + 0.9999995, base + 0.9999994999, base + 0.0004995]:
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert formatter._timestamp(created) == expected, created


def test_no_control_or_line_separator_survives_into_the_line() -> None:
    every = "".join(chr(cp) for cp in range(0x110000) if cp < 0xD800 or cp > 0xDFFF)
    controls = [ch for ch in every if _is_control(ch)]
    assert len(controls) == 65 + 2 + 12  # C0, DEL and C1; U+2028, U+2029; the bidirectional controls
    record = logging.LogRecord("mcp_todo.x", logging.INFO, __file__, 1, "msg\x1b[31m\u2028x", None, None)
    record.tool = "".join(controls)
    record.__dict__["exc"] = "\x85"  # a field named like a leading one takes the other formatting path
    for line in (LogfmtFormatter().format(record), LogfmtFormatter().format(_without(record, "exc"))):
        assert line.splitlines() == [line]
        assert not any(_is_control(ch) for ch in line), line
        assert "\\u001b" in line and "\\u0085" in line and "\\u2028" in line


def _without(record: logging.LogRecord, key: str) -> logging.LogRecord:
    copy = logging.makeLogRecord(vars(record))
    del copy.__dict__[key]
    return copy


HUGE: list[object] = ["x" * 2_000_000, "\x1b" * 2_000_000, "\x1b" * 1000, 10**5000, ["y" * 5000]]


@pytest.mark.parametrize("huge", HUGE, ids=["text", "escapes", "short-escapes", "int", "list"])
def test_a_value_is_capped_at_a_kilobyte_and_says_how_much_was_cut(huge: object) -> None:
    record = logging.LogRecord("mcp_todo.server", logging.INFO, __file__, 1, "tool call", None, None)
    record.tool = huge
    line = LogfmtFormatter().format(record)
    value = line.split(" tool=", 1)[1]
    assert len(value) <= 2 * VALUE_MAX_CHARS + 50, len(value)
    if isinstance(huge, str) and len(huge) > VALUE_MAX_CHARS:
        assert f"{len(huge) - VALUE_MAX_CHARS} more characters]" in value or "more characters]" in value


def test_a_huge_message_and_traceback_are_capped_keeping_the_traceback_end() -> None:
    try:
        raise ValueError("z" * 1_000_000)
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("mcp_todo.server", logging.ERROR, __file__, 1, "m" * 1_000_000, None, exc_info)
    line = LogfmtFormatter().format(record)
    assert len(line) < 2 * VALUE_MAX_CHARS + EXC_MAX_CHARS + 500
    assert 'exc="Traceback' in line and line.endswith('zzz"')


def test_uvicorns_colour_escapes_are_not_written() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started server process [%d]", (7,), None)
    record.color_message = "Started server process [\x1b[36m%d\x1b[0m]"
    line = LogfmtFormatter().format(record)
    assert line.endswith('msg="Started server process [7]"'), line
    assert "color_message" not in line
