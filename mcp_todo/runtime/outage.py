"""One line when the broker goes away, a summary while it stays away, one line when it is back.

While Kafka is unreachable, aiokafka logs every failed attempt (hundreds a minute per client), and so would the
relay's backoff. `BrokerOutageFilter` sits on the log handler: the first failure passes as it is; later ones are
counted, and every `summary_interval_s` one line says how many were held back and for how long the outage has
lasted; once no failure has been seen for `quiet_s`, one line says the broker is reachable again. A failure is one
of aiokafka's connection warnings (below), or any record of ours logged with `extra={"outage": "kafka"}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

OUTAGE_KEY: Final = "outage"
KAFKA: Final = "kafka"
# What a warning of ours that repeats while the broker is away adds to its `extra`.
BROKER_OUTAGE: Final = {OUTAGE_KEY: KAFKA}
# aiokafka retries a lost connection within a second and a consumer heartbeats every few seconds, so this long
# without a failure means the link is back.
QUIET_S: Final = 10.0
SUMMARY_INTERVAL_S: Final = 30.0

log = logging.getLogger("mcp_todo.pipeline.kafka")


# What aiokafka says (at WARNING or ERROR) on each failed attempt while it cannot reach the broker; its other warnings
# (a rebalance, a missing topic, authorization) are not an outage and pass as they are.
_AIOKAFKA_CONNECTION_FAILURES: Final = (
    "Unable connect",
    "Unable to update metadata",
    "Unable to request metadata",
    "Failed fetch messages",
    "Failed fetch offsets",
    "Error sending",
    "Marking the coordinator dead",
    "Group Coordinator Request failed",
    "FindCoordinator Request failed",
    "Heartbeat send request failed",
    "Heartbeat session expired",
    "Got error produce response",
    "Error fetching metadata",
)


def is_broker_failure(record: logging.LogRecord) -> bool:
    if getattr(record, OUTAGE_KEY, None) == KAFKA:
        return True
    return (
        record.levelno >= logging.WARNING
        and (record.name == "aiokafka" or record.name.startswith("aiokafka."))
        and isinstance(record.msg, str)
        and record.msg.startswith(_AIOKAFKA_CONNECTION_FAILURES)
    )


class BrokerOutageFilter(logging.Filter):
    def __init__(
        self,
        *,
        quiet_s: float = QUIET_S,
        summary_interval_s: float = SUMMARY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        self.summary_interval_s = summary_interval_s
        self._clock = clock
        self._started: float | None = None  # when the current outage began; None: no outage
        self._last_summary = 0.0
        self._held_back = 0
        self._held_back_total = 0
        self._recovery: asyncio.TimerHandle | None = None
        self._emitting = False

    @property
    def in_outage(self) -> bool:
        return self._started is not None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._emitting or not is_broker_failure(record):
            return True
        now = self._clock()
        self._arm_recovery()
        if self._started is None:
            self._started = self._last_summary = now
            self._held_back = self._held_back_total = 0
            record.msg = f"Kafka broker unreachable: {record.msg}"
            return True
        self._held_back += 1
        self._held_back_total += 1
        if now - self._last_summary < self.summary_interval_s:
            return False
        self._last_summary = now
        self._emit(
            logging.WARNING,
            "Kafka broker still unreachable",
            outage_s=round(now - self._started, 1),
            messages_held_back=self._held_back,
        )
        self._held_back = 0
        return False

    def recovered(self) -> None:
        """End the outage now (also called by the timer once the failures have stopped for `quiet_s`)."""
        if self._recovery is not None:
            self._recovery.cancel()
            self._recovery = None
        if self._started is None:
            return
        outage_s = round(self._clock() - self._started, 1)
        self._started = None
        self._emit(
            logging.INFO, "Kafka broker reachable again", outage_s=outage_s, messages_held_back=self._held_back_total
        )

    def _arm_recovery(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # logged outside the event loop: the next failure inside it arms the timer
            return
        if self._recovery is not None:
            self._recovery.cancel()
        self._recovery = loop.call_later(self.quiet_s, self.recovered)

    def _emit(self, level: int, message: str, **extra: object) -> None:
        self._emitting = True
        try:
            log.log(level, message, extra=extra)
        finally:
            self._emitting = False
