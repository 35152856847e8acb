"""Live resources in process, fed in local mode by the database (the outbox's and the inbox's notifications): both
protocol eras' subscriptions, unsubscribe, a worker's change, the midnight roll-over, the agenda's size, and what
10,000 idle subscriptions cost."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from mcp.client import Client
from mcp.client.session import IncomingMessage
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification, SubscriptionsListenRequestParams
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.engine import create_engine
from mcp_todo.events import REMINDER_DUE, Envelope, ReminderDue
from mcp_todo.handlers.reminder_delivery import deliver_reminders
from mcp_todo.pipeline.live import TODAY_URI, _DatabaseFeed
from mcp_todo.server import live
from mcp_todo.server.app import build_server, live_feed
from mcp_todo.server.live import HubBus, LiveListen
from mcp_todo.server.live_hub import LiveHub
from mcp_todo.server.state import AppState
from mcp_todo.service.agenda import render_agenda
from mcp_todo.service.context import Ctx
from mcp_todo.service.tasks import add_task
from mcp_todo.service.users import USER_CACHE_TTL_S, UserSettingsCache, set_user_settings
from tests.integration.tool_client import settings_for
from tests.support.database import DatabaseFactory

# The 2025-era subscribe is what the legacy hosts send; the SDK's client warns that 2026-07-28 removed it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:resources/.*subscribe is removed:mcp.shared.exceptions.MCPDeprecationWarning"
)

ZONE = "Europe/Paris"
NOTICE_TIMEOUT_S = 10.0


@dataclass
class Notices:
    """The resource URIs a client was told of, in order, with a way to wait for one."""

    uris: list[str] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            async with self.changed:
                self.uris.append(str(message.params.uri))
                self.changed.notify_all()

    async def next(self, *uris: str) -> list[str]:
        """Wait until each of `uris` is told of; returns (and forgets) everything told so far."""
        async with asyncio.timeout(NOTICE_TIMEOUT_S), self.changed:
            await self.changed.wait_for(lambda: set(uris) <= set(self.uris))
            seen, self.uris = self.uris, []
            return seen


@dataclass
class Live:
    engine: AsyncEngine
    state: AppState
    server: MCPServer[AppState]


@asynccontextmanager
async def live_server(
    db_factory: DatabaseFactory,
    user: str,
    clock: Callable[[], datetime] | None = None,
    user_settings: UserSettingsCache | None = None,
) -> AsyncIterator[Live]:
    dsn = await db_factory.create()
    engine = create_engine(dsn, pool_size=3)
    settings = settings_for(dsn, user, zone=ZONE)
    clock = clock or (lambda: datetime.now(UTC))
    state = AppState(settings=settings, engine=engine, dsn=dsn, embedded=False, clock=clock)
    if user_settings is not None:
        state.user_settings = user_settings
    feed = asyncio.create_task(live_feed(state))
    try:
        yield Live(engine, state, build_server(settings, state=state))
    finally:
        state.stopping.set()
        await feed
        await engine.dispose()


@pytest.fixture(scope="module")
async def alice(db_factory: DatabaseFactory) -> AsyncIterator[Live]:
    async with live_server(db_factory, "alice") as live:
        yield live


@asynccontextmanager
async def client(live: Live, mode: str, notices: Notices | None = None) -> AsyncIterator[Client]:
    handler = notices.handle if notices is not None else None
    async with Client(live.server, mode=mode, message_handler=handler) as connected:
        yield connected


async def add(connected: Client, **arguments: Any) -> int:
    added = await connected.call_tool("add_task", arguments)
    assert not added.is_error and added.structured_content is not None, added
    return int(added.structured_content["id"])


async def test_legacy_subscribe_hears_changes_until_unsubscribed(alice: Live) -> None:
    notices = Notices()
    async with client(alice, "legacy", notices) as host, client(alice, "legacy") as other:
        capabilities = host.session.server_capabilities
        assert capabilities is not None and capabilities.resources is not None and capabilities.resources.subscribe
        first, second = await add(other, title="first"), await add(other, title="second")
        await host.subscribe_resource(f"todo://tasks/{first}")
        await host.subscribe_resource(f"todo://tasks/{second}")
        await host.subscribe_resource(TODAY_URI)

        await other.call_tool("update_task", {"task_id": first, "due_date": "today 18:00"})
        # (The additions may be told too: the feed can read them after the subscriptions.)
        assert set(await notices.next(TODAY_URI, f"todo://tasks/{first}")) <= {
            f"todo://tasks/{first}",
            f"todo://tasks/{second}",
            TODAY_URI,
        }

        # The host re-reads: the task as the tools show it, and today's agenda.
        read = await host.read_resource(f"todo://tasks/{first}")
        shown = json.loads(read.contents[0].text)  # type: ignore[union-attr]
        assert shown["id"] == first and shown["title"] == "first" and shown["due_date"].endswith(("+01:00", "+02:00"))
        agenda = (await host.read_resource(TODAY_URI)).contents[0].text  # type: ignore[union-attr]
        assert agenda.startswith("today ") and f"#{first} 18:00 first" in agenda

        # Unsubscribed: a change of `first` is not told, the next one of `second` is (in commit order).
        await host.unsubscribe_resource(f"todo://tasks/{first}")
        await host.unsubscribe_resource(TODAY_URI)
        await other.call_tool("update_task", {"task_id": first, "title": "first, renamed"})
        await other.call_tool("update_task", {"task_id": second, "title": "second, renamed"})
        assert await notices.next(f"todo://tasks/{second}") == [f"todo://tasks/{second}"]

        refused = await _error(host.subscribe_resource("todo://elsewhere"))
        assert "cannot subscribe" in refused
    # The session's end freed its subscriptions.
    assert alice.state.live.counts() == {"users": 0, "listeners": 0, "legacy_uris": 0, "zones": 0, "timers": 0}


async def _error(call: Any) -> str:
    with pytest.raises(MCPError) as raised:
        await call
    return str(raised.value)


async def test_listen_stream_hears_its_own_resources(alice: Live) -> None:
    async with client(alice, "2026-07-28") as host, client(alice, "legacy") as other:
        task = await add(other, title="watched")
        unwatched = await add(other, title="not watched")
        async with host.listen(resource_subscriptions=[f"todo://tasks/{task}", TODAY_URI]) as stream:
            assert alice.state.live.counts()["listeners"] == 1
            await other.call_tool("complete_task", {"task_id": unwatched})
            await other.call_tool("complete_task", {"task_id": task})
            # Each completion touches today's agenda; only the watched task's own URI is told, never the other's (the
            # client folds a repeated URI not yet read into one).
            told: set[str] = set()
            async with asyncio.timeout(NOTICE_TIMEOUT_S):
                while told != {f"todo://tasks/{task}", TODAY_URI}:
                    event = await anext(stream)
                    assert isinstance(event, ResourceUpdated) and event.uri != f"todo://tasks/{unwatched}"
                    told.add(event.uri)
        await asyncio.sleep(0)
        assert alice.state.live.counts()["listeners"] == 0


async def test_a_reminder_delivered_by_the_worker_handler_reaches_the_inbox_subscriber(alice: Live) -> None:
    notices = Notices()
    async with client(alice, "legacy", notices) as host:
        task = await add(host, title="call the plumber", due_date="tomorrow 10:00")
        await host.subscribe_resource("todo://notifications")
        remind_at = datetime.now(UTC).replace(microsecond=0)
        due = Envelope.of(
            REMINDER_DUE,
            ReminderDue(task_id=task, title="call the plumber", remind_at=remind_at),
            user_id="alice",
            task_id=task,
        )
        # The notifier's own handler (the worker runs the same function), as a worker process would.
        await deliver_reminders(alice.engine, [due], alice.state.settings)
        await notices.next("todo://notifications")
        inbox = json.loads((await host.read_resource("todo://notifications")).contents[0].text)  # type: ignore[union-attr]
        assert [item["task_id"] for item in inbox["notifications"]] == [task]


async def test_today_rolls_over_at_the_users_midnight(db_factory: DatabaseFactory) -> None:
    zone = ZoneInfo(ZONE)
    offset = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(UTC) + offset[0]

    notices = Notices()
    async with live_server(db_factory, "carol", clock) as carol, client(carol, "legacy", notices) as host:
        # From now on the server's clock is a quarter second before midnight in the user's zone.
        real = datetime.now(UTC)
        local_midnight = datetime.combine(real.astimezone(zone).date() + timedelta(days=1), datetime.min.time(), zone)
        offset[0] = local_midnight - timedelta(seconds=0.25) - real
        await host.subscribe_resource(TODAY_URI)
        await host.subscribe_resource(TODAY_URI)  # twice: still one subscription, one timer
        assert carol.state.live.counts()["timers"] == 1
        assert await notices.next(TODAY_URI) == [TODAY_URI]
        # Re-armed for the next midnight, a day away.
        assert carol.state.live.counts()["timers"] == 1
        handle, midnight = carol.state.live._timers[ZONE]
        assert midnight == local_midnight + timedelta(days=1)
        await host.unsubscribe_resource(TODAY_URI)
        assert carol.state.live.counts()["timers"] == 0 and handle.cancelled()


def before_midnight(zone: str, seconds: float) -> timedelta:
    """The offset that puts a clock `seconds` before the next midnight in `zone`."""
    real = datetime.now(UTC)
    local = ZoneInfo(zone)
    midnight = datetime.combine(real.astimezone(local).date() + timedelta(days=1), datetime.min.time(), local)
    return midnight - timedelta(seconds=seconds) - real


async def test_today_follows_the_users_new_zone(db_factory: DatabaseFactory) -> None:
    new_zone = "Asia/Tokyo"  # 7 or 8 hours ahead of Paris: its midnight is never Paris's
    offset = [timedelta(0)]
    monotonic = [0.0]  # the settings cache's clock

    def clock() -> datetime:
        return datetime.now(UTC) + offset[0]

    cache = UserSettingsCache(clock=lambda: monotonic[0])
    notices = Notices()
    async with live_server(db_factory, "dave", clock, cache) as dave, client(dave, "legacy", notices) as host:
        await host.subscribe_resource(TODAY_URI)
        assert set(dave.state.live._timers) == {ZONE}
        # `mcp-todo user set dave --timezone Asia/Tokyo`; the server's cache sees it once its entry expires.
        await set_user_settings(dave.engine, dave.state.settings, "dave", time_zone=new_zone)
        monotonic[0] += USER_CACHE_TTL_S + 1
        offset[0] = before_midnight(new_zone, 1.0)
        # The next request of the user (here the agenda's re-read) runs in the new zone: the hub re-files the
        # subscription there and says the agenda changed (its day may have).
        assert "Asia/Tokyo" in (await host.read_resource(TODAY_URI)).contents[0].text  # type: ignore[union-attr]
        assert set(dave.state.live._timers) == {new_zone}
        assert dave.state.live.counts() == {"users": 1, "listeners": 0, "legacy_uris": 1, "zones": 1, "timers": 1}
        assert await notices.next(TODAY_URI) == [TODAY_URI]
        # Then the roll-over at Tokyo's midnight, re-armed for the next.
        assert await notices.next(TODAY_URI) == [TODAY_URI]
        handle, midnight = dave.state.live._timers[new_zone]
        assert midnight.astimezone(ZoneInfo(new_zone)).time() == datetime.min.time()
        assert midnight - clock() > timedelta(hours=23)
        await host.unsubscribe_resource(TODAY_URI)
        assert dave.state.live.counts()["timers"] == 0 and handle.cancelled()


def test_the_agenda_of_20_long_tasks_fits_in_2_kb() -> None:
    from mcp_todo.db.tasks import Label, TaskRow

    zone = ZoneInfo(ZONE)
    start = datetime(2027, 3, 10, tzinfo=zone)
    end = start + timedelta(days=1)
    rows = [
        TaskRow(
            id=1_000_000 + i,
            user_id="alice",
            title="x" * 500,
            description=None,
            status="pending",
            priority="urgent",
            due_date=start + timedelta(hours=i % 30 - 6),
            time_zone=ZONE,
            category_id=None,
            recurrence_rule="FREQ=DAILY",
            series_id=None,
            series_start=None,
            series_start_wall=None,
            previous_task_id=None,
            remind_before_minutes=30,
            remind_at=start + timedelta(hours=20),
            reminder_sent=False,
            completed_at=None,
            created_at=start,
            updated_at=start,
            tags=tuple(Label(id=n, name="t" * 50, color=None) for n in range(5)),
        )
        for i in range(20)
    ]
    text = render_agenda(rows, 25, start.date(), start, end, ZONE)
    assert len(text.encode()) <= 2048, len(text.encode())
    assert text.splitlines()[0] == f"today 2027-03-10 Wed {ZONE}: 6 overdue, 14 due, 0 reminders"
    assert text.endswith("+5 more: list_tasks or get_overdue_tasks")


class _IdleSession:
    """What the SDK's listen handler writes to: a client that reads nothing and is told nothing."""

    async def send_notification(self, *_args: Any, **_kwargs: Any) -> None:
        return None


