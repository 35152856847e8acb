"""The one supervisor of a process's long-lived parts (consumer loops, the relay, the reminder scheduler, the
server's background jobs).

The parts share one `stop` event. `stop` (a signal, the server shutting down) asks each to finish its unit of work
and return; whatever is still running `deadline_s` later is cancelled. With `stop_on_failure` (the workers), the
first part to fail sets `stop` too, so a process never keeps running half-alive, and its error is raised once the
others have drained. Without it (the server's background jobs, beside tools that keep serving), a failure is logged
with its traceback and the other parts carry on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import Any, Final

log = logging.getLogger(__name__)

# Under the 30 s a SIGTERM allows before SIGKILL (Kubernetes' default grace), leaving time to commit and close.
SHUTDOWN_DEADLINE_S: Final = 25.0


async def supervise(
    parts: Mapping[str, Awaitable[None]],
    stop: asyncio.Event,
    *,
    deadline_s: float = SHUTDOWN_DEADLINE_S,
    stop_on_failure: bool = True,
) -> None:
    """Run the named parts until they all return or `stop` is set, then drain them within `deadline_s`."""
    tasks: dict[asyncio.Future[Any], str] = {asyncio.ensure_future(part): name for name, part in parts.items()}
    for task, name in tasks.items():
        if isinstance(task, asyncio.Task):
            task.set_name(name)
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    failure: BaseException | None = None
    reported: set[asyncio.Future[Any]] = set()

    def note_failures(done: set[asyncio.Future[Any]]) -> None:
        nonlocal failure
        for task in done - reported:
            if task is stopping or task.cancelled() or task.exception() is None:
                continue
            reported.add(task)
            error = task.exception()
            if stop_on_failure:
                failure = failure or error
                log.error("part failed", extra={"part": tasks[task], "error": error.__class__.__name__})
            else:
                log.error("part failed", extra={"part": tasks[task]}, exc_info=error)

    try:
        pending = set(tasks)
        while pending and failure is None and not stop.is_set():
            done, pending = await asyncio.wait(pending | {stopping}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopping)
            note_failures(done)
        if stop_on_failure:
            stop.set()  # whatever ended the loop (a failure, every part returning), the process is stopping
        pending = {task for task in tasks if not task.done()}
        if pending:
            _, late = await asyncio.wait(pending, timeout=deadline_s)
            if late:
                log.error("did not drain in time; cancelling", extra={"parts": sorted(tasks[t] for t in late)})
        note_failures({task for task in tasks if task.done()})
    finally:
        unfinished = [task for task in (*tasks, stopping) if not task.done()]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
    if failure is not None:
        raise failure
