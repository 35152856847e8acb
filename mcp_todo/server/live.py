"""Subscribing to the live resources over MCP, on both protocol eras (docs/live.md):

- 2025 era: `resources/subscribe` / `resources/unsubscribe` on a session with a channel back to the client (stdio,
  SSE), answered by `notifications/resources/updated`. Stateless streamable HTTP has no such channel: there a
  subscribe is refused with a message pointing at `subscriptions/listen`.
- 2026-07-28: `subscriptions/listen`, served by the SDK's `ListenHandler` over `HubBus`, the `SubscriptionBus` that
  registers each stream under the user it was opened by, so a stream hears of that user's changes only.

Both register in the server state's `LiveHub`, which the live feed publishes to (`mcp_todo.pipeline.live`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ServerEvent
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from mcp_todo.pipeline.live import NOTIFICATIONS_URI, TASK_URI_PREFIX, TODAY_URI
from mcp_todo.server.live_hub import (
    LISTEN_BUFFER,
    MAX_URIS_PER_SUBSCRIBER,
    LegacySubscriber,
    LiveHub,
    SubscriptionLimitError,
)
from mcp_todo.server.state import AppState

log = logging.getLogger(__name__)

# Listen streams of the whole process (the SDK's own bound, above the per-user one).
MAX_LISTENS: Final = 20_000
_TASK_URI: Final = re.compile(re.escape(TASK_URI_PREFIX) + r"[1-9][0-9]{0,18}")
_LEGACY_KEY: Final = "mcp_todo.live"


def check_uri(uri: str) -> None:
    """INVALID_PARAMS unless `uri` is a live resource: todo://today, todo://notifications or todo://tasks/{id}."""
    if uri in (TODAY_URI, NOTIFICATIONS_URI) or _TASK_URI.fullmatch(uri):
        return
    raise MCPError(
        INVALID_PARAMS,
        f"cannot subscribe to {uri[:100]!r}: the live resources are {TODAY_URI}, {NOTIFICATIONS_URI} and "
        f"{TASK_URI_PREFIX}{{id}}",
    )


async def _today_zone(state: AppState, user: str) -> str:
    """The zone the user's `todo://today` rolls over in (their own, else the server's)."""
    return (await state.user_settings_for_request(user)).time_zone


@dataclass(frozen=True)
class _Opening:
    hub: LiveHub
    user: str
    today_zone: str | None


# Set by `LiveListen` while the SDK's handler runs, so the bus knows whose stream subscribes.
_opening: ContextVar[_Opening | None] = ContextVar("mcp_todo_live_opening", default=None)


class HubBus:
    """The `SubscriptionBus` given to the MCPServer: `subscribe` registers a listen stream in the hub under the
    user who opened it. Events come from the live feed, per user, through the hub; `publish` (the SDK's
    `ctx.notify_resource_updated`, which names no user) is not used by this server and delivers nothing, since a
    user-less event would reach every user's streams."""

    async def publish(self, event: ServerEvent) -> None:
        log.debug("live: a user-less event was not delivered", extra={"event": type(event).__name__})

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        opening = _opening.get()
        if opening is None:
            return lambda: None
        return opening.hub.add_listener(opening.user, listener, opening.today_zone)


class LiveListen:
    """`subscriptions/listen`: checks the URIs and the user's stream count, then serves the stream with the SDK's
    handler (acknowledgement, `_meta` stamping, a bounded buffer that ends a stream its client does not read)."""

    def __init__(self, bus: HubBus) -> None:
        self._inner = ListenHandler(bus, max_subscriptions=MAX_LISTENS, max_buffered_events=LISTEN_BUFFER)

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        state: AppState = ctx.lifespan_context
        user = state.user_for_request()
        uris = params.notifications.resource_subscriptions or []
        if len(uris) > MAX_URIS_PER_SUBSCRIBER:
            raise MCPError(INVALID_PARAMS, f"at most {MAX_URIS_PER_SUBSCRIBER} resources per subscriptions/listen")
        for uri in uris:
            check_uri(uri)
        try:
            state.live.check_listen(user)
        except SubscriptionLimitError as err:
            raise MCPError(INVALID_REQUEST, str(err)) from None
        zone = await _today_zone(state, user) if TODAY_URI in uris else None
        token = _opening.set(_Opening(state.live, user, zone))
        try:
            return await self._inner(ctx, params)
        finally:
            _opening.reset(token)


async def _subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
    uri = str(params.uri)
    check_uri(uri)
    state: AppState = ctx.lifespan_context
    subscriber = _legacy_subscriber(ctx, state)
    zone = await _today_zone(state, subscriber.user) if uri == TODAY_URI else None
    try:
        subscriber.subscribe(uri, zone)
    except SubscriptionLimitError as err:
        raise MCPError(INVALID_REQUEST, str(err)) from None
    return EmptyResult()


async def _unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
    subscriber = _connection(ctx).state.get(_LEGACY_KEY)
    if isinstance(subscriber, LegacySubscriber):
        subscriber.unsubscribe(str(params.uri))
    return EmptyResult()


def _connection(ctx: ServerRequestContext[Any, Any]) -> Any:
    # The session's Connection holds the per-connection state and the teardown run when the client goes; the SDK
    # gives a request handler its session only.
    return ctx.session._connection


def _legacy_subscriber(ctx: ServerRequestContext[Any, Any], state: AppState) -> LegacySubscriber:
    connection = _connection(ctx)
    subscriber = connection.state.get(_LEGACY_KEY)
    if isinstance(subscriber, LegacySubscriber) and not subscriber.closed:
        return subscriber
    if not connection.has_standalone_channel:
        raise MCPError(
            INVALID_REQUEST,
            "this connection cannot carry notifications (stateless HTTP): use subscriptions/listen (protocol "
            "2026-07-28), or stdio",
        )
    subscriber = state.live.legacy_subscriber(state.user_for_request(), ctx.session.send_resource_updated)
    connection.state[_LEGACY_KEY] = subscriber
    connection.exit_stack.callback(subscriber.close)
    return subscriber


def register_subscriptions(server: MCPServer[AppState], bus: HubBus) -> None:
    """Serve both eras' subscribe requests (and so advertise `resources.subscribe`)."""
    # MCPServer registers its own listen handler over the bus and none for the legacy methods; the low-level server
    # is where a request handler is added.
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, LiveListen(bus))
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _unsubscribe)
