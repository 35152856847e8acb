"""Every Prometheus metric mcp-todo exposes, defined in this one place, and the two ways they are served: the HTTP
server's `/metrics` route (text exposition format) and, in the workers, a small port (MCP_TODO_METRICS_PORT).

The outbox gauges are not queried at scrape time: the relay refreshes them on its own connection with one cheap
query (the partial index of pending rows) every rebalance interval, so a scrape never touches the database and
answers even while the database is away; values older than `OUTBOX_STALE_AFTER_S` are left out of the exposition
rather than shown as if current. Every process that runs a relay (each server replica, each worker, `mcp-todo relay`)
reports the same outbox, so aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mcp_todo.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

# The `*_created` series (when each counter was created) double the exposition and say nothing a scrape needs.
disable_created_metrics()  # type: ignore[no-untyped-call]  # the one function prometheus_client leaves unannotated

# Tool calls take milliseconds; the tail (a slow search, a database hiccup) seconds.
_TOOL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A reminder is due within a second or two of remind_at; one caught up at start-up can be hours late.
_LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)

TOOL_CALLS = Counter(
    "mcp_todo_tool_calls",
    "MCP tool calls, by tool and outcome (OK or the error code the caller saw).",
    ["tool", "outcome"],
)
TOOL_DURATION = Histogram(
    "mcp_todo_tool_duration_seconds",
    "Time to run one MCP tool call (service and database; not the transport).",
    ["tool"],
    buckets=_TOOL_BUCKETS,
)
DAV_REQUESTS = Counter(
    "mcp_todo_caldav_requests",
    "CalDAV requests (/dav/), by method and HTTP status.",
    ["method", "status"],
)
DAV_DURATION = Histogram(
    "mcp_todo_caldav_duration_seconds",
    "Time to answer one CalDAV request (authentication, database, rendering; not the transport).",
    ["method"],
    buckets=_TOOL_BUCKETS,
)
EVENTS_HANDLED = Counter(
    "mcp_todo_events_handled",
    "Kafka events a worker's consumer finished with: handled, or parked (dead-letter topic: refused at once, or "
    "after its attempts).",
    ["worker", "outcome"],
)
REMINDER_LATENESS = Histogram(
    "mcp_todo_reminder_lateness_seconds",
    "Delivery time of a reminder (its inbox row written) minus its remind_at.",
    buckets=_LATENESS_BUCKETS,
)

OUTBOX_STALE_AFTER_S = 30.0  # several missed refreshes (every 5 s): the relay has lost its database


class _OutboxGauges(Collector):
    """`mcp_todo_outbox_pending` and `mcp_todo_outbox_oldest_age_seconds` as of the relay's last refresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the workers' exposition runs in a thread
        self._values: tuple[float, float, float] | None = None  # pending, oldest age, monotonic time of the refresh

    def update(self, pending: int, oldest_age_s: float) -> None:
        with self._lock:
            self._values = (float(pending), max(0.0, oldest_age_s), time.monotonic())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            values = self._values
        if values is None or time.monotonic() - values[2] > OUTBOX_STALE_AFTER_S:
            return
        pending, oldest_age_s, _ = values
        yield GaugeMetricFamily(
            "mcp_todo_outbox_pending", "Outbox rows waiting to be published (not parked).", value=pending
        )
        yield GaugeMetricFamily(
            "mcp_todo_outbox_oldest_age_seconds",
            "Age of the oldest outbox row waiting to be published; 0 when none waits.",
            value=oldest_age_s,
        )


OUTBOX = _OutboxGauges()
REGISTRY.register(OUTBOX)


def exposition() -> tuple[bytes, str]:
    """The body and content type of a scrape: every metric of this process in the text format."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsPort:
    """The workers' metrics endpoint: prometheus_client's HTTP server on a thread of its own, on `port` (all
    addresses, as a Prometheus in the cluster scrapes the pod's IP); a no-op when `port` is 0."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MetricsPort:
        if self.port:
            try:
                self._server, self._thread = start_http_server(self.port)
            except OSError as err:
                raise ConfigurationError(
                    f"cannot serve metrics on port {self.port} (MCP_TODO_METRICS_PORT): {err.strerror or err}"
                ) from None
            log.info("serving metrics", extra={"port": self.port, "path": "/metrics"})
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
