"""Waiting on a condition with a deadline: the one way tests (and benchmarks) wait, never a fixed sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], timeout_s: float, what: str, *, interval_s: float = 0.02
) -> float:
    """Poll `check` (a plain or an async callable) until it is true; returns the time.monotonic() at which it first
    held. Raises AssertionError naming `what` when `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        held = await result if inspect.isawaitable(result) else result
        if held:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        await asyncio.sleep(interval_s)
