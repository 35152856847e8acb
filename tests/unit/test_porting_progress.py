"""The terminal progress line of `mcp-todo import|export`: counts, rate and time left, redrawn in place at most five
times a second (always at the start and the end), and a closing line with the total and the time taken."""

from __future__ import annotations

import io

from mcp_todo.porting.progress import TerminalProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_line_counts_rates_and_estimates_and_is_redrawn_sparingly() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = TerminalProgress(out, "import", clock=clock)
    progress(0, 10_000)
    for done in range(1, 10):  # nine more records within 0.1 s: not redrawn
        clock.now += 0.01
        progress(done, 10_000)
    clock.now = 102.0
    progress(1_000, 10_000)
    clock.now = 120.0
    progress(10_000, 10_000)
    clock.now = 120.05
    progress.finish()
    assert out.getvalue().split("\r")[1:] == [
        "import: 0 of 10,000 tasks\x1b[K",
        "import: 1,000 of 10,000 tasks · 500/s · 18 s left\x1b[K",
        "import: 10,000 of 10,000 tasks · 500/s · 0 s left\x1b[K",
        "import: 10,000 tasks in 20 s\x1b[K\n",
    ]


def test_long_waits_read_in_minutes_and_nothing_drawn_means_nothing_to_finish() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = TerminalProgress(out, "export", clock=clock)
    progress.finish()
    assert out.getvalue() == ""
    progress(0, 100_000)
    clock.now += 10
    progress(100, 100_000)
    assert out.getvalue().endswith("export: 100 of 100,000 tasks · 10/s · 2 h 46 min left\x1b[K")
