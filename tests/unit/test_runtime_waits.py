"""Waiting on events with a bound. Durations are generous upper bounds, never fixed sleeps the test relies on."""

from __future__ import annotations

import asyncio
import time

from mcp_todo.runtime.waits import sleep_unless_stopped, until_stopped, wait_any


async def test_sleep_unless_stopped_sleeps_the_whole_delay_when_nothing_stops_it() -> None:
    started = time.monotonic()
    assert await sleep_unless_stopped(asyncio.Event(), 0.01) is True
    assert time.monotonic() - started >= 0.01


async def test_sleep_unless_stopped_returns_false_at_once_when_stop_is_set_before_or_during() -> None:
    stop = asyncio.Event()
    stop.set()
    async with asyncio.timeout(1):
        assert await sleep_unless_stopped(stop, 60) is False

    stop = asyncio.Event()
    asyncio.get_running_loop().call_soon(stop.set)
    async with asyncio.timeout(1):
        assert await sleep_unless_stopped(stop, 60) is False


async def test_wait_any_returns_when_one_event_is_set_or_the_timeout_passes() -> None:
    first, second = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_soon(second.set)
    async with asyncio.timeout(1):
        await wait_any([first, second], 60)
    async with asyncio.timeout(1):
        await wait_any([asyncio.Event()], 0.01)  # nothing set: the timeout ends it
    async with asyncio.timeout(1):
        await wait_any([asyncio.Event()], -5)  # a deadline already past is no wait


async def test_until_stopped_returns_the_result_or_raises_the_error_of_finished_work() -> None:
    async def answer() -> int:
        return 42

    async def broken() -> None:
        raise ValueError("boom")

    assert await until_stopped(answer(), asyncio.Event()) == 42
    try:
        await until_stopped(broken(), asyncio.Event())
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the work's error was swallowed")


async def test_until_stopped_cancels_the_work_on_stop() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return "finished"  # never: None below is the stop, not a result

    asyncio.get_running_loop().call_soon(stop.set)
    async with asyncio.timeout(1):
        assert await until_stopped(forever(), stop) is None
    assert cancelled.is_set()


async def test_until_stopped_leaves_work_that_will_not_cancel_behind_after_the_grace() -> None:
    stop = asyncio.Event()
    release = asyncio.Event()

    async def stubborn() -> str:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # refuses to be cancelled, as a thread blocked on a read does
        return "released"  # only after the test releases it: None below is the stop, not a result

    stop.set()
    task = asyncio.ensure_future(stubborn())
    async with asyncio.timeout(2):
        assert await until_stopped(task, stop, cancel_grace_s=0.01) is None
    assert not task.done()
    release.set()
    await asyncio.wait_for(task, 1)
