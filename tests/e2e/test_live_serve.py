"""Live subscriptions on `mcp-todo serve` processes: over stdio (2025-era resources/subscribe, a change made by
another process on the same database), over the SSE transport (resources/subscribe, a change made by another
session), over streamable HTTP with two users' tokens (subscriptions/listen, each
user hearing only of their own changes), and across two replicas through the test broker (a change on B, or a
reminder the notifier worker delivers, reaches a subscriber on A)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

from mcp_todo.settings import Settings
from tests.e2e.test_http import MCP_TODO, ServerProcess, create_token, server_env
from tests.e2e.test_stdio import call, stdio_session
from tests.support.database import DatabaseFactory
from tests.support.polling import eventually
from tests.support.processes import LOOP_WATCHDOG_ENV, WorkerProcess, worker_env

pytestmark = pytest.mark.filterwarnings(
    "ignore:resources/.*subscribe is removed:mcp.shared.exceptions.MCPDeprecationWarning"
)

TODAY = "todo://today"
MODERN = "2026-07-28"
NOTICE_TIMEOUT_S = 15.0


async def next_uris(stream: Any, wanted: set[str]) -> list[str]:
    """Events of a listen stream until every URI of `wanted` was told; the URIs told, in order."""
    told: list[str] = []
    async with asyncio.timeout(NOTICE_TIMEOUT_S):
        while not wanted <= set(told):
            event = await anext(stream)
            assert isinstance(event, ResourceUpdated)
            told.append(event.uri)
    return told


class Notices:
    """The URIs of the `notifications/resources/updated` a legacy client is sent, as its message handler."""

    def __init__(self) -> None:
        self.told: asyncio.Queue[str] = asyncio.Queue()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.told.put_nowait(str(message.params.uri))

    async def until(self, wanted: set[str]) -> list[str]:
        """The URIs told until every one of `wanted` was, in order."""
        told: list[str] = []
        async with asyncio.timeout(NOTICE_TIMEOUT_S):
            while not wanted <= set(told):
                told.append(await self.told.get())
        return told


async def test_stdio_subscriber_hears_a_change_made_by_another_process(
    db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    env = server_env(await db_factory.create())
    notices = Notices()
    log = tmp_path / "stdio.log"
    params = StdioServerParameters(command=MCP_TODO, env=LOOP_WATCHDOG_ENV | env, cwd=tmp_path)
    async with stdio_session(env, tmp_path, log) as other:
        with log.open("a") as errlog:
            host_client = Client(
                stdio_client(params, errlog=errlog), read_timeout_seconds=60, message_handler=notices, mode="legacy"
            )
            await _subscribe_and_hear(host_client, other, notices)


async def test_sse_subscriber_hears_a_change_made_by_another_session(
    db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    server = ServerProcess("sse", await db_factory.create(), tmp_path)
    await server.wait_healthy()
    notices = Notices()
    try:
        async with Client(sse_client(f"{server.base}/sse"), mode="legacy") as other:
            host_client = Client(sse_client(f"{server.base}/sse"), message_handler=notices, mode="legacy")
            await _subscribe_and_hear(host_client, other, notices)
    finally:
        assert await asyncio.to_thread(server.stop) == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "live: subscriber gone" not in log


async def _subscribe_and_hear(host_client: Client, other: Client, notices: Notices) -> None:
    """Subscribe with the legacy `host_client`, have `other` change the task, hear of it and read the agenda; then
    unsubscribe and hear nothing more of it. A second task, subscribed throughout, is the barrier: a session's notices
    are sent in the order of the changes, so once the barrier's is heard, every earlier one has been."""
    task = (await call(other, "add_task", title="water the plants"))["id"]
    barrier = (await call(other, "add_task", title="feed the cat"))["id"]
    async with host_client as host:
        for uri in (f"todo://tasks/{task}", TODAY, f"todo://tasks/{barrier}"):
            await host.subscribe_resource(uri)
        await call(other, "update_task", task_id=task, due_date="today 23:59")
        await notices.until({f"todo://tasks/{task}", TODAY})
        agenda = (await host.read_resource(TODAY)).contents[0].text  # type: ignore[union-attr]
        assert f"#{task} 23:59 water the plants" in agenda
        await call(other, "update_task", task_id=barrier, description="before unsubscribing")
        await notices.until({f"todo://tasks/{barrier}"})
        await host.unsubscribe_resource(f"todo://tasks/{task}")
        await host.unsubscribe_resource(TODAY)
        await call(other, "update_task", task_id=task, due_date="today 22:00")
        await call(other, "update_task", task_id=barrier, description="after unsubscribing")
        assert await notices.until({f"todo://tasks/{barrier}"}) == [f"todo://tasks/{barrier}"]


