"""The one retry delay: exponential from a base, capped, optionally jittered."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, jitter: bool = True) -> float:
    """The delay before the `attempt`-th retry (0-based): base_s · 2^attempt, at most cap_s.

    Jittered (a random 50-100 % of it) unless `jitter=False`, so replicas retrying against a service that just came
    back do not all arrive in lockstep."""
    delay = min(cap_s, base_s * float(2 ** min(max(attempt, 0), 32)))
    return delay * random.uniform(0.5, 1.0) if jitter else delay
