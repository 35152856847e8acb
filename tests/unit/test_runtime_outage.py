"""A broker outage logs one line when it starts, a summary while it lasts, and one line when it ends."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from mcp_todo.runtime.outage import BrokerOutageFilter
from tests.support.polling import eventually


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured() -> list[logging.LogRecord]:
    return []


def _logger(outage: BrokerOutageFilter, captured: list[logging.LogRecord]) -> logging.Logger:
    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Keep()
    handler.addFilter(outage)
    root = logging.getLogger()
    root.addHandler(handler)
    return root


@pytest.fixture(autouse=True)
def info_level() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(level)


async def test_an_outage_is_one_line_a_summary_and_one_line_when_it_ends(captured: list[logging.LogRecord]) -> None:
    clock = FakeClock()
    outage = BrokerOutageFilter(quiet_s=0.2, summary_interval_s=30, clock=clock)
    root = _logger(outage, captured)
    aiokafka = logging.getLogger("aiokafka.client")
    try:
        for _ in range(600):  # 15 s of a client retrying every 25 ms
            aiokafka.error("Unable connect to node with id %s: %s", 1, "ConnectionRefusedError")
            clock.now += 0.025
        logging.getLogger("mcp_todo.pipeline.relay").warning(
            "relay could not publish; backing off", extra={"outage": "kafka"}
        )
        clock.now += 20  # 35 s in: past one summary interval
        aiokafka.error("Unable connect to node with id %s: %s", 1, "ConnectionRefusedError")
        logging.getLogger("mcp_todo.server").info("tool call")  # unrelated lines are never held back
        await eventually(lambda: not outage.in_outage, timeout_s=5, what="the outage to end")
    finally:
        root.handlers = [h for h in root.handlers if outage not in h.filters]

    lines = [(r.name, r.getMessage(), getattr(r, "messages_held_back", None)) for r in captured]
    assert lines == [
        ("aiokafka.client", "Kafka broker unreachable: Unable connect to node with id 1: ConnectionRefusedError", None),
        ("mcp_todo.pipeline.kafka", "Kafka broker still unreachable", 601),
        ("mcp_todo.server", "tool call", None),
        ("mcp_todo.pipeline.kafka", "Kafka broker reachable again", 601),
    ]
    assert captured[1].outage_s == 35.0  # type: ignore[attr-defined]


async def test_a_new_outage_after_recovery_is_announced_again(captured: list[logging.LogRecord]) -> None:
    outage = BrokerOutageFilter(quiet_s=60)
    root = _logger(outage, captured)
    try:
        logging.getLogger("aiokafka").warning("Got error produce response: %s", "RequestTimedOutError")
        outage.recovered()
        logging.getLogger("aiokafka").warning("Got error produce response: %s", "RequestTimedOutError")
        outage.recovered()
        outage.recovered()  # no outage: nothing to say
    finally:
        root.handlers = [h for h in root.handlers if outage not in h.filters]
    assert [r.getMessage() for r in captured] == [
        "Kafka broker unreachable: Got error produce response: RequestTimedOutError",
        "Kafka broker reachable again",
        "Kafka broker unreachable: Got error produce response: RequestTimedOutError",
        "Kafka broker reachable again",
    ]


@pytest.mark.parametrize(
    ("level", "message"),
    [
        (logging.INFO, "Unable connect to node with id %s: %s"),  # not a warning
        (logging.WARNING, "Heartbeat failed for group %s because it is rebalancing"),  # not a connection failure
    ],
)
def test_other_aiokafka_lines_pass_and_start_no_outage(level: int, message: str) -> None:
    outage = BrokerOutageFilter()
    record = logging.makeLogRecord({"name": "aiokafka.consumer", "levelno": level, "msg": message, "args": ("g", 1)})
    assert outage.filter(record)
    assert not outage.in_outage
