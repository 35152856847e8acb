"""An in-process loop (a relay, a consumer loop: anything with `run(stop)`) running as a task of the test's event
loop, stopped the way its process would stop it: set the event, then wait for the drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any


class Background:
    def __init__(self, run: Callable[[asyncio.Event], Coroutine[Any, Any, object]]) -> None:
        self.stop = asyncio.Event()
        self.task: asyncio.Task[object] = asyncio.create_task(run(self.stop))

    async def close(self, timeout_s: float = 30.0) -> float:
        """Set the stop event and wait for the run to end; returns how long it took (drain, commit, close)."""
        started = time.monotonic()
        self.stop.set()
        await asyncio.wait_for(self.task, timeout_s)
        return time.monotonic() - started