@dataclass
class _ListenContext:
    lifespan_context: AppState
    request_id: str
    session: _IdleSession = field(default_factory=_IdleSession)


async def test_10000_idle_subscriptions_cost_little_and_leak_nothing(alice: Live) -> None:
    hub: LiveHub = alice.state.live
    listen = LiveListen(HubBus())
    users = [f"user-{n}" for n in range(2000)]

    async def idle_listen(n: int) -> None:
        # A stream of one of 2,000 users (the in-process server acts for one: its user is set as LiveListen does).
        ctx = _ListenContext(alice.state, f"listen-{n}")
        params = SubscriptionsListenRequestParams.model_validate(
            {"notifications": {"resourceSubscriptions": [f"todo://tasks/{n + 1}"]}}
        )
        live._opening.set(live._Opening(hub, users[n % 2000], None))
        await listen._inner(ctx, params)  # type: ignore[arg-type]

    async def sent(_uri: str) -> None:
        return None

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # 5,000 listen streams (the SDK's handler: task, buffer, filter) and 5,000 legacy sessions.
        legacy = [hub.legacy_subscriber(users[n % 2000], sent) for n in range(5000)]
        for n, subscriber in enumerate(legacy):
            subscriber.subscribe(f"todo://tasks/{n + 1}", None)
        gc.collect()
        held_legacy = tracemalloc.get_traced_memory()[0] - before
        streams = [asyncio.create_task(idle_listen(n)) for n in range(5000)]
        for _ in range(3):  # each stream registers when its task first runs
            await asyncio.sleep(0)
        assert hub.counts()["listeners"] == 5000
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        per_subscriber = held / 10_000
        # A change of a user with no subscriber costs nothing; one with costs only its own subscribers.
        hub.publish("nobody", frozenset({TODAY_URI}))
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        for subscriber in legacy:
            subscriber.close()
        del streams, legacy
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(
        f"\nidle subscribers: {per_subscriber:.0f} B each on average; legacy session {held_legacy / 5000:.0f} B, "
        f"listen stream {(held - held_legacy) / 5000:.0f} B; 10,000 held {held / 1e6:.1f} MB, {after} B left after"
    )
    assert hub.counts() == {"users": 0, "listeners": 0, "legacy_uris": 0, "zones": 0, "timers": 0}
    assert per_subscriber < 8_000
    assert after < held / 20, (after, held)


