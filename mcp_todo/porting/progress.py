"""How far an import or an export has got: `Progress` is told (records done, records in all) as the work goes; the
command line draws it on a terminal, the `todo://export.ics` resource sends it to a host that asked for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TextIO

Progress = Callable[[int, int], None]

# Redrawn at most this often: a terminal line rewritten for each of 20,000 records would cost more than the records.
REDRAW_INTERVAL_S: Final = 0.2


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class TerminalProgress:
    """One line on a terminal, redrawn in place: `import: 1,234 of 10,000 tasks · 520/s · 17 s left`; `finish`
    ends it with the total and the time taken. Meant for a stream that is a terminal (the caller checks)."""

    def __init__(self, stream: TextIO, action: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.action = action
        self.clock = clock
        self.started = clock()
        self.drawn_at: float | None = None
        self.done = 0
        self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = self.clock()
        if self.drawn_at is not None and now - self.drawn_at < REDRAW_INTERVAL_S and done < total:
            return
        self.drawn_at = now
        elapsed = now - self.started
        line = f"{self.action}: {done:,} of {total:,} tasks"
        if done and elapsed > 0:
            rate = done / elapsed
            line += f" · {rate:,.0f}/s · {_duration((total - done) / rate)} left"
        # \r returns to the line's start, \x1b[K clears what a longer previous line left behind.
        self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        if self.drawn_at is None:
            return
        elapsed = self.clock() - self.started
        self.stream.write(f"\r{self.action}: {self.done:,} tasks in {_duration(elapsed)}\x1b[K\n")
        self.stream.flush()
