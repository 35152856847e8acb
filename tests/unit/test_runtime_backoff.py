"""The one retry delay: exponential, capped, jittered unless asked not to be."""

from __future__ import annotations

from mcp_todo.runtime.backoff import backoff_delay


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    delays = [backoff_delay(attempt, base_s=0.1, cap_s=2.0) for attempt in range(12)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.4 <= delays[3] <= 0.8
    assert all(1.0 <= d <= 2.0 for d in delays[6:])
    assert len({backoff_delay(5, base_s=0.1, cap_s=100.0) for _ in range(20)}) > 1
    assert backoff_delay(10_000, base_s=1.0, cap_s=5.0) <= 5.0


def test_without_jitter_the_delays_double_exactly_up_to_the_cap() -> None:
    assert [backoff_delay(a, base_s=0.5, cap_s=3.0, jitter=False) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(-1, base_s=0.5, cap_s=3.0, jitter=False) == 0.5
