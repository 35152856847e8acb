"""A diagnostic: a thread that notices when the event loop stops running callbacks, and says where it is stuck.

The threshold is MCP_TODO_LOOP_WATCHDOG_MS (a whole number of milliseconds, 1–60 000; unset, empty or 0: off), read
with the settings (`Settings.loop_watchdog_ms`) and handed to `run_until_signalled`. When set, every process that runs
an event loop through it (the server in every transport, both workers, the relay, each command) watches its loop: a
callback that holds the loop longer than that is logged on stderr as one line, `event=loop_blocked ms=<how long>
where=<the loop thread's stack when it was noticed, innermost call first>`. A blocked loop stops every request of
every user, `/healthz` included, so the test suite runs every process with it on and fails a test whose processes
logged such a line.

How: every period the thread hands the loop a callback that only records when it ran (`call_soon_threadsafe`, which
also wakes a loop waiting in select), and waits for it. A callback that has not run after the threshold means the loop
is held: the thread takes the loop thread's stack then, and logs once the loop runs again (and once early, when a
block outlasts ONGOING_REPORT_S, so a loop that never comes back still says where it hangs).

A callback that holds the GIL throughout (a long regular expression match) keeps this thread from running as well: its
block is measured all the same (from when the callback finally ran, or, when it began while this thread slept,
from how long this thread overslept), but its stack cannot be taken during it; it is
told from another thread holding the GIL (which no callback did) by the CPU time the loop thread used meanwhile. Time
the loop thread spent waiting for a CPU (an overloaded machine; Linux's schedstat tells) is not counted either: no
code of ours held the loop then. ms= is what is left.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Final

log = logging.getLogger(__name__)

# A block still going on after this long is logged at once (and again, with its full length, when it ends).
ONGOING_REPORT_S: Final = 10.0
INNERMOST_FRAMES: Final = 3
WHERE_MAX_PARTS: Final = 16
OWN_PACKAGES: Final = ("mcp_todo/", "workers/")
_GIL_HELD: Final = "unknown: the loop thread held the GIL throughout, so its stack could not be taken"
_PREFIXES: Final = tuple(sorted({str(Path(p).resolve()) + os.sep for p in sys.path if p}, key=len, reverse=True))


@contextmanager
def watch_loop(threshold_ms: int | None) -> Iterator[LoopWatchdog | None]:
    """Watch the running loop for the duration when `threshold_ms` is set (None: off). Call it from inside the loop,
    so that what runs before the loop starts (imports) is not measured."""
    if threshold_ms is None:
        yield None
        return
    watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold_ms / 1000)
    watchdog.start()
    try:
        yield watchdog
    finally:
        watchdog.stop()


class LoopWatchdog:
    """The monitor thread of one event loop; `start()` from the loop's own thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold_s: float,
        *,
        report: Callable[[int, str, bool], None] | None = None,
    ) -> None:
        self.loop = loop
        self.threshold_s = threshold_s
        # Four looks per threshold: a block is noticed within a quarter threshold of crossing it, and an idle loop is
        # woken only 16 times a second at 250 ms.
        self.period_s = threshold_s / 4
        self._report = report or _log_block
        self._stopped = threading.Event()
        self._loop_thread_id = 0
        self._loop_native_id = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop_thread_id = threading.get_ident()
        self._loop_native_id = threading.get_native_id()
        self._thread = threading.Thread(target=self._run, name="loop watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching. Not joined: the thread may be waiting for a callback on this very loop, and ends at its
        next look."""
        self._stopped.set()

    def _run(self) -> None:
        cpu_clock = _thread_cpu_clock(self._loop_thread_id)
        while True:
            slept_from = time.monotonic()
            sleep_marks = (_runqueue_wait_s(self._loop_native_id), _cpu_s(cpu_clock))
            if self._stopped.wait(self.period_s):
                return
            self._check_oversleep(slept_from, sleep_marks, cpu_clock)
            beat = _Beat()
            posted = time.monotonic()
            waited_before = _runqueue_wait_s(self._loop_native_id)
            cpu_before = _cpu_s(cpu_clock)
            try:
                self.loop.call_soon_threadsafe(beat)
            except RuntimeError:  # the loop is closed: nothing left to watch
                return
            where: str | None = None
            if not beat.ran.wait(self.threshold_s):
                # Noticed while it lasts (unless this thread was held off too): where the loop thread is now is
                # where it is stuck.
                noticed_late = time.monotonic() - posted > self.threshold_s * 1.5
                where = None if noticed_late else self._where()
                reported_ongoing = False
                while not beat.ran.wait(self.period_s):
                    if self._stopped.is_set() or self.loop.is_closed():
                        return
                    held_s = time.monotonic() - posted
                    if not reported_ongoing and held_s >= ONGOING_REPORT_S:
                        self._report(round(held_s * 1000), where or self._where(), True)
                        reported_ongoing = True
            if self._stopped.is_set():
                return
            held_s = beat.at - posted
            if held_s <= self.threshold_s:
                continue
            waited_after = _runqueue_wait_s(self._loop_native_id)
            if waited_before is not None and waited_after is not None:
                # Time the loop thread was ready to run but had no CPU (an overloaded machine) is not its code's.
                held_s -= waited_after - waited_before
                if held_s <= self.threshold_s:
                    continue
            # Unsampled, neither thread could run Python meanwhile. If the loop thread did (a callback holding the
            # GIL), it used the CPU for it; if it did not, another thread of the process held the GIL (a computation
            # handed to a worker thread), which no callback did.
            cpu_after = _cpu_s(cpu_clock)
            if (
                where is None
                and cpu_before is not None
                and cpu_after is not None
                and cpu_after - cpu_before < self.threshold_s
            ):
                continue
            self._report(
                round(held_s * 1000),
                where or _GIL_HELD,
                False,
            )

    def _check_oversleep(
        self, slept_from: float, marks: tuple[float | None, float | None], cpu_clock: int | None
    ) -> None:
        """A callback that began holding the GIL while this thread slept between two looks keeps it from waking up
        until the callback ends: no beat was posted, so only the oversleep tells. It counts when the loop thread used
        the CPU for it (another thread of ours holding the GIL is no callback)."""
        held_s = time.monotonic() - slept_from - self.period_s
        if held_s <= self.threshold_s:
            return
        waited_before, cpu_before = marks
        waited_after = _runqueue_wait_s(self._loop_native_id)
        if waited_before is not None and waited_after is not None:
            held_s -= waited_after - waited_before
        cpu_after = _cpu_s(cpu_clock)
        if held_s <= self.threshold_s or cpu_before is None or cpu_after is None:
            return
        if cpu_after - cpu_before >= self.threshold_s:
            self._report(round(held_s * 1000), _GIL_HELD, False)

    def _where(self) -> str:
        frame = sys._current_frames().get(self._loop_thread_id)
        return describe_stack(frame) if frame is not None else "unknown: the loop thread has gone"


class _Beat:
    """The callback the loop runs: when it ran."""

    def __init__(self) -> None:
        self.ran = threading.Event()
        self.at = 0.0

    def __call__(self) -> None:
        self.at = time.monotonic()
        self.ran.set()


def describe_stack(frame: FrameType | None) -> str:
    """`path:line function` per frame, innermost first, ` < ` between them, paths relative to sys.path: the innermost
    INNERMOST_FRAMES (what blocks), then only this project's own frames (which of its calls led there), `…` for the
    library frames left out."""
    stack: list[tuple[str, int, str]] = []
    while frame is not None:
        stack.append((_short_path(frame.f_code.co_filename), frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    parts: list[str] = []
    skipped = False
    for depth, (path, line, function) in enumerate(stack):
        if depth < INNERMOST_FRAMES or path.startswith(OWN_PACKAGES):
            if skipped:
                parts.append("…")
                skipped = False
            parts.append(f"{path}:{line} {function}")
            if len(parts) >= WHERE_MAX_PARTS:
                break
        else:
            skipped = True
    return " < ".join(parts)


def _short_path(filename: str) -> str:
    for prefix in _PREFIXES:
        if filename.startswith(prefix):
            return filename[len(prefix) :]
    return filename


def _thread_cpu_clock(thread_id: int) -> int | None:
    try:
        return time.pthread_getcpuclockid(thread_id)
    except (AttributeError, OSError):  # not on this platform
        return None


def _cpu_s(clock: int | None) -> float | None:
    """The CPU time the thread of `clock` has used."""
    if clock is None:
        return None
    try:
        return time.clock_gettime(clock)
    except OSError:  # the thread has ended
        return None


def _runqueue_wait_s(native_id: int) -> float | None:
    """How long the thread has spent ready to run but waiting for a CPU (Linux; None elsewhere)."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat", "rb") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _log_block(ms: int, where: str, ongoing: bool) -> None:
    extra: dict[str, object] = {"event": "loop_blocked", "ms": ms}
    if ongoing:
        extra["ongoing"] = True
    log.warning("event loop blocked", extra={**extra, "where": where})
