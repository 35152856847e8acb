"""The one supervisor: parts run until `stop`, drain within the deadline, then are cancelled; with
`stop_on_failure` the first failure stops the rest and is raised, without it the failure is logged and the rest
carry on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mcp_todo.runtime.supervise import supervise


async def draining(stop: asyncio.Event, finished: list[str], name: str) -> None:
    await stop.wait()
    finished.append(name)


async def test_parts_run_until_stop_then_drain() -> None:
    stop = asyncio.Event()
    finished: list[str] = []
    running = asyncio.create_task(
        supervise({"a": draining(stop, finished, "a"), "b": draining(stop, finished, "b")}, stop)
    )
    await asyncio.sleep(0)
    assert not running.done()
    stop.set()
    await asyncio.wait_for(running, 1)
    assert sorted(finished) == ["a", "b"]


async def test_the_first_failure_stops_the_others_and_is_raised_after_they_drain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    finished: list[str] = []

    async def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(supervise({"broken": broken(), "ok": draining(stop, finished, "ok")}, stop), 1)
    assert stop.is_set()
    assert finished == ["ok"]
    assert [(r.getMessage(), getattr(r, "part", None)) for r in caplog.records] == [("part failed", "broken")]


class _Logged(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.seen.set()


async def test_without_stop_on_failure_a_failure_is_logged_and_the_others_carry_on() -> None:
    stop = asyncio.Event()
    finished: list[str] = []
    logged = _Logged()
    logger = logging.getLogger("mcp_todo.runtime.supervise")
    logger.addHandler(logged)
    try:
        await _run_with_a_broken_part(stop, finished, logged)
    finally:
        logger.removeHandler(logged)
    assert finished == ["ok"]


async def _run_with_a_broken_part(stop: asyncio.Event, finished: list[str], logged: _Logged) -> None:

    async def broken() -> None:
        raise RuntimeError("boom")

    running = asyncio.create_task(
        supervise({"broken": broken(), "ok": draining(stop, finished, "ok")}, stop, stop_on_failure=False)
    )
    await asyncio.wait_for(logged.seen.wait(), 1)
    assert not stop.is_set() and not running.done()
    (record,) = logged.records
    assert record.getMessage() == "part failed" and record.exc_info is not None
    stop.set()
    await asyncio.wait_for(running, 1)


async def test_a_part_that_does_not_drain_in_time_is_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    stop.set()
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(supervise({"stuck": stuck()}, stop, deadline_s=0.01), 1)
    assert cancelled.is_set()
    assert [r.getMessage() for r in caplog.records] == ["did not drain in time; cancelling"]
