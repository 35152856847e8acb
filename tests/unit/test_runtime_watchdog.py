"""The loop watchdog (MCP_TODO_LOOP_WATCHDOG_MS): a callback that holds a real event loop is reported once, with how
long and where; a loop that only ever runs short callbacks is not."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest

from mcp_todo.runtime.logs import LogfmtFormatter
from mcp_todo.runtime.watchdog import LoopWatchdog, watch_loop
from mcp_todo.settings import Settings

WATCHDOG_ENV = "MCP_TODO_LOOP_WATCHDOG_MS"

# Small enough to keep the tests short, large against scheduling noise on a loaded machine: the blocks below are
# several times it, the short callbacks a fifth of it.
THRESHOLD_S = 0.15


class Reports:
    def __init__(self) -> None:
        self.seen: list[tuple[int, str, bool]] = []

    def __call__(self, ms: int, where: str, ongoing: bool) -> None:
        self.seen.append((ms, where, ongoing))


def _block_with_sleep(seconds: float) -> None:
    time.sleep(seconds)  # a blocking call on the loop: what the watchdog is for


def _busy(cpu_seconds: float) -> int:
    # Spins for that much CPU time, not wall time: the watchdog does not count the time a loaded machine keeps the
    # thread waiting for a CPU. Pure Python: the interpreter lets other threads run between its bytecodes.
    until = time.thread_time() + cpu_seconds
    spins = 0
    while time.thread_time() < until:
        spins += 1
    return spins


async def _settle(watchdog: LoopWatchdog) -> None:
    # The report is made once the loop runs again, from the watchdog's thread: give it a few of its periods.
    for _ in range(40):
        await asyncio.sleep(watchdog.period_s)


async def test_a_blocking_call_is_reported_with_its_length_and_stack() -> None:
    reports = Reports()
    watchdog = LoopWatchdog(asyncio.get_running_loop(), THRESHOLD_S, report=reports)
    watchdog.start()
    try:
        await asyncio.sleep(THRESHOLD_S)
        _block_with_sleep(0.6)
        await _settle(watchdog)
    finally:
        watchdog.stop()
    assert len(reports.seen) == 1, reports.seen
    ms, where, ongoing = reports.seen[0]
    assert 0.6 * 1000 - watchdog.period_s * 1000 - 50 <= ms <= 3000  # noticed a period after it began at worst
    assert not ongoing
    # Innermost first: the blocking function, then the test that called it.
    assert where.index("_block_with_sleep") < where.index("test_a_blocking_call_is_reported")
    assert "tests/unit/test_runtime_watchdog.py:" in where


async def test_a_busy_callback_is_reported_where_it_spins() -> None:
    reports = Reports()
    watchdog = LoopWatchdog(asyncio.get_running_loop(), THRESHOLD_S, report=reports)
    watchdog.start()
    try:
        await asyncio.sleep(THRESHOLD_S)
        _busy(0.6)
        await _settle(watchdog)
    finally:
        watchdog.stop()
    assert len(reports.seen) == 1, reports.seen
    assert " _busy < " in reports.seen[0][1]


def _regex_length(cpu_seconds: float) -> int:
    """How many `a`s make one `re.match` of `(a+)+$` on `a…ab` take at least `cpu_seconds` of CPU: its work doubles
    with each `a`, so the length whose match took half of it is one short. Found by trying, not extrapolated from one
    short match (a single timing of a few milliseconds on a busy machine undershot and made the test flaky)."""
    length = 18
    while True:
        started = time.thread_time()
        re.match(r"(a+)+$", "a" * length + "b")
        if time.thread_time() - started >= cpu_seconds / 2:
            return length + 1
        length += 1


def _exponential_regex(length: int) -> None:
    """One `re.match` that holds the GIL throughout."""
    re.match(r"(a+)+$", "a" * length + "b")


async def test_a_callback_holding_the_gil_is_reported_though_its_stack_cannot_be_taken() -> None:
    length = _regex_length(0.6)  # before the watchdog starts: these matches hold the loop too
    reports = Reports()
    watchdog = LoopWatchdog(asyncio.get_running_loop(), THRESHOLD_S, report=reports)
    watchdog.start()
    try:
        await asyncio.sleep(THRESHOLD_S)
        _exponential_regex(length)
        await _settle(watchdog)
    finally:
        watchdog.stop()
    assert len(reports.seen) == 1, reports.seen
    ms, where, _ongoing = reports.seen[0]
    assert ms >= 0.6 * 1000 * 0.8  # its CPU time, give or take the calibration
    assert where.startswith("unknown: the loop thread held the GIL")


async def test_short_callbacks_are_not_reported() -> None:
    reports = Reports()
    watchdog = LoopWatchdog(asyncio.get_running_loop(), THRESHOLD_S, report=reports)
    watchdog.start()
    try:
        for _ in range(40):  # 1.2 s of a loop kept busy, each callback a fifth of the threshold
            _block_with_sleep(THRESHOLD_S / 5)
            await asyncio.sleep(0)
        await _settle(watchdog)
    finally:
        watchdog.stop()
    assert reports.seen == []


async def test_the_line_is_logged_through_the_one_formatter(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mcp_todo.runtime.watchdog"), watch_loop(150) as watchdog:
        assert watchdog is not None
        await asyncio.sleep(THRESHOLD_S)
        _block_with_sleep(0.5)
        await _settle(watchdog)
    (record,) = [r for r in caplog.records if r.name == "mcp_todo.runtime.watchdog"]
    line = LogfmtFormatter().format(record)
    assert "\n" not in line
    assert " level=warning " in line and " event=loop_blocked ms=" in line and " where=" in line
    assert "_block_with_sleep" in line


async def test_the_watchdog_is_off_unless_set() -> None:
    with watch_loop(None) as watchdog:
        assert watchdog is None
    with watch_loop(250) as watchdog:
        assert watchdog is not None and watchdog.threshold_s == 0.25


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", None),
        ("  ", None),
        ("0", None),
        ("250", 250),
        (" 60000 ", 60_000),
        ("60001", None),
        ("-5", None),
        ("2.5", None),
        ("soon", None),
    ],
)
def test_the_setting_is_a_whole_number_of_milliseconds(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    raw: str,
    expected: int | None,
) -> None:
    monkeypatch.chdir(tmp_path)  # no `.env` of the working directory
    monkeypatch.setenv(WATCHDOG_ENV, raw)
    with caplog.at_level(logging.WARNING, logger="mcp_todo.settings"):
        assert Settings().loop_watchdog_ms == expected
    refused = raw.strip() not in ("", "0") and expected is None
    assert any(WATCHDOG_ENV in r.getMessage() for r in caplog.records) == refused
