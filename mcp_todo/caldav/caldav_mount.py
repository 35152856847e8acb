"""Where the CalDAV app joins the HTTP server: `/dav/…` and `/.well-known/caldav` on its Starlette app."""

from __future__ import annotations

from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import Route

from mcp_todo.caldav.dav_methods import PREFIX, WELL_KNOWN, CalDav
from mcp_todo.server.oauth import auth_options
from mcp_todo.server.state import AppState


def mount_caldav(
    app: Starlette, state: AppState, security: TransportSecuritySettings | None, public_url: str | None
) -> None:
    """Serve CalDAV on `app` (ahead of its own routes), with the same tokens as /mcp when `public_url` is set (a
    server without tokens, --insecure-local, acts for MCP_TODO_USER) and the same Host/Origin checks."""
    verifier = None
    if public_url is not None:
        verifier = auth_options(state.settings, public_url, lambda: state.engine)["token_verifier"]
    dav = CalDav(state, security, verifier, list(state.settings.oauth_scope_list) if public_url is not None else [])
    # An ASGI app as a route's endpoint takes every method (PROPFIND, REPORT, MKCALENDAR…).
    routes = [
        Route(WELL_KNOWN, dav),
        Route(WELL_KNOWN + "/", dav),
        Route(PREFIX, dav),
        Route(PREFIX + "/{rest:path}", dav),
    ]
    app.router.routes[0:0] = routes
