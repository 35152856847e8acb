"""CalDAV on `mcp-todo serve`, driven by clients nobody here wrote: the `caldav` library (discovery through
/.well-known/caldav, listing the collections, creating, completing and deleting to-dos, sync tokens, a PUT over a
stale ETag), and raw requests for what a library smooths over (auth challenges, another user's paths, the verbatim
properties, sync tokens across a restart, a move between collections), and vdirsyncer syncing a local vdir both ways
with todoman creating and completing to-dos in it, against what the MCP tools (their service layer) write and read."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from caldav.calendarobjectresource import Todo
from caldav.davclient import DAVClient
from caldav.lib.error import DAVError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.auth import create_token as create_api_token
from mcp_todo.db.engine import connect, create_engine
from mcp_todo.jobs.trash_purge import prune_tombstones
from mcp_todo.service.context import Ctx
from mcp_todo.service.tasks import add_task, update_task
from mcp_todo.settings import Settings
from tests.e2e.test_http import ServerProcess, create_token, server_env
from tests.support.database import DatabaseFactory
from tests.support.polling import eventually
from tests.support.processes import BIN, WorkerProcess, clean_env

pytestmark = pytest.mark.slow

_T = TypeVar("_T")


@dataclass
class DavServer:
    """One server process for the module (a test may restart it: `server` is the one running now)."""

    server: ServerProcess
    dsn: str
    engine: AsyncEngine


@dataclass
class Dav:
    """A test's view of the module's server: two users of its own (`alice` and `bob` are their roles; the names are
    fresh per test, so no test sees another's tasks), their tokens, and the clients it opened."""

    shared: DavServer
    alice: str
    bob: str
    tokens: dict[str, str]
    # Closed when the test ends: a client left to the garbage collector closes its socket with a ResourceWarning,
    # which fails whichever test happens to be running then.
    opened: list[DAVClient] = field(default_factory=list)

    @property
    def server(self) -> ServerProcess:
        return self.shared.server

    @server.setter
    def server(self, server: ServerProcess) -> None:
        self.shared.server = server

    @property
    def dsn(self) -> str:
        return self.shared.dsn

    @property
    def engine(self) -> AsyncEngine:
        return self.shared.engine

    def name(self, role: str) -> str:
        return {"alice": self.alice, "bob": self.bob}[role]

    def client(self, user: str = "alice") -> DAVClient:
        client = DAVClient(
            url=f"{self.server.base}/.well-known/caldav",
            username=self.name(user),
            password=self.tokens[user],
            require_tls=False,
            timeout=30,
        )
        self.opened.append(client)
        return client

    def http(self, user: str | None = "alice") -> httpx.AsyncClient:
        headers = {}
        if user is not None:
            basic = base64.b64encode(f"{self.name(user)}:{self.tokens[user]}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        return httpx.AsyncClient(base_url=self.server.base, headers=headers, timeout=30)


async def in_thread(work: Callable[[], _T]) -> _T:
    """The caldav library is synchronous: it runs in a thread, so the test's loop stays free."""
    return await asyncio.to_thread(work)


@pytest.fixture(scope="module")
async def dav_server(db_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DavServer]:
    dsn = await db_factory.create()
    shared = DavServer(
        ServerProcess("streamable-http", dsn, tmp_path_factory.mktemp("caldav"), insecure_local=False),
        dsn,
        create_engine(dsn, pool_size=2),
    )
    try:
        await shared.server.wait_healthy()
        yield shared
    finally:
        shared.server.stop()  # the one running now: a test may have restarted it
        await shared.engine.dispose()


@pytest.fixture
async def dav(dav_server: DavServer) -> AsyncIterator[Dav]:
    """Fresh users with a token each, made as `mcp-todo token create` makes them (its own test covers the CLI)."""
    suffix = uuid.uuid4().hex[:12]
    users = {"alice": f"alice{suffix}", "bob": f"bob{suffix}"}
    conn = await connect(dav_server.dsn)
    try:
        tokens = {role: (await create_api_token(conn, name, timedelta(days=1)))[1] for role, name in users.items()}
    finally:
        await conn.close()
    running = Dav(dav_server, users["alice"], users["bob"], tokens)
    try:
        yield running
    finally:
        for client in running.opened:
            client.close()


async def tasks_of(engine: AsyncEngine, user: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT t.id, t.uid, t.title, t.status, t.due_date, t.deleted_at, t.previous_task_id, "
                "t.recurrence_rule, c.name AS category FROM tasks t LEFT JOIN categories c ON c.id = t.category_id "
                "WHERE t.user_id = :u ORDER BY t.id"
            ),
            {"u": user},
        )
        return [dict(row) for row in rows.mappings()]


async def test_the_caldav_library_discovers_lists_creates_completes_and_deletes(dav: Dav) -> None:
    client = dav.client()
    principal = await in_thread(lambda: principal_of(client))
    calendars = await in_thread(principal.calendars)
    assert [calendar.get_display_name() for calendar in calendars] == ["Tasks"]

    work = await in_thread(
        lambda: principal.make_calendar(name="Work", cal_id="work", supported_calendar_component_set=["VTODO"])
    )
    names = sorted(calendar.get_display_name() for calendar in await in_thread(principal.calendars))
    assert names == ["Tasks", "Work"]

    due = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    todo = await in_thread(lambda: work.add_todo(summary="call the plumber", due=due, categories=["home"]))
    stored = await tasks_of(dav.engine, dav.alice)
    assert [(t["title"], t["category"], t["status"]) for t in stored] == [("call the plumber", "Work", "pending")]
    assert stored[0]["due_date"] == due
    assert stored[0]["uid"] == str(todo.icalendar_component["uid"])

    listed = await in_thread(work.todos)
    assert [str(t.icalendar_component["summary"]) for t in listed] == ["call the plumber"]

    await in_thread(todo.complete)
    assert [t["status"] for t in await tasks_of(dav.engine, dav.alice)] == ["completed"]
    assert await in_thread(work.todos) == []  # open ones only (is-not-defined COMPLETED)
    done = await in_thread(lambda: work.todos(include_completed=True))
    assert len(done) == 1

    await in_thread(todo.delete)
    stored = await tasks_of(dav.engine, dav.alice)
    assert stored[0]["deleted_at"] is not None  # in the trash, not gone
    assert await in_thread(lambda: work.todos(include_completed=True)) == []


async def test_sync_tokens_report_changes_and_deletions_and_survive_a_restart(dav: Dav, tmp_path: Path) -> None:
    client = dav.client()
    tasks = (await in_thread(lambda: calendars_of(client)))[0]
    first = await in_thread(lambda: tasks.add_todo(summary="water plants"))
    second = await in_thread(lambda: tasks.add_todo(summary="buy milk"))
    synced = await in_thread(lambda: tasks.objects_by_sync_token(load_objects=True))
    assert sorted(str(o.icalendar_component["summary"]) for o in synced) == ["buy milk", "water plants"]
    token = synced.sync_token

    await in_thread(lambda: second.delete())
    edited = await in_thread(lambda: tasks.todo_by_uid(str(first.icalendar_component["uid"])))
    edited.icalendar_component["summary"] = "water the plants"
    await in_thread(edited.save)

    # A new server process: the token is a database snapshot, not state of the process that handed it out.
    dav.server.stop()
    dav.server = ServerProcess("streamable-http", dav.dsn, tmp_path, insecure_local=False)
    await dav.server.wait_healthy()
    client = dav.client()
    tasks = (await in_thread(lambda: calendars_of(client)))[0]
    changes = await in_thread(lambda: tasks.objects_by_sync_token(sync_token=token, load_objects=False))
    hrefs = {str(o.url).rsplit("/", 1)[-1] for o in changes}
    uid_first, uid_second = str(first.icalendar_component["uid"]), str(second.icalendar_component["uid"])
    assert hrefs == {f"{uid_first}.ics", f"{uid_second}.ics"}
    async with dav.http() as http:
        report = await http.request(
            "REPORT",
            f"/dav/{dav.alice}/tasks/",
            headers={"Content-Type": "application/xml"},
            content=(
                '<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>'
                f"{token}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop>"
                "</d:sync-collection>"
            ),
        )
    assert report.status_code == 207
    body = report.text
    deleted = body.split(f"{uid_second}.ics", 1)[1].split("</d:response>", 1)[0]
    assert "404 Not Found" in deleted
    unchanged_token = changes.sync_token
    again = await in_thread(lambda: tasks.objects_by_sync_token(sync_token=unchanged_token, load_objects=False))
    assert list(again) == []


async def test_a_put_over_a_stale_etag_is_refused_and_changes_nothing(dav: Dav) -> None:
    client = dav.client()
    tasks = (await in_thread(lambda: calendars_of(client)))[0]
    todo = await in_thread(lambda: tasks.add_todo(summary="draft"))
    uid = str(todo.icalendar_component["uid"])
    async with dav.http() as http:
        got = await http.get(f"/dav/{dav.alice}/tasks/{uid}.ics")
        assert got.status_code == 200 and "SUMMARY:draft" in got.text
        old_etag = got.headers["etag"]
        put = await http.put(
            f"/dav/{dav.alice}/tasks/{uid}.ics",
            content=got.text.replace("SUMMARY:draft", "SUMMARY:second draft"),
            headers={"If-Match": old_etag, "Content-Type": "text/calendar"},
        )
        assert put.status_code == 204
        stale = await http.put(
            f"/dav/{dav.alice}/tasks/{uid}.ics",
            content=got.text.replace("SUMMARY:draft", "SUMMARY:lost update"),
            headers={"If-Match": old_etag, "Content-Type": "text/calendar"},
        )
        assert stale.status_code == 412 and "ETag" in stale.text
        create_over = await http.put(
            f"/dav/{dav.alice}/tasks/{uid}.ics",
            content=got.text,
            headers={"If-None-Match": "*", "Content-Type": "text/calendar"},
        )
        assert create_over.status_code == 412
    assert [t["title"] for t in await tasks_of(dav.engine, dav.alice)] == ["second draft"]
    # The library's own save after someone else's change: the same refusal reaches it.
    todo.icalendar_component["summary"] = "from a stale copy"
    with pytest.raises(DAVError):
        await in_thread(lambda: _save_if_match(todo, old_etag))
    assert [t["title"] for t in await tasks_of(dav.engine, dav.alice)] == ["second draft"]


def principal_of(client: DAVClient) -> Any:
    """The library's objects, as Any: its methods are typed as returning either the object or a coroutine of it
    (one API for its sync and async clients), which this synchronous use never gets."""
    return client.principal()  # type: ignore[no-untyped-call]  # the library leaves it unannotated


def calendars_of(client: DAVClient) -> list[Any]:
    return list(principal_of(client).calendars())


def _save_if_match(todo: Todo, etag: str) -> None:
    assert todo.client is not None
    response = todo.client.put(str(todo.url), todo.data, {"If-Match": etag, "Content-Type": "text/calendar"})
    if response.status >= 400:
        raise DAVError(f"{response.status}")


async def test_credentials_are_checked_and_other_users_paths_are_not_found(dav: Dav) -> None:
    async with dav.http(None) as anonymous:
        missing = await anonymous.request("PROPFIND", f"/dav/{dav.alice}/", headers={"Depth": "0"})
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Basic ")
        wrong = await anonymous.request(
            "PROPFIND",
            f"/dav/{dav.alice}/",
            headers={"Depth": "0", "Authorization": "Basic " + _b64(f"{dav.alice}:mtd_nope")},
        )
        assert wrong.status_code == 401
        mismatched = await anonymous.request(
            "PROPFIND",
            f"/dav/{dav.alice}/",
            headers={"Depth": "0", "Authorization": "Basic " + _b64(f"{dav.alice}:{dav.tokens['bob']}")},
        )
        assert mismatched.status_code == 401
        bearer = await anonymous.request(
            "PROPFIND", f"/dav/{dav.alice}/", headers={"Depth": "0", "Authorization": f"Bearer {dav.tokens['alice']}"}
        )
        assert bearer.status_code == 207
        well_known = await anonymous.get("/.well-known/caldav")
        assert well_known.status_code == 301 and well_known.headers["location"] == "/dav/"
    async with dav.http("bob") as bob:
        assert (await bob.request("PROPFIND", f"/dav/{dav.alice}/", headers={"Depth": "1"})).status_code == 404
        assert (await bob.get(f"/dav/{dav.alice}/tasks/x.ics")).status_code == 404
        home = await bob.request("PROPFIND", f"/dav/{dav.bob}/", headers={"Depth": "1"})
        assert home.status_code == 207 and dav.alice not in home.text


async def test_unknown_properties_come_back_verbatim_and_a_move_changes_the_category(dav: Dav) -> None:
    uid = str(uuid.uuid4())
    body = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VTODO\r\n"
        f"UID:{uid}\r\nDTSTAMP:20270101T000000Z\r\nSUMMARY:pack\r\n"
        "LOCATION:the attic\r\nX-APPLE-SORT-ORDER:42\r\nURL:https://example.org/list\r\n"
        "X-LONG:a folded line that goes on and on and on and on and on and on and on and on and on and on and\r\n"
        "  on and on\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    )
    async with dav.http() as http:
        created = await http.put(
            f"/dav/{dav.alice}/tasks/{uid}.ics", content=body, headers={"Content-Type": "text/calendar"}
        )
        assert created.status_code == 201, created.text
        got = (await http.get(f"/dav/{dav.alice}/tasks/{uid}.ics")).text
        for line in ("LOCATION:the attic\r\n", "X-APPLE-SORT-ORDER:42\r\n", "URL:https://example.org/list\r\n"):
            assert line in got
        folded = "X-LONG:a folded line that goes on and on and on and on and on and on and on and on and on and on and"
        assert folded + "\r\n  on and on\r\n" in got

        made = await http.request(
            "MKCALENDAR",
            f"/dav/{dav.alice}/errands/",
            content=(
                '<?xml version="1.0"?><c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
                "<d:set><d:prop><d:displayname>Errands</d:displayname></d:prop></d:set></c:mkcalendar>"
            ),
        )
        assert made.status_code == 201
        moved = await http.request(
            "MOVE",
            f"/dav/{dav.alice}/tasks/{uid}.ics",
            headers={"Destination": f"{dav.server.base}/dav/{dav.alice}/errands/{uid}.ics"},
        )
        assert moved.status_code == 201
        assert (await http.get(f"/dav/{dav.alice}/errands/{uid}.ics")).status_code == 200
        assert (await http.get(f"/dav/{dav.alice}/tasks/{uid}.ics")).status_code == 404
        bad = await http.put(
            f"/dav/{dav.alice}/tasks/{uuid.uuid4()}.ics",
            content=body.replace(
                "SUMMARY:pack\r\n", "SUMMARY:x\r\nRRULE:FREQ=SOMETIMES\r\nDUE:20270101T000000Z\r\n"
            ).replace(uid, "other"),
            headers={"Content-Type": "text/calendar"},
        )
        assert 400 <= bad.status_code < 500 and bad.text.strip()
    stored = await tasks_of(dav.engine, dav.alice)
    assert [(t["title"], t["category"]) for t in stored] == [("pack", "Errands")]


def _b64(text_: str) -> str:
    return base64.b64encode(text_.encode()).decode()


def _vtodo(uid: str, lines: str) -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VTODO\r\n"
        f"UID:{uid}\r\nDTSTAMP:20270101T000000Z\r\n{lines}END:VTODO\r\nEND:VCALENDAR\r\n"
    )