async def test_a_users_listen_streams_and_sessions_move_to_their_new_zone_together() -> None:
    hub = LiveHub(lambda: datetime.now(UTC))
    heard: list[object] = []

    async def sent(_uri: str) -> None:
        return None

    remove = hub.add_listener("erin", heard.append, ZONE)
    session = hub.legacy_subscriber("erin", sent)
    session.subscribe(TODAY_URI, ZONE)
    hub.add_listener("frank", heard.append, ZONE)  # another user in the same zone stays there
    hub.zone_seen("erin", ZONE)  # the same zone: nothing moves, nothing is told
    assert heard == [] and set(hub._zones) == {ZONE}
    hub.zone_seen("erin", "Asia/Tokyo")
    assert hub._zones == {ZONE: {"frank"}, "Asia/Tokyo": {"erin"}} and set(hub._timers) == {ZONE, "Asia/Tokyo"}
    assert heard == [ResourceUpdated(uri=TODAY_URI)]  # erin's stream (frank's hears nothing of erin)
    remove()
    assert set(hub._timers) == {ZONE, "Asia/Tokyo"}  # the session still holds erin's subscription there
    session.close()
    assert set(hub._timers) == {ZONE} and hub.counts()["zones"] == 1


async def test_a_stuck_legacy_session_is_dropped_and_its_backlog_never_grows() -> None:
    hub = LiveHub(lambda: datetime.now(UTC), send_timeout_s=0.05)
    released = asyncio.Event()

    async def stuck(_uri: str) -> None:
        await released.wait()

    subscriber = hub.legacy_subscriber("dave", stuck)
    subscriber.subscribe("todo://tasks/1", None)
    subscriber.subscribe(TODAY_URI, None)
    for _ in range(1000):
        hub.publish("dave", frozenset({"todo://tasks/1", TODAY_URI}))
    assert len(subscriber._pending) <= 2  # a set of URIs, not a queue of notices
    closed = asyncio.Event()
    for _ in range(100):
        if subscriber.closed:
            closed.set()
            break
        await asyncio.sleep(0.02)
    assert closed.is_set(), "the stuck session was not dropped"
    assert hub.counts() == {"users": 0, "listeners": 0, "legacy_uris": 0, "zones": 0, "timers": 0}


