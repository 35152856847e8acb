"""Delivery to the `MCP_TODO_NOTIFY_URLS` targets through Apprise.

Each URL gets its own Apprise object so one target's failure is retried (with backoff) and logged on its own and never
delays the others. URLs carry secrets (bot tokens, passwords): logs name a target by its position and scheme only,
and Apprise's own logger, which prints hosts and at debug level whole URLs, is silenced.
"""

from __future__ import annotations

import asyncio
import logging
import math
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import apprise

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.runtime.backoff import backoff_delay

log = logging.getLogger(__name__)


def _scheme(url: str) -> str:
    head, sep, _ = url.partition("://")
    return head.lower() if sep and head.isascii() and len(head) <= 20 else "unknown"


def backoff_delays(attempts: int, first_s: float) -> list[float]:
    """The pauses between `attempts` tries: first_s, 2·first_s, 4·first_s, … (one fewer than the attempts)."""
    return [backoff_delay(i, base_s=first_s, cap_s=math.inf, jitter=False) for i in range(max(attempts - 1, 0))]


@dataclass(frozen=True)
class Target:
    index: int  # 1-based position in MCP_TODO_NOTIFY_URLS, the only way logs name it
    scheme: str
    client: apprise.Apprise


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    failed: int


async def background_notify_targets(urls: Sequence[str]) -> NotifyTargets:
    """`NotifyTargets(urls, background=True)`, made in a worker thread when there are URLs: Apprise loads its plugin
    modules on the first URL it is given (seconds on a busy machine), which would hold the event loop."""
    if not urls:
        return NotifyTargets(urls, background=True)
    return await asyncio.to_thread(lambda: NotifyTargets(urls, background=True))


class NotifyTargets:
    """The configured Apprise targets with a retry policy; `background=True` delivers without blocking the caller."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        attempts: int = 3,
        first_backoff_s: float = 0.5,
        attempt_timeout_s: float = 10.0,
        background: bool = False,
    ) -> None:
        # Apprise logs hosts at warning level and whole URLs at debug level; our own lines replace them.
        logging.getLogger("apprise").setLevel(logging.CRITICAL)
        self.attempts = attempts
        self.first_backoff_s = first_backoff_s
        self.attempt_timeout_s = attempt_timeout_s
        self.background = background
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        targets = []
        for index, url in enumerate(urls, start=1):
            client = apprise.Apprise()
            with warnings.catch_warnings():
                # The first add() loads Apprise's plugins; its e-mail plugin imports `imghdr`, deprecated since 3.11.
                warnings.simplefilter("ignore", DeprecationWarning)
                added = client.add(url)
            if not added:
                raise ConfigurationError(
                    f"MCP_TODO_NOTIFY_URLS entry {index} ({_scheme(url)}://…) is not a valid Apprise URL"
                )
            targets.append(Target(index, _scheme(url), client))
        self.targets: tuple[Target, ...] = tuple(targets)

    def __bool__(self) -> bool:
        return bool(self.targets)

    async def send(self, title: str, body: str, *, context: dict[str, object] | None = None) -> DeliveryReport:
        """Send to every target at once; each is retried on its own. Never raises for a failing target."""
        if not self.targets:
            return DeliveryReport(0, 0)
        results = await asyncio.gather(*(self._send_one(target, title, body, context or {}) for target in self.targets))
        ok = sum(results)
        return DeliveryReport(delivered=ok, failed=len(results) - ok)

    async def _send_one(self, target: Target, title: str, body: str, context: dict[str, object]) -> bool:
        delays = backoff_delays(self.attempts, self.first_backoff_s)
        for attempt in range(1, self.attempts + 1):
            result = await target.client.async_notify(body=body, title=title, timeout=self.attempt_timeout_s)
            if result:
                return True
            extra = {"target": target.index, "scheme": target.scheme, "attempt": attempt, **context}
            if attempt < self.attempts:
                log.warning("notify target failed, retrying", extra={**extra, "retry_in_s": delays[attempt - 1]})
                await asyncio.sleep(delays[attempt - 1])
            else:
                log.error("notify target failed, giving up", extra=extra)
        return False

    def is_in_flight(self, key: int) -> bool:
        return key in self._in_flight

    def spawn(self, key: int, work: Callable[[], Awaitable[None]]) -> None:
        """Run a delivery in the background, at most one per key (a notification id) in this process."""
        if key in self._in_flight:
            return

        async def runner() -> None:
            try:
                await work()
            finally:
                self._in_flight.pop(key, None)

        self._in_flight[key] = asyncio.create_task(runner(), name=f"notify-{key}")

    async def drain(self, timeout_s: float = 20.0) -> None:
        """Wait for background deliveries (shutdown); what is left is resumed by the next start from the inbox."""
        pending = list(self._in_flight.values())
        if not pending:
            return
        _, not_done = await asyncio.wait(pending, timeout=timeout_s)
        for task in not_done:
            task.cancel()
        if not_done:
            log.warning("notify deliveries cut short by shutdown", extra={"unfinished": len(not_done)})
