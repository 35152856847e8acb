"""Who listens to which live resource in this process, per user (docs/live.md).

The feed (`mcp_todo.pipeline.live`) calls `LiveHub.publish(user, uris)` for every change; the hub hands it to that
user's subscribers only, and does nothing when the user has none. Two kinds of subscriber:

- a `subscriptions/listen` stream (2026-07-28): the SDK's listen handler, given the events as a `SubscriptionBus`
  listener that filters them by the stream's own URIs and bounds its own buffer;
- a legacy session (`resources/subscribe`): a `LegacySubscriber` per session, with its set of URIs. What it has not
  sent yet is a set of URIs too (a change is a level trigger: "re-read this"), so its backlog can never exceed what
  it subscribed to; a session whose send is stuck for SEND_TIMEOUT_S is dropped and its subscriptions freed.

`todo://today` changes by itself at the user's midnight: one timer per zone with today-subscribers (not one per
subscriber) publishes it then. A user's today-subscriptions are filed under one zone, the one their latest request ran
in (`zone_seen`, called with each request's settings): when that changes (`mcp-todo user set --timezone`, a token's
`zoneinfo`), they move to the new zone's timer. Nothing here reads the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from mcp.shared.subscriptions import ResourceUpdated, ServerEvent

from mcp_todo.pipeline.live import TODAY_URI
from mcp_todo.service.agenda import day_bounds

log = logging.getLogger(__name__)

# Per session (legacy) and per user (listen streams); URIs per legacy session or listen stream.
MAX_LISTENS_PER_USER: Final = 32
MAX_URIS_PER_SUBSCRIBER: Final = 256
# A listen stream's buffer (events not yet written): when full, the SDK ends the stream with its final result.
LISTEN_BUFFER: Final = 64
SEND_TIMEOUT_S: Final = 10.0

Listener = Callable[[ServerEvent], None]
Send = Callable[[str], Coroutine[Any, Any, None]]


class SubscriptionLimitError(Exception):
    """Too many subscriptions: the message says which limit."""


@dataclass
class _UserSubscribers:
    listeners: dict[object, Listener] = field(default_factory=dict)
    legacy: dict[str, set[LegacySubscriber]] = field(default_factory=dict)

    def empty(self) -> bool:
        return not self.listeners and not self.legacy


class LegacySubscriber:
    """One legacy session's subscriptions: its URIs, what is still to be sent, and the task sending it (only while
    there is something to send)."""

    __slots__ = ("_hub", "_pending", "_send", "_sender", "closed", "uris", "user")

    def __init__(self, hub: LiveHub, user: str, send: Send) -> None:
        self._hub = hub
        self.user = user
        self._send = send
        self.uris: set[str] = set()
        self._pending: dict[str, None] = {}  # an ordered set
        self._sender: asyncio.Task[None] | None = None
        self.closed = False

    def subscribe(self, uri: str, zone: str | None) -> None:
        if self.closed or uri in self.uris:
            return
        if len(self.uris) >= MAX_URIS_PER_SUBSCRIBER:
            raise SubscriptionLimitError(f"at most {MAX_URIS_PER_SUBSCRIBER} subscriptions per session")
        self.uris.add(uri)
        self._hub._add_legacy(self, uri, zone)

    def unsubscribe(self, uri: str) -> None:
        if uri in self.uris:
            self.uris.discard(uri)
            self._pending.pop(uri, None)
            self._hub._remove_legacy(self, uri)

    def changed(self, uri: str) -> None:
        self._pending[uri] = None
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_pending())

    async def _send_pending(self) -> None:
        try:
            while self._pending and not self.closed:
                uri = next(iter(self._pending))
                del self._pending[uri]
                try:
                    async with asyncio.timeout(self._hub.send_timeout_s):
                        await self._send(uri)
                except TimeoutError:
                    log.warning("live: dropped a slow subscriber", extra={"user": self.user, "uris": len(self.uris)})
                    self.close()
                except Exception as exc:  # the session is gone (closed stream, broken pipe): free it
                    log.info("live: subscriber gone", extra={"user": self.user, "error": exc.__class__.__name__})
                    self.close()
        finally:
            self._sender = None

    def close(self) -> None:
        """Free every subscription of this session (its disconnect, or its drop)."""
        if self.closed:
            return
        self.closed = True
        for uri in list(self.uris):
            self.unsubscribe(uri)
        self._pending.clear()
        sender, self._sender = self._sender, None
        if sender is not None and sender is not asyncio.current_task():
            sender.cancel()


class LiveHub:
    """This process's live subscribers by user, and the midnight timers of `todo://today`."""

    def __init__(self, clock: Callable[[], datetime], *, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        self._clock = clock
        self.send_timeout_s = send_timeout_s
        self._users: dict[str, _UserSubscribers] = {}
        # user → (the zone their today-subscriptions are filed under, how many); zone → its users; each zone's
        # timer and the midnight it waits for
        self._today: dict[str, tuple[str, int]] = {}
        self._zones: dict[str, set[str]] = {}
        self._timers: dict[str, tuple[asyncio.TimerHandle, datetime]] = {}

    # --- publishing ---------------------------------------------------------------------------------------------

    def publish(self, user: str, uris: frozenset[str]) -> None:
        """These resources of `user` changed: tell that user's subscribers here (nothing when there are none)."""
        subscribers = self._users.get(user)
        if subscribers is None:
            return
        for uri in uris:
            for legacy in subscribers.legacy.get(uri, ()):
                legacy.changed(uri)
        if subscribers.listeners:
            events = [ResourceUpdated(uri=uri) for uri in uris]
            for listener in list(subscribers.listeners.values()):
                for event in events:
                    try:
                        listener(event)
                    except Exception:  # the fan-out's edge: one listener must not starve the others
                        log.exception("live: a listener failed")

    # --- listen streams -----------------------------------------------------------------------------------------

    def check_listen(self, user: str) -> None:
        subscribers = self._users.get(user)
        if subscribers is not None and len(subscribers.listeners) >= MAX_LISTENS_PER_USER:
            raise SubscriptionLimitError(f"at most {MAX_LISTENS_PER_USER} open subscriptions/listen streams per user")

    def add_listener(self, user: str, listener: Listener, today_zone: str | None) -> Callable[[], None]:
        """Register a listen stream's listener; the idempotent callable returned removes it."""
        token = object()
        self._users.setdefault(user, _UserSubscribers()).listeners[token] = listener
        if today_zone is not None:
            self._add_today(user, today_zone)

        def remove() -> None:
            subscribers = self._users.get(user)
            if subscribers is None or subscribers.listeners.pop(token, None) is None:
                return
            if today_zone is not None:
                self._remove_today(user)
            self._forget_if_empty(user, subscribers)

        return remove

    # --- legacy sessions ----------------------------------------------------------------------------------------

    def legacy_subscriber(self, user: str, send: Send) -> LegacySubscriber:
        return LegacySubscriber(self, user, send)

    def _add_legacy(self, subscriber: LegacySubscriber, uri: str, zone: str | None) -> None:
        self._users.setdefault(subscriber.user, _UserSubscribers()).legacy.setdefault(uri, set()).add(subscriber)
        if uri == TODAY_URI:
            self._add_today(subscriber.user, zone or "UTC")  # the caller gives the user's zone; UTC only guards

    def _remove_legacy(self, subscriber: LegacySubscriber, uri: str) -> None:
        subscribers = self._users.get(subscriber.user)
        if subscribers is None:
            return
        holders = subscribers.legacy.get(uri)
        if holders is not None:
            holders.discard(subscriber)
            if not holders:
                del subscribers.legacy[uri]
        if uri == TODAY_URI:
            self._remove_today(subscriber.user)
        self._forget_if_empty(subscriber.user, subscribers)

    def _forget_if_empty(self, user: str, subscribers: _UserSubscribers) -> None:
        if subscribers.empty() and self._users.get(user) is subscribers:
            del self._users[user]

    # --- midnight -----------------------------------------------------------------------------------------------

    def zone_seen(self, user: str, zone: str) -> None:
        """`user`'s request ran in `zone`: if their today-subscriptions are filed under another, move them to this
        zone's timer and tell them the agenda changed (its day may have). A dict look-up when nothing changed."""
        filed = self._today.get(user)
        if filed is None or filed[0] == zone:
            return
        old, count = filed
        self._unfile(user, old)
        self._today[user] = (zone, count)
        self._file(user, zone)
        log.info("live: today follows a new zone", extra={"user": user, "zone": zone, "was": old})
        self.publish(user, frozenset({TODAY_URI}))

    def _add_today(self, user: str, zone: str) -> None:
        filed = self._today.get(user)
        if filed is None:
            self._today[user] = (zone, 1)
            self._file(user, zone)
            return
        self._today[user] = (filed[0], filed[1] + 1)
        self.zone_seen(user, zone)

    def _remove_today(self, user: str) -> None:
        filed = self._today.get(user)
        if filed is None:
            return
        zone, count = filed
        if count > 1:
            self._today[user] = (zone, count - 1)
            return
        del self._today[user]
        self._unfile(user, zone)

    def _file(self, user: str, zone: str) -> None:
        self._zones.setdefault(zone, set()).add(user)
        if zone not in self._timers:
            self._arm(zone)

    def _unfile(self, user: str, zone: str) -> None:
        users = self._zones.get(zone)
        if users is None:
            return
        users.discard(user)
        if not users:
            del self._zones[zone]
            timer = self._timers.pop(zone, None)
            if timer is not None:
                timer[0].cancel()

    def _arm(self, zone: str, midnight: datetime | None = None) -> None:
        if midnight is None:
            _, _, midnight = day_bounds(self._clock(), zone)
        delay_s = max(0.0, (midnight - self._clock()).total_seconds())
        handle = asyncio.get_running_loop().call_later(delay_s, self._midnight, zone, midnight)
        self._timers[zone] = (handle, midnight)

    def _midnight(self, zone: str, midnight: datetime) -> None:
        if zone not in self._zones:
            self._timers.pop(zone, None)
            return
        if self._clock() < midnight:  # the loop's clock ran ahead of the wall clock: wait for the rest
            self._arm(zone, midnight)
            return
        log.info("live: midnight", extra={"zone": zone, "users": len(self._zones[zone])})
        for user in list(self._zones[zone]):
            self.publish(user, frozenset({TODAY_URI}))
        self._arm(zone)

    # --- figures (tests, docs) ----------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {
            "users": len(self._users),
            "listeners": sum(len(s.listeners) for s in self._users.values()),
            "legacy_uris": sum(len(h) for s in self._users.values() for h in s.legacy.values()),
            "zones": len(self._zones),
            "timers": len(self._timers),
        }