class _StuckSession:
    """A client that took the acknowledgement and then stopped reading: every later write waits."""

    def __init__(self) -> None:
        self.writes = 0
        self.released = asyncio.Event()

    async def send_notification(self, *_args: Any, **_kwargs: Any) -> None:
        self.writes += 1
        if self.writes > 1:
            await self.released.wait()


async def test_a_listen_stream_that_is_not_read_is_ended_at_its_buffer(alice: Live) -> None:
    hub = LiveHub(lambda: datetime.now(UTC))
    listen = LiveListen(HubBus())
    session = _StuckSession()
    ctx = _ListenContext(alice.state, "listen-stuck", session)  # type: ignore[arg-type]
    params = SubscriptionsListenRequestParams.model_validate(
        {"notifications": {"resourceSubscriptions": ["todo://tasks/1"]}}
    )
    live._opening.set(live._Opening(hub, "erin", None))
    stream = asyncio.create_task(listen._inner(ctx, params))  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)
    for _ in range(500):  # far past the buffer: the stream is ended, nothing queues beyond it
        hub.publish("erin", frozenset({"todo://tasks/1"}))
    assert not stream.done()
    session.released.set()  # the client reads again: the stream drains what it held and closes with its result
    result = await asyncio.wait_for(stream, NOTICE_TIMEOUT_S)
    assert result.meta is not None and result.meta["io.modelcontextprotocol/subscriptionId"] == "listen-stuck"
    assert session.writes <= 2 + 64  # the acknowledgement, the buffer, nothing more
    assert hub.counts()["listeners"] == 0


