"""The loop watchdog end to end: a process started the way every test subprocess is (clean_env) and run the way every
binary runs (its settings' MCP_TODO_LOOP_WATCHDOG_MS handed to run_until_signalled) logs one `event=loop_blocked`
line when its loop is held, and the e2e check turns that line into a failed test."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.conftest import BlockedLoopLines, _fail_on
from tests.support.processes import REPO_ROOT, clean_env

pytestmark = pytest.mark.slow

# The process's command blocks its loop with time.sleep for `argv[1]` seconds, once the loop has run a while.
PROGRAM = """
import asyncio, sys, time
from mcp_todo.runtime.logs import configure_logging
from mcp_todo.runtime.signals import run_until_signalled
from mcp_todo.settings import get_settings, log_level

def hold_the_loop(seconds):
    time.sleep(seconds)

async def command(stop):
    await asyncio.sleep(0.5)
    hold_the_loop(float(sys.argv[1]))
    await asyncio.sleep(0.5)

configure_logging(log_level())
run_until_signalled(command, watchdog_ms=get_settings().loop_watchdog_ms)
"""


def run_program(block_s: float, log_dir: Path) -> None:
    with (log_dir / "process.stderr.log").open("ab") as log:
        subprocess.run(
            [sys.executable, "-c", PROGRAM, str(block_s)],
            env=clean_env(PYTHONPATH=str(REPO_ROOT)),
            cwd=log_dir,
            stderr=log,
            timeout=60,
            check=True,
        )


def test_a_process_that_holds_its_loop_fails_the_test() -> None:
    # Outside the session's temporary directory, or this test's own check would fail it.
    with tempfile.TemporaryDirectory() as directory:
        lines = BlockedLoopLines(Path(directory))
        run_program(0.0, Path(directory))
        assert lines.new() == []
        run_program(1.0, Path(directory))
        (line,) = lines.new()
    assert " event=loop_blocked ms=" in line and "hold_the_loop < " in line
    ms = int(line.split(" ms=")[1].split()[0])
    assert 900 <= ms <= 10_000  # the second it slept, give or take the watchdog's period and a loaded machine
    with pytest.raises(pytest.fail.Exception, match="blocked its event loop"):
        _fail_on([line])
