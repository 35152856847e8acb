"""The CalDAV server: one ASGI app for `/dav/…` and `/.well-known/caldav`.

Layout: `/dav/<user>/` is the user's principal and calendar home; in it, `tasks/` holds the tasks without a category
and `cat-<id>/` (or the segment a client chose when it created it) one category's; `<collection>/<uid>.ics` (or the
name a client PUT it under) is one task. Every request is authenticated (HTTP Basic with the user's name and an
`mtd_` token, or a Bearer token, as for /mcp); another user's paths are 404, never listed.

Reads run in one REPEATABLE READ transaction, so a sync token and the changes it closes are one snapshot; VTODOs are
rendered and filtered in a worker thread, off the event loop. Writes go through the service layer (mcp_todo.service).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import asyncpg
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mcp_todo.caldav import davxml
from mcp_todo.caldav.calendar_filters import matches
from mcp_todo.caldav.davxml import CALDAV, CS, DAV, ICAL, element, tag
from mcp_todo.caldav.davxml import Response as DavResponse
from mcp_todo.caldav.vtodo import CONTENT_TYPE, etag, href_name, read_put, render
from mcp_todo.db import dav as dav_db
from mcp_todo.domain.errors import (
    ConflictError,
    LimitExceededError,
    NotFoundError,
    TodoError,
    UnavailableError,
    ValidationError,
)
from mcp_todo.metrics import DAV_DURATION, DAV_REQUESTS
from mcp_todo.server.state import AppState
from mcp_todo.service import dav_tasks
from mcp_todo.service.context import Ctx, translate_db_error
from mcp_todo.service.users import effective_settings

log = logging.getLogger(__name__)

PREFIX: Final = "/dav"
WELL_KNOWN: Final = "/.well-known/caldav"
UNCATEGORISED: Final = "tasks"
UNCATEGORISED_NAME: Final = "Tasks"
SYNC_PREFIX: Final = "urn:mcp-todo:sync:"
ALLOW: Final = "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, REPORT, MKCALENDAR, MOVE"
CHALLENGE: Final = 'Basic realm="mcp-todo", charset="UTF-8"'
_XML: Final = "application/xml; charset=utf-8"
_ITEM_CONTENT_TYPE: Final = CONTENT_TYPE
_STATUS_OF: Final[dict[type[TodoError], int]] = {
    ValidationError: 400,
    NotFoundError: 404,
    ConflictError: 409,
    LimitExceededError: 403,
    UnavailableError: 503,
}


class _Answer(Exception):
    """Ends a request with this response."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain; charset=utf-8", headers=headers)


def _xml(body: bytes, status: int = 207, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=_XML, headers=headers)


@dataclass(frozen=True)
class Collection:
    category_id: int | None
    segment: str
    name: str
    color: str | None


@dataclass(frozen=True)
class Target:
    """What a request path names: the root, a principal/home, a collection, or an item in one."""

    user: str | None = None
    segment: str | None = None
    name: str | None = None


def parse_path(path: str) -> Target:
    parts = [unquote(part) for part in path[len(PREFIX) :].split("/") if part]
    if len(parts) > 3:
        raise _Answer(_text(404, "no such resource"))
    return Target(*parts)