async def test_the_live_resources_are_listed(alice: Live) -> None:
    async with client(alice, "legacy") as host:
        listed = {str(resource.uri) for resource in (await host.list_resources()).resources}
        templates = [template.uri_template for template in (await host.list_resource_templates()).resource_templates]
    assert {TODAY_URI, "todo://notifications"} <= listed
    assert templates == ["todo://tasks/{id}"]


async def test_a_task_uri_whose_id_no_task_can_have_is_not_found(alice: Live) -> None:
    async with client(alice, "legacy") as host:
        # "²" and "١٢" are digits to str.isdigit, not to the subscription's pattern ("²" not to int() either).
        for uri in ("todo://tasks/²", "todo://tasks/١٢", "todo://tasks/9999999999999999999", "todo://tasks/0"):
            with pytest.raises(MCPError) as raised:
                await host.read_resource(uri)
            assert str(raised.value).startswith(("NOT_FOUND", "VALIDATION_ERROR")), (uri, raised.value)


async def test_the_database_feed_reconnects_promptly_after_each_of_several_losses(database_dsn: str) -> None:
    """Each loss of the LISTEN connection is retried from the first backoff step once the feed listened again, not
    from a step that grew with every loss in the process's life (the fourth would wait 2-4 s)."""
    stop = asyncio.Event()
    feed = asyncio.create_task(_DatabaseFeed(database_dsn, lambda *_: None, outbox=False).run(stop))
    engine = create_engine(database_dsn, pool_size=1)
    listening = text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN \"mcp_todo_inbox\"'"
    )

    async def listener_pid() -> int:
        async with asyncio.timeout(NOTICE_TIMEOUT_S):
            while True:
                async with engine.connect() as conn:
                    pid = await conn.scalar(listening)
                if pid is not None:
                    return int(pid)
                await asyncio.sleep(0.02)

    try:
        pid = await listener_pid()
        for _ in range(4):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            lost_at = time.monotonic()
            pid = await listener_pid()
            assert time.monotonic() - lost_at < 1.5
    finally:
        stop.set()
        await feed
        await engine.dispose()


async def test_a_wide_gap_in_the_outbox_ids_does_not_hold_the_loop(database_dsn: str) -> None:
    """Local mode: the ids between the last row read and the next are remembered (their transactions may commit
    later) up to a bound; a gap of millions (a large import rolled back, a sequence moved on) is not walked id by id."""
    heard = asyncio.Event()
    stop = asyncio.Event()
    feed = asyncio.create_task(_DatabaseFeed(database_dsn, lambda *_: heard.set(), outbox=True).run(stop))
    engine = create_engine(database_dsn, pool_size=1)
    try:
        async with asyncio.timeout(NOTICE_TIMEOUT_S):
            while True:  # the feed has read where the outbox ends
                async with engine.connect() as conn:
                    started = await conn.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND (query = 'LISTEN \"mcp_todo_outbox\"' OR query LIKE '%FROM outbox WHERE id > $1%')"
                        )
                    )
                if started:
                    break
                await asyncio.sleep(0.02)
        ctx = Ctx(engine=engine, user_id="alice", settings=settings_for(database_dsn, "alice"))
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT setval(s, nextval(s) + 50000000) FROM pg_get_serial_sequence('outbox', 'id') AS s")
            )
        committing = time.monotonic()
        await add_task(ctx, "after the gap")
        async with asyncio.timeout(NOTICE_TIMEOUT_S):
            await heard.wait()
        assert time.monotonic() - committing < 1.0
    finally:
        stop.set()
        await feed
        await engine.dispose()
