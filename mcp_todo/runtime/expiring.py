"""A bounded map whose entries expire: what the server keeps to spare a query or a signature check per call (verified
tokens, users' stored settings), each for a few seconds."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """Entries kept for `ttl_s` seconds of `clock` (or until an earlier time given with one), at most `max_entries`
    of them: the least recently used go first when it is full."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        until, value = entry
        if self._clock() >= until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, *, until: float | None = None) -> None:
        """Keep `value` for the TTL, or until `until` (a time of the clock) when that comes first."""
        expires = self._clock() + self._ttl_s
        if until is not None:
            expires = min(expires, until)
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