@contextlib.asynccontextmanager
async def http_client(base: str, secret: str | None = None, mode: str = MODERN) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


async def test_http_listeners_hear_only_their_own_users_changes(db_factory: DatabaseFactory, tmp_path: Path) -> None:
    dsn = await db_factory.create()
    env = server_env(dsn)
    alice, bob = create_token(env, "alice"), create_token(env, "bob")
    server = ServerProcess("streamable-http", dsn, tmp_path, insecure_local=False)
    await server.wait_healthy()
    try:
        async with http_client(server.base, alice) as alice_host, http_client(server.base, bob) as bob_host:
            mine = (await call(alice_host, "add_task", title="alice's", due_date="today 23:59"))["id"]
            theirs = (await call(bob_host, "add_task", title="bob's", due_date="today 23:59"))["id"]
            watched = [f"todo://tasks/{mine}", f"todo://tasks/{theirs}", TODAY]
            async with alice_host.listen(resource_subscriptions=watched) as stream:
                # Bob's changes first (his task, his agenda), then one of Alice's that touches only her task: the
                # first thing Alice hears is her own task, nothing of Bob's came before it.
                await call(bob_host, "update_task", task_id=theirs, title="bob's, renamed", due_date="today 22:00")
                await call(alice_host, "update_task", task_id=mine, description="hers")
                assert (await next_uris(stream, {f"todo://tasks/{mine}"}))[0] == f"todo://tasks/{mine}"
                await call(alice_host, "complete_task", task_id=mine)
                assert set(await next_uris(stream, {TODAY, f"todo://tasks/{mine}"})) <= set(watched) - {watched[1]}
                # Bob cannot read Alice's task through its resource either.
                with pytest.raises(MCPError, match="NOT_FOUND"):
                    await bob_host.read_resource(f"todo://tasks/{mine}")
        # Stateless HTTP has no channel for 2025-era notifications: subscribe says what to use instead.
        async with http_client(server.base, alice, mode="legacy") as legacy:
            with pytest.raises(MCPError, match="subscriptions/listen"):
                await legacy.subscribe_resource(TODAY)
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()


@pytest.mark.kafka
async def test_two_replicas_through_the_broker(
    db_factory: DatabaseFactory, kafka_settings: Settings, tmp_path: Path
) -> None:
    dsn = await db_factory.create()
    kafka = worker_env(dsn, kafka_settings)
    env = {k: v for k, v in kafka.items() if k.startswith("KAFKA_")}
    replica_a = ServerProcess("streamable-http", dsn, tmp_path, insecure_local=True, **env)
    replica_b = ServerProcess("streamable-http", dsn, tmp_path, insecure_local=True, **env)
    notifier = WorkerProcess("mcp-todo-notifier", kafka, tmp_path)
    await asyncio.gather(replica_a.wait_healthy(), replica_b.wait_healthy(), notifier.start())
    try:
        await notifier.wait_ready()
        async with http_client(replica_a.base) as on_a, http_client(replica_b.base) as on_b:
            task = (await call(on_b, "add_task", title="pay rent"))["id"]
            watched = [f"todo://tasks/{task}", TODAY, "todo://notifications"]
            async with on_a.listen(resource_subscriptions=watched) as stream:
                await _until_consuming(replica_a)
                await call(on_b, "update_task", task_id=task, due_date="today 23:59")
                assert set(await next_uris(stream, {f"todo://tasks/{task}", TODAY})) <= set(watched)
                # A worker's change: the notifier delivers a reminder set on B, and A's subscriber hears of the inbox.
                soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
                await call(on_b, "set_reminder", task_id=task, remind_at=soon)
                await next_uris(stream, {"todo://notifications"})
                inbox = (await on_a.read_resource("todo://notifications")).contents[0].text  # type: ignore[union-attr]
                assert "pay rent" in inbox
    finally:
        replica_a.stop()
        replica_b.stop()
        await notifier.close()
    for replica in (replica_a, replica_b):
        log = replica.log.read_text()
        assert "live feed consuming" in log and "Traceback" not in log


async def _until_consuming(replica: ServerProcess) -> None:
    """Until the replica's live feed has its partitions (it reads from their end, so earlier events are not heard)."""

    async def consuming() -> bool:
        return "live feed consuming" in replica.log.read_text()

    await eventually(consuming, 30, "replica A's live feed consumes", interval_s=0.05)
