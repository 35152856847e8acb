"""SIGTERM/SIGINT → `stop`: the first signal sets it (logged), a second one ends the process with 130."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mcp_todo.runtime.signals import STOP_SIGNALS, install_stop_signals


@pytest.mark.parametrize("sig", STOP_SIGNALS)
async def test_a_signal_sets_stop_and_is_logged(sig: signal.Signals, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcp_todo.runtime.signals")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    install_stop_signals(stop)
    try:
        os.kill(os.getpid(), sig)
        await asyncio.wait_for(stop.wait(), 5)
    finally:
        for each in STOP_SIGNALS:
            loop.remove_signal_handler(each)
    assert [(r.getMessage(), getattr(r, "signal", None)) for r in caplog.records] == [("stop requested", sig.name)]


def test_a_second_signal_stops_waiting_and_exits_130() -> None:
    script = textwrap.dedent(
        """
        import asyncio, os, signal
        from mcp_todo.runtime.signals import run_until_signalled

        async def command(stop: asyncio.Event) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            await stop.wait()
            print("stopping", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.Event().wait()  # in-flight work that never finishes

        run_until_signalled(command)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 130, result.stderr
    assert result.stdout == "stopping\n"
    assert "Traceback" not in result.stderr