class CalDav:
    """The ASGI app. `verifier` is None on a server without tokens (--insecure-local): it acts for
    MCP_TODO_USER, as /mcp does."""

    def __init__(
        self,
        state: AppState,
        security: TransportSecuritySettings | None,
        verifier: TokenVerifier | None,
        required_scopes: list[str],
    ) -> None:
        self.state = state
        self.check = TransportSecurityMiddleware(security) if security is not None else None
        self.verifier = verifier
        self.required_scopes = required_scopes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        started = time.perf_counter()
        method = request.method.upper()
        try:
            response = await self.handle(request, method)
        except _Answer as answer:
            response = answer.response
        except sa_exc.DBAPIError as err:
            translated = translate_db_error(err)
            if translated is None:
                raise
            response = _text(_status_of(translated), str(translated), _retry(translated))
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as err:
            # The pool could not open a connection at all (the database is down, refusing, or too busy).
            log.info("caldav request refused: database unreachable", extra={"error": err.__class__.__name__})
            response = _text(503, "the database is unreachable — try again shortly", {"Retry-After": "5"})
        except TodoError as err:
            status = _status_of(err)
            if status == 500:
                log.exception("caldav request failed", extra={"method": method, "path": scope["path"][:200]})
                response = _text(500, "the server could not complete the request")
            else:
                response = _text(status, str(err), _retry(err))
        label = method if method in ALLOW else "OTHER"
        DAV_REQUESTS.labels(label, str(response.status_code)).inc()
        DAV_DURATION.labels(label).observe(time.perf_counter() - started)
        await response(scope, receive, send)

    async def handle(self, request: Request, method: str) -> Response:
        if self.check is not None:
            refusal = await self.check.validate_request(request, is_post=False)
            if refusal is not None:
                return refusal
        path = request.url.path
        if path.rstrip("/") == WELL_KNOWN:
            return Response(status_code=301, headers={"Location": f"{PREFIX}/"})
        if method == "OPTIONS":
            return Response(
                status_code=200,
                headers={"DAV": "1, 3, calendar-access, extended-mkcol", "Allow": ALLOW, "Content-Length": "0"},
            )
        user, access = await self.authenticate(request)
        target = parse_path(path)
        if target.user is not None and target.user != user:
            return _text(404, "no such resource")
        ctx = await self.context(user, access)
        body = await request.body()
        if target.user is None:
            return await self.root(request, method, body, user)
        if target.segment is None:
            return await self.home(request, method, body, ctx)
        if target.name is None:
            return await self.collection(request, method, body, ctx, target.segment)
        return await self.item(request, method, body, ctx, target.segment, target.name)

    # --- who ------------------------------------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> tuple[str, AccessToken | None]:
        if self.verifier is None:
            return self.state.settings.user, None
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        access: AccessToken | None = None
        claimed_user: str | None = None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            claimed_user, _, password = decoded.partition(":")
            access = await self.verifier.verify_token(password) if password else None
        elif scheme.lower() == "bearer" and credentials.strip():
            access = await self.verifier.verify_token(credentials.strip())
        if access is None or not access.subject or (claimed_user is not None and claimed_user != access.subject):
            raise _Answer(
                _text(
                    401,
                    "sign in with your user name and an mtd_ token (mcp-todo token create) as the password, "
                    "or a Bearer token",
                    {"WWW-Authenticate": CHALLENGE},
                )
            )
        missing = [scope for scope in self.required_scopes if scope not in access.scopes]
        if missing:
            raise _Answer(_text(403, f"the token lacks the scope(s) {', '.join(missing)}"))
        return access.subject, access

    async def context(self, user: str, access: AccessToken | None) -> Ctx:
        state = self.state
        stored = await state.user_settings.get(state.engine, state.settings, user)
        claimed = (access.claims or {}).get("zoneinfo") if access is not None else None
        own = effective_settings(state.settings, stored, claimed)
        return Ctx(
            engine=state.engine,
            user_id=user,
            settings=state.settings,
            now=state.clock(),
            time_zone=own.time_zone,
            user_lead_minutes=own.lead_minutes,
        )

    # --- reads ------------------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """One read-only REPEATABLE READ transaction: what it reads and the sync token it hands out agree."""
        async with self.state.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                yield conn

    async def collections(self, conn: AsyncConnection, user: str) -> list[Collection]:
        found = [Collection(None, UNCATEGORISED, UNCATEGORISED_NAME, None)]
        for row in await dav_db.categories(conn, user):
            found.append(Collection(row.category_id, row.segment or f"cat-{row.category_id}", row.name, row.color))
        return found

    async def find_collection(self, conn: AsyncConnection, user: str, segment: str) -> Collection | None:
        if segment == UNCATEGORISED:
            return Collection(None, UNCATEGORISED, UNCATEGORISED_NAME, None)  # no query: the most polled collection
        for collection in await self.collections(conn, user):
            if collection.segment == segment or (
                collection.category_id is not None and segment == f"cat-{collection.category_id}"
            ):
                return collection
        return None

    def home_href(self, user: str) -> str:
        return f"{PREFIX}/{quote(user, safe='')}/"

    def collection_href(self, user: str, collection: Collection) -> str:
        return f"{self.home_href(user)}{quote(collection.segment, safe='')}/"

    def principal_props(self, user: str) -> dict[str, Callable[[], ET.Element]]:
        home = self.home_href(user)
        return {
            tag(DAV, "resourcetype"): lambda: element(
                tag(DAV, "resourcetype"), None, element(tag(DAV, "collection")), element(tag(DAV, "principal"))
            ),
            tag(DAV, "displayname"): lambda: element(tag(DAV, "displayname"), user),
            tag(DAV, "current-user-principal"): lambda: element(
                tag(DAV, "current-user-principal"), None, element(tag(DAV, "href"), home)
            ),
            tag(DAV, "principal-URL"): lambda: element(
                tag(DAV, "principal-URL"), None, element(tag(DAV, "href"), home)
            ),
            tag(CALDAV, "calendar-home-set"): lambda: element(
                tag(CALDAV, "calendar-home-set"), None, element(tag(DAV, "href"), home)
            ),
            tag(CALDAV, "calendar-user-address-set"): lambda: element(tag(CALDAV, "calendar-user-address-set")),
            tag(DAV, "owner"): lambda: element(tag(DAV, "owner"), None, element(tag(DAV, "href"), home)),
            tag(DAV, "current-user-privilege-set"): _privileges,
            tag(DAV, "supported-report-set"): lambda: _reports(sync=False),
        }

    def collection_props(
        self, user: str, collection: Collection, ctag: str, token: str
    ) -> dict[str, Callable[[], ET.Element]]:
        home = self.home_href(user)
        props: dict[str, Callable[[], ET.Element]] = {
            tag(DAV, "resourcetype"): lambda: element(
                tag(DAV, "resourcetype"), None, element(tag(DAV, "collection")), element(tag(CALDAV, "calendar"))
            ),
            tag(DAV, "displayname"): lambda: element(tag(DAV, "displayname"), collection.name),
            tag(CALDAV, "supported-calendar-component-set"): lambda: element(
                tag(CALDAV, "supported-calendar-component-set"), None, _comp("VTODO")
            ),
            tag(CALDAV, "calendar-description"): lambda: element(
                tag(CALDAV, "calendar-description"),
                "mcp-todo tasks without a category"
                if collection.category_id is None
                else f"mcp-todo tasks in the category {collection.name}",
            ),
            tag(CS, "getctag"): lambda: element(tag(CS, "getctag"), f'"{ctag}"'),
            tag(DAV, "sync-token"): lambda: element(tag(DAV, "sync-token"), token),
            tag(DAV, "owner"): lambda: element(tag(DAV, "owner"), None, element(tag(DAV, "href"), home)),
            tag(DAV, "current-user-principal"): lambda: element(
                tag(DAV, "current-user-principal"), None, element(tag(DAV, "href"), home)
            ),
            tag(DAV, "current-user-privilege-set"): _privileges,
            tag(DAV, "supported-report-set"): lambda: _reports(sync=True),
            tag(CALDAV, "supported-calendar-data"): lambda: element(
                tag(CALDAV, "supported-calendar-data"),
                None,
                ET.Element(tag(CALDAV, "calendar-data"), {"content-type": "text/calendar", "version": "2.0"}),
            ),
            tag(DAV, "getcontenttype"): lambda: element(tag(DAV, "getcontenttype"), "text/calendar"),
        }
        if collection.color:
            props[tag(ICAL, "calendar-color")] = lambda: element(tag(ICAL, "calendar-color"), collection.color)
        return props

    def item_props(self, row: Any, data: bytes | None) -> dict[str, Callable[[], ET.Element]]:
        return {
            tag(DAV, "getetag"): lambda: element(tag(DAV, "getetag"), etag(row)),
            tag(DAV, "getcontenttype"): lambda: element(tag(DAV, "getcontenttype"), _ITEM_CONTENT_TYPE),
            tag(DAV, "resourcetype"): lambda: element(tag(DAV, "resourcetype")),
            tag(DAV, "displayname"): lambda: element(tag(DAV, "displayname"), row["title"]),
            tag(DAV, "getlastmodified"): lambda: element(
                tag(DAV, "getlastmodified"), row["updated_at"].strftime("%a, %d %b %Y %H:%M:%S GMT")
            ),
            tag(CALDAV, "calendar-data"): lambda: element(tag(CALDAV, "calendar-data"), (data or b"").decode("utf-8")),
        }

    async def root(self, request: Request, method: str, body: bytes, user: str) -> Response:
        if method != "PROPFIND":
            return _text(405, "the root answers PROPFIND (current-user-principal)", {"Allow": "OPTIONS, PROPFIND"})
        wanted, _ = davxml.requested_props(davxml.parse(body))
        props = self.principal_props(user)
        props[tag(DAV, "resourcetype")] = lambda: element(
            tag(DAV, "resourcetype"), None, element(tag(DAV, "collection"))
        )
        return _xml(davxml.multistatus([_respond(f"{PREFIX}/", props, wanted)]))

    async def home(self, request: Request, method: str, body: bytes, ctx: Ctx) -> Response:
        if method != "PROPFIND":
            return _text(405, "the calendar home answers PROPFIND", {"Allow": "OPTIONS, PROPFIND"})
        wanted, _ = davxml.requested_props(davxml.parse(body))
        user = ctx.user_id
        responses = [_respond(self.home_href(user), self.principal_props(user), wanted)]
        if _depth(request) > 0:
            async with self.snapshot() as conn:
                collections = await self.collections(conn, user)
                tags = await dav_db.ctags(conn, user)
                token = SYNC_PREFIX + await dav_db.current_snapshot(conn)
            for collection in collections:
                props = self.collection_props(user, collection, tags.get(collection.category_id, "0"), token)
                responses.append(_respond(self.collection_href(user, collection), props, wanted))
        return _xml(davxml.multistatus(responses))

    async def collection(self, request: Request, method: str, body: bytes, ctx: Ctx, segment: str) -> Response:
        user = ctx.user_id
        if method == "MKCALENDAR" or method == "MKCOL":
            return await self.make_collection(body, ctx, segment)
        if method not in ("PROPFIND", "REPORT", "PROPPATCH", "GET", "HEAD"):
            return _text(405, f"{method} is not allowed on a collection", {"Allow": ALLOW})
        root = davxml.parse(body)
        async with self.snapshot() as conn:
            collection = await self.find_collection(conn, user, segment)
            if collection is None:
                return _text(404, "no such collection")
            if method in ("GET", "HEAD"):
                return _text(200, f"{collection.name}: a CalDAV collection of to-dos")
            if method == "PROPPATCH":
                return self.proppatch(request, root, collection)
            if method == "PROPFIND":
                wanted, _ = davxml.requested_props(root)
                tags = await dav_db.ctags(conn, user)
                token = SYNC_PREFIX + await dav_db.current_snapshot(conn)
                props = self.collection_props(user, collection, tags.get(collection.category_id, "0"), token)
                responses = [_respond(self.collection_href(user, collection), props, wanted)]
                if _depth(request) > 0:
                    rows = await dav_db.items(conn, user, collection.category_id)
                    responses += await self.item_responses(user, collection, rows, wanted)
                return _xml(davxml.multistatus(responses))
            if root is None:
                raise ValidationError("REPORT needs a body (calendar-query, calendar-multiget or sync-collection)")
            if root.tag == tag(CALDAV, "calendar-query"):
                return await self.calendar_query(conn, user, collection, root)
            if root.tag == tag(CALDAV, "calendar-multiget"):
                return await self.multiget(conn, user, collection, root)
            if root.tag == tag(DAV, "sync-collection"):
                return await self.sync_collection(conn, user, collection, root)
        return _xml(davxml.error("supported-report"), 403)

    def proppatch(self, request: Request, root: ET.Element | None, collection: Collection) -> Response:
        names: list[str] = []
        for action in root if root is not None else []:
            prop = action.find(tag(DAV, "prop"))
            names += [child.tag for child in prop] if prop is not None else []
        # The name and colour are the category's, changed through the tools; a client that cannot set them is told.
        return _xml(davxml.multistatus([DavResponse(href=request.url.path, refused=names)]))

    async def make_collection(self, body: bytes, ctx: Ctx, segment: str) -> Response:
        root = davxml.parse(body)
        name, color = segment, None
        if root is not None:
            for node in root.iter():
                if node.tag == tag(DAV, "displayname") and node.text and node.text.strip():
                    name = node.text.strip()
                elif node.tag == tag(ICAL, "calendar-color") and node.text:
                    color = node.text.strip()[:7]
                elif node.tag == tag(CALDAV, "comp") and (node.get("name") or "").upper() != "VTODO":
                    return _xml(davxml.error("supported-calendar-component", CALDAV, "collections hold VTODO"), 403)
        async with self.snapshot() as conn:
            if segment == UNCATEGORISED or await self.find_collection(conn, ctx.user_id, segment) is not None:
                return _xml(davxml.error("resource-must-be-null", DAV, "that collection exists"), 405)
        if color is not None and not _is_color(color):
            color = None
        await dav_tasks.create_collection(ctx, segment, name, color)
        return Response(status_code=201, headers={"Cache-Control": "no-cache"})

    async def item_responses(
        self, user: str, collection: Collection, rows: list[Any], wanted: list[str] | None
    ) -> list[DavResponse]:
        base = self.collection_href(user, collection)
        with_data = wanted is not None and tag(CALDAV, "calendar-data") in wanted

        def build() -> list[DavResponse]:
            return [
                _respond(
                    base + quote(href_name(row), safe="@"),
                    self.item_props(row, render(row) if with_data else None),
                    wanted,
                    all_but_data=True,
                )
                for row in rows
            ]

        built: list[DavResponse] = await _off_the_loop(build, len(rows))
        return built

    async def calendar_query(
        self, conn: AsyncConnection, user: str, collection: Collection, root: ET.Element
    ) -> Response:
        wanted, _ = davxml.requested_props(root)
        query_filter = root.find(tag(CALDAV, "filter"))
        rows = await dav_db.items(conn, user, collection.category_id)
        selected = await _off_the_loop(lambda: [row for row in rows if matches(row, query_filter)], len(rows))
        return _xml(davxml.multistatus(await self.item_responses(user, collection, selected, wanted)))

    async def multiget(self, conn: AsyncConnection, user: str, collection: Collection, root: ET.Element) -> Response:
        wanted, _ = davxml.requested_props(root)
        base = self.collection_href(user, collection)
        found: list[Any] = []
        missing: list[DavResponse] = []
        for node in root.findall(tag(DAV, "href")):
            href = urlsplit((node.text or "").strip()).path
            name = unquote(href.rsplit("/", 1)[-1])
            task_id = await dav_db.task_by_name(conn, user, name) if href.startswith(base) else None
            row = await dav_db.item(conn, user, task_id) if task_id is not None else None
            if row is None or row["deleted_at"] is not None or row["category_id"] != collection.category_id:
                missing.append(DavResponse(href=href, status="404 Not Found"))
            else:
                found.append(row)
        responses = await self.item_responses(user, collection, found, wanted)
        return _xml(davxml.multistatus(responses + missing))

    async def sync_collection(
        self, conn: AsyncConnection, user: str, collection: Collection, root: ET.Element
    ) -> Response:
        wanted, _ = davxml.requested_props(root)
        node = root.find(tag(DAV, "sync-token"))
        given = (node.text or "").strip() if node is not None else ""
        token = SYNC_PREFIX + await dav_db.current_snapshot(conn)
        base = self.collection_href(user, collection)
        if not given:
            rows = await dav_db.items(conn, user, collection.category_id)
            responses = await self.item_responses(user, collection, rows, wanted)
            return _xml(davxml.multistatus(responses, sync_token=token))
        if not given.startswith(SYNC_PREFIX) or not dav_db.SNAPSHOT.match(given[len(SYNC_PREFIX) :]):
            return _xml(davxml.error("valid-sync-token", DAV, "not a sync token of this server"), 403)
        if await dav_db.token_outlived(conn, user, given[len(SYNC_PREFIX) :]):
            why = "the sync token is older than the deletions this server keeps: sync afresh (without a token)"
            return _xml(davxml.error("valid-sync-token", DAV, why), 403)
        changed, gone = await dav_db.changes_since(conn, user, collection.category_id, given[len(SYNC_PREFIX) :])
        live = [row for row in changed if row["deleted_at"] is None]
        responses = await self.item_responses(user, collection, live, wanted)
        responses += [
            DavResponse(href=base + quote(href_name(row), safe="@"), status="404 Not Found")
            for row in changed
            if row["deleted_at"] is not None
        ]
        responses += [DavResponse(href=base + quote(href, safe="@"), status="404 Not Found") for href in gone]
        return _xml(davxml.multistatus(responses, sync_token=token))

    # --- one item ---------------------------------------------------------------------------------------------------

    async def item(self, request: Request, method: str, body: bytes, ctx: Ctx, segment: str, name: str) -> Response:
        user = ctx.user_id
        async with self.snapshot() as conn:
            collection = await self.find_collection(conn, user, segment)
            if collection is None:
                return _text(404, "no such collection")
            task_id = await dav_db.task_by_name(conn, user, name)
            row = await dav_db.item(conn, user, task_id) if task_id is not None else None
        exists = row is not None and row["deleted_at"] is None
        here = exists and row is not None and row["category_id"] == collection.category_id
        if method in ("GET", "HEAD"):
            if not here or row is None:
                return _text(404, "no such to-do")
            data = render(row)
            headers = {"ETag": etag(row), "Last-Modified": row["updated_at"].strftime("%a, %d %b %Y %H:%M:%S GMT")}
            return Response(b"" if method == "HEAD" else data, media_type=_ITEM_CONTENT_TYPE, headers=headers)
        if method == "PROPFIND":
            if not here or row is None:
                return _text(404, "no such to-do")
            wanted, _ = davxml.requested_props(davxml.parse(body))
            return _xml(davxml.multistatus(await self.item_responses(user, collection, [row], wanted)))
        if method == "DELETE":
            if not here or row is None:
                return _text(404, "no such to-do")
            _check_preconditions(request, row)
            await dav_tasks.trash_task(ctx, int(row["id"]))
            return Response(status_code=204)
        if method == "PUT":
            return await self.put(request, body, ctx, collection, name, row, here)
        if method == "MOVE":
            if not here or row is None:
                return _text(404, "no such to-do")
            return await self.move(request, ctx, row)
        return _text(405, f"{method} is not allowed on a to-do", {"Allow": ALLOW})

    async def put(
        self,
        request: Request,
        body: bytes,
        ctx: Ctx,
        collection: Collection,
        name: str,
        row: Any | None,
        here: bool,
    ) -> Response:
        content_type = request.headers.get("content-type", "text/calendar").split(";")[0].strip().lower()
        if content_type not in ("text/calendar", "application/octet-stream", ""):
            return _xml(davxml.error("supported-calendar-data", CALDAV, "PUT a text/calendar object"), 415)
        _check_preconditions(request, row if here else None)
        try:
            task = read_put(body, ctx.time_zone)
        except ValidationError as err:
            return _xml(davxml.error("valid-calendar-object-resource", CALDAV, str(err)), 400)
        href = None if name == f"{task.uid}.ics" else name
        if row is None or row["uid"] != task.uid or row["deleted_at"] is not None:
            # The UID may be stored already: in another collection (a client that moves a to-do by PUT there, then
            # DELETE here), or in the trash (one that moves by DELETE, then PUT: it comes back out of it).
            async with self.snapshot() as conn:
                task_id = await dav_db.task_by_uid(conn, ctx.user_id, task.uid)
                row = await dav_db.item(conn, ctx.user_id, task_id) if task_id is not None else None
        if row is None:
            await dav_tasks.create_task(ctx, task, collection.category_id, href)
            return Response(status_code=201)
        restore = row["deleted_at"] is not None
        await dav_tasks.update_from_client(ctx, int(row["id"]), task, collection.category_id, href, restore=restore)
        return Response(status_code=201 if not here else 204)

    async def move(self, request: Request, ctx: Ctx, row: Any) -> Response:
        destination = urlsplit(request.headers.get("destination", "")).path
        target = parse_path(destination) if destination.startswith(PREFIX + "/") else Target()
        if target.user != ctx.user_id or target.segment is None or target.name is None:
            return _text(400, "Destination names a to-do in another of your collections")
        async with self.snapshot() as conn:
            collection = await self.find_collection(conn, ctx.user_id, target.segment)
        if collection is None:
            return _text(409, "the destination collection does not exist")
        if target.name != href_name(row):
            return _text(400, "a move keeps the to-do's resource name")
        if collection.category_id != row["category_id"]:
            await dav_tasks.move_task(ctx, int(row["id"]), collection.category_id)
        return Response(status_code=201)