async def _settled_series(engine: AsyncEngine, user: str, count: int) -> list[dict[str, Any]]:
    """The user's tasks once the recurrer has made `count` of them, and a while later (a second successor would
    show by then: the local-mode handler runs within milliseconds of the commit; 2 s is generous for a busy box)."""

    async def made() -> bool:
        return len(await tasks_of(engine, user)) >= count

    await eventually(made, 30, f"{count} tasks in the series")
    await asyncio.sleep(2)
    return await tasks_of(engine, user)


@pytest.mark.parametrize("how", ["STATUS:COMPLETED", "PERCENT-COMPLETE:100", "advance DUE"])
async def test_completing_a_repeating_todo_makes_the_next_occurrence_once(dav: Dav, how: str) -> None:
    uid = str(uuid.uuid4())
    due = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    stamp = due.strftime("%Y%m%dT%H%M%SZ")
    created = _vtodo(uid, f"SUMMARY:water plants\r\nDUE:{stamp}\r\nRRULE:FREQ=DAILY\r\n")
    if how == "advance DUE":
        # What Apple Reminders does: the same to-do, still open, moved to the series' next date.
        completed = created.replace(f"DUE:{stamp}", "DUE:" + (due + timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ"))
    else:
        completed = created.replace("RRULE:FREQ=DAILY\r\n", f"RRULE:FREQ=DAILY\r\n{how}\r\n")
    async with dav.http() as http:
        put = await http.put(
            f"/dav/{dav.alice}/tasks/{uid}.ics", content=created, headers={"Content-Type": "text/calendar"}
        )
        assert put.status_code == 201, put.text
        etag = (await http.get(f"/dav/{dav.alice}/tasks/{uid}.ics")).headers["etag"]
        done = await http.put(
            f"/dav/{dav.alice}/tasks/{uid}.ics",
            content=completed,
            headers={"Content-Type": "text/calendar", "If-Match": etag},
        )
        assert done.status_code == 204, done.text
        await _settled_series(dav.engine, dav.alice, 2)
        # A client that sends its copy again (a retry, a second device) makes no second occurrence. The open copy
        # moved to the next date now clashes with the occurrence the recurrer made: refused, saying why.
        etag = (await http.get(f"/dav/{dav.alice}/tasks/{uid}.ics")).headers["etag"]
        again = await http.put(
            f"/dav/{dav.alice}/tasks/{uid}.ics",
            content=completed,
            headers={"Content-Type": "text/calendar", "If-Match": etag},
        )
        if how == "advance DUE":
            assert again.status_code == 409 and "already due at that time" in again.text
        else:
            assert again.status_code == 204, again.text
    await asyncio.sleep(2)  # time for a second successor to show, were one made
    stored = await tasks_of(dav.engine, dav.alice)
    assert [(t["title"], t["status"]) for t in stored] == [("water plants", "completed"), ("water plants", "pending")]
    assert stored[0]["due_date"] == due
    assert stored[1]["previous_task_id"] == stored[0]["id"] and stored[1]["due_date"] == due + timedelta(days=1)


VDIRSYNCER = str(BIN / "vdirsyncer")
TODO = str(BIN / "todo")


class Clients:
    def __init__(self, dav: Dav, root: Path) -> None:
        self.root = root
        (root / "status").mkdir()
        (root / "vdir").mkdir()
        (root / "vdirsyncer.conf").write_text(
            "[general]\n"
            f'status_path = "{root}/status/"\n\n'
            "[pair tasks]\n"
            'a = "local"\nb = "remote"\ncollections = ["from b"]\nconflict_resolution = "b wins"\n\n'
            "[storage local]\n"
            f'type = "filesystem"\npath = "{root}/vdir/"\nfileext = ".ics"\n\n'
            "[storage remote]\n"
            f'type = "caldav"\nurl = "{dav.server.base}/"\nusername = "{dav.alice}"\n'
            f'password = "{dav.tokens["alice"]}"\n'
            'item_types = ["VTODO"]\n'
        )
        (root / "todoman.py").write_text(
            f'path = "{root}/vdir/*"\ndate_format = "%Y-%m-%d"\ntime_format = "%H:%M"\n'
            f'default_list = "tasks"\ncache_path = "{root}/todoman.sqlite3"\n'
        )

    async def run(self, *args: str, stdin: str = "") -> str:
        done = await asyncio.to_thread(
            subprocess.run,
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(VDIRSYNCER_CONFIG=str(self.root / "vdirsyncer.conf")),
            check=False,
        )
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout

    async def sync(self) -> None:
        await self.run(VDIRSYNCER, "discover", stdin="y\n" * 10)
        await self.run(VDIRSYNCER, "sync")

    async def todo(self, *args: str) -> str:
        return await self.run(TODO, "--config", str(self.root / "todoman.py"), *args)

    async def todos(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = json.loads(await self.todo("--porcelain", "list", "--status", "ANY"))
        return listed


def _ctx(dav: Dav) -> Ctx:
    settings = Settings(_env_file=None, MCP_TODO_USER=dav.alice, MCP_TODO_TIMEZONE="Asia/Kolkata")  # type: ignore[call-arg]
    return Ctx(engine=dav.engine, user_id=dav.alice, settings=settings)


async def test_vdirsyncer_and_todoman_round_trip_with_the_mcp_tools(dav: Dav, tmp_path: Path) -> None:
    clients = Clients(dav, tmp_path)
    due = (datetime.now(UTC) + timedelta(days=3)).replace(second=0, microsecond=0)
    await add_task(_ctx(dav), "call the plumber", due_date=due.isoformat(), description="the kitchen tap")
    await clients.sync()
    listed = await clients.todos()
    assert [(t["summary"], t["description"]) for t in listed] == [("call the plumber", "the kitchen tap")]

    await clients.todo("new", "-l", "tasks", "--location", "the attic", "pack the boxes")
    await clients.sync()
    stored = await tasks_of(dav.engine, dav.alice)
    assert sorted(t["title"] for t in stored) == ["call the plumber", "pack the boxes"]
    plumber = next(t for t in await clients.todos() if t["summary"] == "call the plumber")
    await clients.todo("done", str(plumber["id"]))
    await clients.sync()
    stored = await tasks_of(dav.engine, dav.alice)
    assert {t["title"]: t["status"] for t in stored} == {"call the plumber": "completed", "pack the boxes": "pending"}

    # What todoman wrote that mcp-todo does not model comes back from the server to a vdir that starts afresh.
    for path in (*(tmp_path / "vdir").rglob("*.ics"), *(tmp_path / "status").rglob("*")):
        if path.is_file():
            path.unlink()
    await clients.sync()
    boxes = next(t for t in await clients.todos() if t["summary"] == "pack the boxes")
    assert boxes["location"] == "the attic"


async def test_a_repeating_task_completed_in_todoman_has_one_next_occurrence(dav: Dav, tmp_path: Path) -> None:
    clients = Clients(dav, tmp_path)
    due = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    await add_task(_ctx(dav), "water plants", due_date=due.isoformat(), recurrence_rule="FREQ=DAILY")
    await clients.sync()
    plants = next(t for t in await clients.todos() if t["summary"] == "water plants")
    await clients.todo("done", str(plants["id"]))
    await clients.sync()

    async def two() -> bool:
        return len(await tasks_of(dav.engine, dav.alice)) >= 2

    await eventually(two, 30, "the next occurrence")
    await asyncio.sleep(2)  # time for a second successor to show, were one made (the handler takes milliseconds)
    await clients.sync()
    stored = await tasks_of(dav.engine, dav.alice)
    assert [(t["title"], t["status"]) for t in stored] == [("water plants", "completed"), ("water plants", "pending")]
    # todoman advances the series itself: it writes the next occurrence as a new to-do (a new UID, the RRULE) and
    # the completed one without its RRULE. The server takes both as written: one next occurrence, the client's.
    assert stored[1]["due_date"] == due + timedelta(days=1) and stored[1]["recurrence_rule"] == "FREQ=DAILY"
    assert stored[0]["recurrence_rule"] is None
    listed = sorted((t["summary"], t["completed"]) for t in await clients.todos())
    assert listed == [("water plants", False), ("water plants", True)]


async def test_bad_requests_get_a_readable_4xx_and_change_nothing(dav: Dav) -> None:
    uid = str(uuid.uuid4())
    xml = {"Content-Type": "application/xml"}
    async with dav.http() as http:
        created = await http.put(
            f"/dav/{dav.alice}/tasks/{uid}.ics",
            content=_vtodo(uid, "SUMMARY:keep me\r\n"),
            headers={"If-None-Match": "*"},
        )
        assert created.status_code == 201
        etag = (await http.get(f"/dav/{dav.alice}/tasks/{uid}.ics")).headers["etag"]
        answers = {
            "malformed XML": await http.request(
                "PROPFIND", f"/dav/{dav.alice}/tasks/", content="<d:propfind", headers=xml
            ),
            "an entity": await http.request(
                "PROPFIND",
                f"/dav/{dav.alice}/tasks/",
                content='<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "a">]><x>&a;</x>',
                headers=xml,
            ),
            "a foreign sync token": await http.request(
                "REPORT",
                f"/dav/{dav.alice}/tasks/",
                content='<d:sync-collection xmlns:d="DAV:"><d:sync-token>http://elsewhere/1</d:sync-token>'
                "<d:prop><d:getetag/></d:prop></d:sync-collection>",
                headers=xml,
            ),
            "a bad time-range": await http.request(
                "REPORT",
                f"/dav/{dav.alice}/tasks/",
                content='<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/>'
                '</d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VTODO">'
                '<c:time-range start="tomorrow"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>',
                headers=xml,
            ),
            "an unknown report": await http.request(
                "REPORT", f"/dav/{dav.alice}/tasks/", content='<d:expand-property xmlns:d="DAV:"/>', headers=xml
            ),
            "a missing collection": await http.put(
                f"/dav/{dav.alice}/nowhere/{uid}.ics", content=_vtodo(uid, "SUMMARY:x\r\n")
            ),
            "an existing collection": await http.request("MKCALENDAR", f"/dav/{dav.alice}/tasks/"),
            "an event": await http.put(
                f"/dav/{dav.alice}/tasks/e.ics",
                content="BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:e\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            ),
            "an empty title": await http.put(
                f"/dav/{dav.alice}/tasks/{uid}.ics", content=_vtodo(uid, "SUMMARY:\r\n"), headers={"If-Match": etag}
            ),
            "a stale delete": await http.delete(f"/dav/{dav.alice}/tasks/{uid}.ics", headers={"If-Match": '"1-1"'}),
            "a path too deep": await http.get(f"/dav/{dav.alice}/tasks/{uid}.ics/more"),
        }
        for what, answer in answers.items():
            assert 400 <= answer.status_code < 500 and answer.text.strip(), (what, answer.status_code, answer.text)
        assert (
            answers["a foreign sync token"].status_code == 403
            and "valid-sync-token" in answers["a foreign sync token"].text
        )
        assert answers["a stale delete"].status_code == 412
        assert (await http.get(f"/dav/{dav.alice}/tasks/{uid}.ics")).headers["etag"] == etag
    assert [(t["title"], t["deleted_at"]) for t in await tasks_of(dav.engine, dav.alice)] == [("keep me", None)]


async def test_a_task_restored_from_the_trash_comes_back_to_a_syncing_client(dav: Dav) -> None:
    uid = str(uuid.uuid4())
    sync = (
        '<d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level>'
        "<d:prop><d:getetag/></d:prop></d:sync-collection>"
    )
    async with dav.http() as http:
        await http.put(f"/dav/{dav.alice}/tasks/{uid}.ics", content=_vtodo(uid, "SUMMARY:oops\r\n"))
        token = (await http.request("REPORT", f"/dav/{dav.alice}/tasks/", content=sync.format(""))).text
        token = token.split("<d:sync-token>")[1].split("<")[0]
        assert (await http.delete(f"/dav/{dav.alice}/tasks/{uid}.ics")).status_code == 204
        gone = (await http.request("REPORT", f"/dav/{dav.alice}/tasks/", content=sync.format(token))).text
        assert f"{uid}.ics" in gone and "404 Not Found" in gone
        token = gone.split("<d:sync-token>")[1].split("<")[0]
        task_id = (await tasks_of(dav.engine, dav.alice))[0]["id"]
        await update_task(_ctx(dav), task_id, status="pending")  # the tools' restore
        back = (await http.request("REPORT", f"/dav/{dav.alice}/tasks/", content=sync.format(token))).text
        assert f"{uid}.ics" in back and "<d:getetag>" in back and "404 Not Found" not in back
        assert (await http.get(f"/dav/{dav.alice}/tasks/{uid}.ics")).status_code == 200


async def test_a_sync_token_older_than_the_kept_deletions_gets_valid_sync_token(dav: Dav) -> None:
    uid = str(uuid.uuid4())
    sync = (
        '<d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level>'
        "<d:prop><d:getetag/></d:prop></d:sync-collection>"
    )
    home = f"/dav/{dav.alice}"
    async with dav.http() as http:
        await http.put(f"{home}/tasks/{uid}.ics", content=_vtodo(uid, "SUMMARY:moving on\r\n"))
        token = (await http.request("REPORT", f"{home}/tasks/", content=sync.format(""))).text
        token = token.split("<d:sync-token>")[1].split("<")[0]
        made = await http.request("MKCALENDAR", f"{home}/later/", content="")
        assert made.status_code == 201
        moved = await http.request(
            "MOVE", f"{home}/tasks/{uid}.ics", headers={"Destination": f"{dav.server.base}{home}/later/{uid}.ics"}
        )
        assert moved.status_code == 201  # it left Tasks: a tombstone there
        async with dav.engine.begin() as conn:
            aged = "UPDATE dav_tombstones SET made_at = now() - interval '31 days' WHERE user_id = :u"
            assert (await conn.execute(text(aged), {"u": dav.alice})).rowcount == 1
        assert await prune_tombstones(dav.engine, _ctx(dav).settings) >= 1
        refused = await http.request("REPORT", f"{home}/tasks/", content=sync.format(token))
        assert refused.status_code == 403 and "valid-sync-token" in refused.text and "afresh" in refused.text
        fresh = await http.request("REPORT", f"{home}/tasks/", content=sync.format(""))
        assert fresh.status_code == 207 and f"{uid}.ics" not in fresh.text


async def test_a_todo_moved_by_delete_then_put_or_put_then_delete_keeps_its_task(dav: Dav) -> None:
    made = '<c:mkcalendar xmlns:c="urn:ietf:params:xml:ns:caldav"/>'
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    async with dav.http() as http:
        assert (await http.request("MKCALENDAR", f"/dav/{dav.alice}/home/", content=made)).status_code == 201
        for uid in (first, second):
            await http.put(f"/dav/{dav.alice}/tasks/{uid}.ics", content=_vtodo(uid, "SUMMARY:moving\r\n"))
        # DELETE here, then PUT there: the task comes out of the trash into the new collection.
        assert (await http.delete(f"/dav/{dav.alice}/tasks/{first}.ics")).status_code == 204
        put = await http.put(f"/dav/{dav.alice}/home/{first}.ics", content=_vtodo(first, "SUMMARY:moving\r\n"))
        assert put.status_code == 201, put.text
        # PUT there (under another name), then DELETE here: the DELETE finds nothing left here.
        put = await http.put(f"/dav/{dav.alice}/home/copy-{second}.ics", content=_vtodo(second, "SUMMARY:moving\r\n"))
        assert put.status_code == 201, put.text
        assert (await http.delete(f"/dav/{dav.alice}/tasks/{second}.ics")).status_code == 404
        assert (await http.get(f"/dav/{dav.alice}/home/copy-{second}.ics")).status_code == 200
    stored = await tasks_of(dav.engine, dav.alice)
    assert [(t["uid"], t["category"], t["deleted_at"]) for t in stored] == [
        (first, "home", None),
        (second, "home", None),
    ]


async def _blockers_of(engine: AsyncEngine, user: str) -> set[tuple[str, str]]:
    """(uid of the task, uid of the task it waits on) for every dependency of the user."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT t.uid, b.uid FROM task_dependencies d JOIN tasks t ON t.id = d.task_id "
                "JOIN tasks b ON b.id = d.blocker_id WHERE d.user_id = :u"
            ),
            {"u": user},
        )
        return {(row[0], row[1]) for row in rows}


async def _events_of(engine: AsyncEngine, user: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM outbox WHERE user_id = :u"), {"u": user}) or 0)


async def test_depends_on_becomes_blocked_by_and_back_and_a_cycle_is_a_readable_409(dav: Dav) -> None:
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    home = f"/dav/{dav.alice}/tasks"
    async with dav.http() as http:
        assert (
            await http.put(f"{home}/{first}.ics", content=_vtodo(first, "SUMMARY:buy paint\r\n"))
        ).status_code == 201
        # The second waits on the first, and on a third the server has not got yet (kept as written meanwhile).
        waits = f"RELATED-TO;RELTYPE=DEPENDS-ON:{first}\r\nRELATED-TO;RELTYPE=DEPENDS-ON:{third}\r\n"
        put = await http.put(f"{home}/{second}.ics", content=_vtodo(second, f"SUMMARY:paint the wall\r\n{waits}"))
        assert put.status_code == 201, put.text
        assert await _blockers_of(dav.engine, dav.alice) == {(second, first)}
        got = (await http.get(f"{home}/{second}.ics")).text
        assert f"RELATED-TO;RELTYPE=DEPENDS-ON:{first}\r\n" in got
        assert got.count(f"RELATED-TO;RELTYPE=DEPENDS-ON:{third}\r\n") == 1

        # The third arrives, and the second is written again as the client has it: both dependencies hold now.
        assert (await http.put(f"{home}/{third}.ics", content=_vtodo(third, "SUMMARY:sand\r\n"))).status_code == 201
        again = await http.put(f"{home}/{second}.ics", content=_vtodo(second, f"SUMMARY:paint the wall\r\n{waits}"))
        assert again.status_code == 204, again.text
        assert await _blockers_of(dav.engine, dav.alice) == {(second, first), (second, third)}

        # The first waiting on the second closes a cycle: refused, saying so, and nothing changes.
        etag = (await http.get(f"{home}/{first}.ics")).headers["etag"]
        cycle = await http.put(
            f"{home}/{first}.ics",
            content=_vtodo(first, f"SUMMARY:buy paint today\r\nRELATED-TO;RELTYPE=DEPENDS-ON:{second}\r\n"),
        )
        assert cycle.status_code == 409 and "cycle" in cycle.text, cycle.text
        assert (await http.get(f"{home}/{first}.ics")).headers["etag"] == etag

        # A dependency set through the tools reaches the client; one the client drops is dropped.
        ids = {t["uid"]: t["id"] for t in await tasks_of(dav.engine, dav.alice)}
        await update_task(_ctx(dav), ids[third], blocked_by=[ids[first]])
        assert f"RELATED-TO;RELTYPE=DEPENDS-ON:{first}" in (await http.get(f"{home}/{third}.ics")).text
        # A blocker deleted (to the trash) while the client still names it: the write goes through.
        assert (await http.delete(f"{home}/{third}.ics")).status_code == 204
        named = await http.put(f"{home}/{second}.ics", content=_vtodo(second, f"SUMMARY:paint the wall\r\n{waits}"))
        assert named.status_code == 204, named.text
        assert await _blockers_of(dav.engine, dav.alice) == {(second, first), (third, first)}
        await update_task(_ctx(dav), ids[third], status="pending")  # restored
        dropped = await http.put(f"{home}/{second}.ics", content=_vtodo(second, "SUMMARY:paint the wall\r\n"))
        assert dropped.status_code == 204
    assert await _blockers_of(dav.engine, dav.alice) == {(third, first)}


async def test_a_put_is_one_transaction_a_failing_part_leaves_nothing_changed_and_no_event(dav: Dav) -> None:
    uid = str(uuid.uuid4())
    path = f"/dav/{dav.alice}/tasks/{uid}.ics"
    async with dav.http() as http:
        assert (await http.put(path, content=_vtodo(uid, "SUMMARY:draft\r\nCATEGORIES:home\r\n"))).status_code == 201
        before = (await http.get(path)).headers["etag"]
        events = await _events_of(dav.engine, dav.alice)
        # A new title, a new reminder, then more tags than a task takes: the tags fail after the rest was written.
        too_many = ",".join(f"tag{i}" for i in range(11))
        lines = (
            "SUMMARY:final\r\nDUE:20300101T090000Z\r\n"
            f"CATEGORIES:{too_many}\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT30M\r\nEND:VALARM\r\n"
        )
        failed = await http.put(path, content=_vtodo(uid, lines), headers={"If-Match": before})
        assert 400 <= failed.status_code < 500 and "at most 10 tags" in failed.text, failed.text
        assert (await http.get(path)).headers["etag"] == before
    stored = await tasks_of(dav.engine, dav.alice)
    assert [(t["title"], t["due_date"]) for t in stored] == [("draft", None)]
    assert await _events_of(dav.engine, dav.alice) == events
    async with dav.engine.connect() as conn:
        tags = await conn.scalar(text("SELECT count(*) FROM tags WHERE user_id = :u"), {"u": dav.alice})
    assert tags == 1  # the tags the failed PUT made went with it


# The property sets real clients ask for, written out from the clients' sources and published request logs (not
# packet captures): the PROPFINDs of Apple's Calendar/Reminders on a calendar home (with their Apple, CalendarServer
# and me.com extensions), Thunderbird's calDavCalendar.js checks of a calendar and its ETag query, and DAVx5's
# collection and principal discovery, sync-collection and multiget.
_NS = (
    'xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/" '
    'xmlns:a="http://apple.com/ns/ical/" xmlns:me="http://me.com/_namespace/"'
)
CORPUS: list[tuple[str, str, str, str, list[str]]] = [
    (
        "Apple: principal",
        "PROPFIND",
        "/dav/alice/",
        f"<d:propfind {_NS}><d:prop><c:calendar-home-set/><c:calendar-user-address-set/><cs:email-address-set/>"
        "<d:current-user-principal/><d:displayname/><d:principal-URL/><d:principal-collection-set/>"
        "<d:supported-report-set/></d:prop></d:propfind>",
        ["calendar-home-set", "current-user-principal"],
    ),
    (
        "Apple: calendar home, depth 1",
        "PROPFIND",
        "/dav/alice/",
        f"<d:propfind {_NS}><d:prop><d:add-member/><cs:allowed-sharing-modes/><a:autoprovisioned/>"
        "<me:bulk-requests/><a:calendar-color/><c:calendar-description/><c:calendar-free-busy-set/>"
        "<a:calendar-order/><c:calendar-timezone/><d:current-user-privilege-set/><cs:getctag/><d:displayname/>"
        "<d:owner/><d:resourcetype/><c:supported-calendar-component-set/><d:sync-token/><d:quota-available-bytes/>"
        "</d:prop></d:propfind>",
        ["supported-calendar-component-set", "getctag", "sync-token"],
    ),
    (
        "Thunderbird: calendar check",
        "PROPFIND",
        "/dav/alice/tasks/",
        f"<d:propfind {_NS}><d:prop><d:resourcetype/><d:owner/><d:current-user-principal/>"
        "<d:current-user-privilege-set/><d:supported-report-set/><c:supported-calendar-component-set/>"
        "<cs:getctag/></d:prop></d:propfind>",
        ["getctag", "current-user-privilege-set"],
    ),
    (
        "Thunderbird: ETags of open to-dos",
        "REPORT",
        "/dav/alice/tasks/",
        f'<c:calendar-query {_NS}><d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR">'
        '<c:comp-filter name="VTODO"><c:prop-filter name="COMPLETED"><c:is-not-defined/></c:prop-filter>'
        '<c:prop-filter name="STATUS"><c:text-match negate-condition="yes">CANCELLED</c:text-match>'
        "</c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>",
        ["getetag"],
    ),
    (
        "DAVx5: collections",
        "PROPFIND",
        "/dav/alice/",
        f"<d:propfind {_NS}><d:prop><d:resourcetype/><d:displayname/><d:owner/><d:current-user-privilege-set/>"
        "<a:calendar-color/><c:calendar-description/><c:calendar-timezone/><c:supported-calendar-component-set/>"
        "<cs:source/><d:sync-token/><cs:getctag/></d:prop></d:propfind>",
        ["resourcetype", "sync-token"],
    ),
    (
        "DAVx5: initial sync-collection",
        "REPORT",
        "/dav/alice/tasks/",
        f"<d:sync-collection {_NS}><d:sync-token/><d:sync-level>1</d:sync-level><d:prop><d:getcontenttype/>"
        "<d:getetag/></d:prop></d:sync-collection>",
        ["getetag", "sync-token"],
    ),
    (
        "DAVx5: allprop on the home",
        "PROPFIND",
        "/dav/alice/",
        f"<d:propfind {_NS}><d:allprop/></d:propfind>",
        ["calendar-home-set"],
    ),
]


async def test_requests_as_apple_thunderbird_and_davx5_send_them_are_answered(dav: Dav) -> None:
    uid = str(uuid.uuid4())
    async with dav.http() as http:
        await http.put(f"/dav/{dav.alice}/tasks/{uid}.ics", content=_vtodo(uid, "SUMMARY:from the corpus\r\n"))
        for what, method, path, body, expected in CORPUS:
            depth = "0" if "principal" in what or "check" in what else "1"
            answer = await http.request(
                method,
                path.replace("/alice/", f"/{dav.alice}/"),
                content=body,
                headers={"Depth": depth, "Content-Type": "application/xml"},
            )
            assert answer.status_code == 207, (what, answer.status_code, answer.text)
            root = ET.fromstring(answer.content)
            found = {
                child.tag.split("}")[1]
                for propstat in root.iter("{DAV:}propstat")
                if "200" in (propstat.findtext("{DAV:}status") or "")
                for child in propstat.iter()
                if child.tag != "{DAV:}prop" and child.tag != "{DAV:}propstat" and child.tag != "{DAV:}status"
            }
            found |= {child.tag.split("}")[1] for child in root}
            for name in expected:
                assert name in found, (what, name, answer.text)
            if "ETags" in what or "sync-collection" in what:
                assert f"{uid}.ics" in answer.text, what
        multiget = await http.request(
            "REPORT",
            f"/dav/{dav.alice}/tasks/",
            content=f"<c:calendar-multiget {_NS}><d:prop><d:getetag/><c:calendar-data/></d:prop>"
            f"<d:href>/dav/{dav.alice}/tasks/{uid}.ics</d:href><d:href>/dav/{dav.alice}/tasks/missing.ics</d:href>"
            "</c:calendar-multiget>",
            headers={"Depth": "1"},
        )
        assert multiget.status_code == 207 and "SUMMARY:from the corpus" in multiget.text
        assert "missing.ics</d:href><d:status>HTTP/1.1 404 Not Found" in multiget.text


@pytest.mark.kafka
async def test_over_kafka_a_repeating_todo_completed_by_a_client_gets_one_next_occurrence_from_the_recurrer(
    e2e_db: tuple[str, AsyncEngine],
    kafka_settings: Settings,
    workers: Callable[..., Awaitable[WorkerProcess]],
    tmp_path: Path,
) -> None:
    dsn, engine = e2e_db
    recurrer = await workers("mcp-todo-recurrer")
    await recurrer.wait_ready()
    assert kafka_settings.kafka_bootstrap_servers is not None
    kafka_env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka_settings.kafka_topic_prefix,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
    }
    token = create_token(server_env(dsn) | kafka_env, "alice")
    server = ServerProcess("streamable-http", dsn, tmp_path, insecure_local=False, **kafka_env)
    client = DAVClient(
        url=f"{server.base}/.well-known/caldav", username="alice", password=token, require_tls=False, timeout=30
    )
    try:
        await server.wait_healthy()
        tasks = (await in_thread(lambda: calendars_of(client)))[0]
        due = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
        todo = await in_thread(lambda: tasks.add_todo(summary="water plants", due=due, rrule={"FREQ": "DAILY"}))
        await in_thread(todo.complete)

        async def made() -> bool:
            return len(await tasks_of(engine, "alice")) >= 2

        await eventually(made, 60, "the recurrer's next occurrence")
        await asyncio.sleep(3)  # a second successor would show by then (the recurrer answers within a second)
        stored = await tasks_of(engine, "alice")
        assert [(t["title"], t["status"]) for t in stored] == [
            ("water plants", "completed"),
            ("water plants", "pending"),
        ]
        assert stored[1]["previous_task_id"] == stored[0]["id"] and stored[1]["due_date"] == due + timedelta(days=1)
        # The phone sees the new occurrence on its next sync.
        listed = await in_thread(tasks.todos)
        assert [t.icalendar_component["due"].dt for t in listed] == [due + timedelta(days=1)]
    finally:
        client.close()
        server.stop()
