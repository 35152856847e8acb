"""Waiting on `asyncio.Event`s with a bound: the sleeps of retry loops, the idle waits of pollers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def sleep_unless_stopped(stop: asyncio.Event, delay_s: float) -> bool:
    """Sleep `delay_s`, or less if `stop` is set; True if the whole delay passed, False if `stop` cut it short (or
    was already set), so a retry loop knows to give up."""
    if stop.is_set():
        return False
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
    except TimeoutError:
        return True
    return False


async def wait_any(events: Iterable[asyncio.Event], timeout_s: float) -> None:
    """Return as soon as one of `events` is set, or after `timeout_s`."""
    pending = list(events)
    if any(event.is_set() for event in pending):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in pending]
    try:
        await asyncio.wait(waiters, timeout=max(timeout_s, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def until_stopped(work: Awaitable[T], stop: asyncio.Event, *, cancel_grace_s: float | None = None) -> T | None:
    """Await `work` until it finishes (its result, or its exception raised) or `stop` is set (None: `work` is
    cancelled). `cancel_grace_s` bounds how long to wait for the cancelled work to finish; work that cannot be
    interrupted (a thread blocked on a read) is then left behind."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
        await asyncio.wait({task, stopping}, timeout=cancel_grace_s)
    if task.done() and not task.cancelled():
        return task.result()  # what finished it, or what it raised while being cancelled
    return None