def _status_of(err: TodoError) -> int:
    return next((code for kind, code in _STATUS_OF.items() if isinstance(err, kind)), 500)


def _retry(err: TodoError) -> dict[str, str] | None:
    return {"Retry-After": "5"} if isinstance(err, UnavailableError) else None


def _check_preconditions(request: Request, row: Any | None) -> None:
    """If-Match / If-None-Match: 412 when the client's copy is not the stored one (or a create finds one)."""
    if_match = request.headers.get("if-match")
    if_none_match = request.headers.get("if-none-match")
    current = etag(row) if row is not None else None
    if if_match is not None:
        tags = [part.strip() for part in if_match.split(",")]
        if current is None or ("*" not in tags and current not in tags):
            raise _Answer(_text(412, "the to-do changed since you read it (its ETag differs): fetch it again"))
    if if_none_match is not None:
        tags = [part.strip() for part in if_none_match.split(",")]
        if current is not None and ("*" in tags or current in tags):
            raise _Answer(_text(412, "a to-do exists at that name already"))


def _depth(request: Request) -> int:
    depth = request.headers.get("depth", "1").strip().lower()
    return 0 if depth == "0" else 1


def _privileges() -> ET.Element:
    names = ("read", "write", "write-properties", "write-content", "bind", "unbind", "read-current-user-privilege-set")
    return element(
        tag(DAV, "current-user-privilege-set"),
        None,
        *(element(tag(DAV, "privilege"), None, element(tag(DAV, name))) for name in names),
    )


