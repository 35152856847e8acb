"""Fixtures over tests/support: a real PostgreSQL (TEST_DATABASE_URL, else an embedded one), the real `tansu`
Kafka-protocol broker, a real HTTP endpoint for Apprise. Nothing here is a mock."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.engine import create_engine
from mcp_todo.pipeline.kafka import create_topics
from mcp_todo.settings import Settings
from tests.support.broker import BrokerProcess, broker_settings
from tests.support.database import DatabaseFactory, postgres_server, truncate_all
from tests.support.http_receiver import Receiver
from tests.support.pooler import PgBouncer, pgbouncer, pooler_requested

BROKER_FIXTURES = frozenset({"kafka_broker", "broker_process", "kafka_settings"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the broker is marked `kafka`, so that `-m "not kafka"` (make test-fast) never starts one."""
    unmarked = [
        item.nodeid
        for item in items
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("kafka") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"these tests use the broker but are not marked kafka: {', '.join(unmarked)}")


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server we may create databases on."""
    with postgres_server() as server:
        yield server.dsn


@pytest.fixture(scope="session")
def pooler(pg_server_dsn: str) -> Iterator[PgBouncer | None]:
    """PgBouncer in transaction mode in front of the test server when TEST_POOLER=pgbouncer (tests/support/pooler.py),
    else None. With TEST_POOLER_REPORT set, the most clients and server connections seen at once (sampled twice a
    second) and the transactions it carried are written there as JSON at the end."""
    if not pooler_requested():
        yield None
        return
    from tests.support import pooler as pooler_support

    with pgbouncer(pg_server_dsn) as bouncer:
        pooler_support.ACTIVE = bouncer
        peak = {"clients": 0, "servers": 0}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                pools = [p for p in bouncer.show("POOLS") if p["database"] != "pgbouncer"]
                clients = sum(int(p["cl_active"]) + int(p["cl_waiting"]) for p in pools)
                servers = sum(int(p[k]) for p in pools for k in ("sv_active", "sv_idle", "sv_used", "sv_tested"))
                peak["clients"] = max(peak["clients"], clients)
                peak["servers"] = max(peak["servers"], servers)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield bouncer
        finally:
            done.set()
            sampler.join()
            pooler_support.ACTIVE = None
            report = os.environ.get("TEST_POOLER_REPORT")
            if report:
                stats = [s for s in bouncer.show("STATS") if s["database"] != "pgbouncer"]
                transactions = sum(int(s["total_xact_count"]) for s in stats)
                with open(report, "w") as out:
                    json.dump(
                        {
                            "peak_clients": peak["clients"],
                            "peak_servers": peak["servers"],
                            "transactions": transactions,
                        },
                        out,
                    )


@pytest.fixture(scope="session")
async def db_factory(pg_server_dsn: str) -> AsyncIterator[DatabaseFactory]:
    """Fresh databases on the test server, all dropped at the end of the session."""
    factory = DatabaseFactory(pg_server_dsn)
    yield factory
    await factory.drop_all()


@pytest.fixture(scope="session")
async def database_dsn(db_factory: DatabaseFactory) -> str:
    """One migrated database for the session; `db` empties it before each test."""
    return await db_factory.create()


@pytest.fixture(scope="session")
async def engine(database_dsn: str, pooler: PgBouncer | None) -> AsyncIterator[AsyncEngine]:
    """The session database's engine; through the pooler (and then set up for it) when there is one."""
    if pooler is None:
        eng = create_engine(database_dsn, pool_size=5)
    else:
        eng = create_engine(pooler.pooled(database_dsn), pool_size=5, pooled=True)
    yield eng
    await eng.dispose()


@pytest.fixture
async def db(engine: AsyncEngine, database_dsn: str) -> AsyncEngine:
    """The session's database, emptied (identities restarted) for this test."""
    await truncate_all(database_dsn)
    return engine


@pytest.fixture(scope="session")
async def kafka_broker() -> AsyncIterator[str]:
    """The session's broker; yields its bootstrap string."""
    broker = BrokerProcess()
    await broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.close()


@pytest.fixture
def broker_process() -> Iterator[BrokerProcess]:
    """A broker of this test's own, on a fixed free port, not yet started; the test starts and stops it."""
    broker = BrokerProcess()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
async def kafka_settings(kafka_broker: str) -> Settings:
    """Settings on the session broker with a topic prefix of this test's own, its topics created."""
    settings = broker_settings(kafka_broker)
    await create_topics(settings)
    return settings


@pytest.fixture
def http_receiver() -> Iterator[Receiver]:
    """A running HTTP endpoint; `http_receiver.url` is the Apprise URL that posts to it."""
    with Receiver() as receiver:
        yield receiver
