"""SIGTERM/SIGINT/SIGHUP → a `stop` event: how every process here is asked to drain and exit.

SIGHUP is what a process gets when its terminal closes; its default action ends the process on the spot, without
the exit hooks (the last process on an embedded database stops it in one), so it drains and exits like SIGTERM.

The first signal sets `stop` and is logged; every long-lived part watches that event and finishes its unit of work.
A second one means "stop waiting": it raises KeyboardInterrupt, which ends the event loop (cancelling what is still
running) and exits with 130.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any, Final

from mcp_todo.runtime.watchdog import watch_loop

log = logging.getLogger(__name__)

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
INTERRUPTED_EXIT_CODE: Final = 130


def install_stop_signals(stop: asyncio.Event) -> None:
    """On the running loop: SIGTERM/SIGINT/SIGHUP set `stop`; a second one raises KeyboardInterrupt."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, _on_signal, stop, sig)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        raise KeyboardInterrupt
    log.info("stop requested", extra={"signal": sig.name})
    stop.set()


def run_until_signalled(
    command: Callable[[asyncio.Event], Coroutine[Any, Any, None]], *, watchdog_ms: int | None = None
) -> None:
    """`asyncio.run(command(stop))` with `stop` set by SIGTERM/SIGINT/SIGHUP; exit 130 when interrupted twice. The loop
    is watched for callbacks that hold it longer than `watchdog_ms` (MCP_TODO_LOOP_WATCHDOG_MS; runtime/watchdog.py)."""

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        with watch_loop(watchdog_ms):
            await command(stop)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None