def _reports(*, sync: bool) -> ET.Element:
    names = [(CALDAV, "calendar-query"), (CALDAV, "calendar-multiget")] + ([(DAV, "sync-collection")] if sync else [])
    return element(
        tag(DAV, "supported-report-set"),
        None,
        *(
            element(tag(DAV, "supported-report"), None, element(tag(DAV, "report"), None, element(tag(ns, name))))
            for ns, name in names
        ),
    )


def _comp(name: str) -> ET.Element:
    return ET.Element(tag(CALDAV, "comp"), {"name": name})


def _is_color(text: str) -> bool:
    return len(text) == 7 and text[0] == "#" and all(c in "0123456789abcdefABCDEF" for c in text[1:])


def _respond(
    href: str,
    props: dict[str, Callable[[], ET.Element]],
    wanted: list[str] | None,
    *,
    all_but_data: bool = False,
) -> DavResponse:
    response = DavResponse(href=href)
    if wanted is None:
        names = [name for name in props if not (all_but_data and name == tag(CALDAV, "calendar-data"))]
    else:
        names = wanted
    for name in names:
        make = props.get(name)
        if make is None:
            response.missing.append(name)
        else:
            response.found.append(make())
    return response


# Rendering a few VTODOs takes well under a millisecond; past this many, the work goes to a thread.
_INLINE_ITEMS: Final = 20


async def _off_the_loop(work: Callable[[], Any], size: int) -> Any:
    if size <= _INLINE_ITEMS:
        return work()
    return await asyncio.to_thread(work)
