"""How long migration 0008 (user_id in every per-user key) locks a large database out: a copy at revision 0007 is
filled with N tasks (generate_series, 1 000 users, with categories, tags, subtasks, dependencies, notifications,
outbox rows and CalDAV rows), then upgraded while probes keep writing:

- a writer per busy table (an UPDATE of one row of tasks, task_tags, outbox, in a transaction it rolls back) every
  50 ms, each timing how long its statement waited: the longest wait is the longest a client was held up;
- a sampler of pg_locks every 10 ms, measuring how long an ACCESS EXCLUSIVE lock on each table stayed granted
  (to the sampling resolution).

Every row must survive (count and a hash of each table's rows, before and after).

    .venv/bin/python -m bench.migration_locks --tasks 1000000

uses TEST_DATABASE_URL's server (else an embedded PostgreSQL) and writes bench/results/migration_locks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from dataclasses import dataclass, field

import asyncpg

from mcp_todo.db.engine import create_engine
from mcp_todo.db.migrate import migrate
from tests.support.database import DatabaseFactory
from tests.support.routing import PER_USER_TABLES as ROUTED_TABLES

USERS = 1000
# Every per-user table, fingerprinted before and after.
PER_USER_TABLES = sorted(ROUTED_TABLES)
# Those revision 0007 has (later revisions add tables of their own, empty on a copy made at 0007).
OLD_TABLES = set(PER_USER_TABLES) - {"dav_sync_horizons"}

# Task g belongs to user g % USERS; ids are given (g), so related rows can name them arithmetically.
FILL = """
SET session_replication_role = replica;
INSERT INTO categories (id, user_id, name)
    SELECT u * 5 + k + 1, 'u' || u, 'category ' || k FROM generate_series(0, {users} - 1) u, generate_series(0, 4) k;
INSERT INTO tags (id, user_id, name)
    SELECT u * 10 + k + 1, 'u' || u, 'tag ' || k FROM generate_series(0, {users} - 1) u, generate_series(0, 9) k;
INSERT INTO tasks (id, user_id, title, description, priority, due_date, time_zone, category_id, parent_id,
                   series_id, previous_task_id, remind_at, status)
    SELECT g, 'u' || (g % {users}), 'task ' || g, CASE WHEN g % 3 = 0 THEN 'about task ' || g END,
           (ARRAY['low', 'medium', 'high', 'urgent'])[g % 4 + 1], now() + (g % 400) * interval '1 hour', 'UTC',
           CASE WHEN g % 2 = 0 THEN (g % {users}) * 5 + (g / {users}) % 5 + 1 END,
           CASE WHEN g % 10 = 3 AND g > {users} THEN g - {users} END,
           CASE WHEN g % 100 = 11 THEN g END,
           CASE WHEN g % 100 = 11 AND g > {users} THEN g - {users} END,
           CASE WHEN g % 20 = 1 THEN now() + (g % 400) * interval '1 hour' - interval '15 minutes' END,
           CASE WHEN g % 7 = 0 THEN 'completed' ELSE 'pending' END
    FROM generate_series(1, {tasks}) g;
INSERT INTO task_tags (task_id, tag_id, user_id)
    SELECT g, (g % {users}) * 10 + (g / {users}) % 10 + 1, 'u' || (g % {users})
    FROM generate_series(1, {tasks}) g WHERE g % 2 = 1;
INSERT INTO task_dependencies (user_id, task_id, blocker_id)
    SELECT 'u' || (g % {users}), g, g - 2 * {users} FROM generate_series(2 * {users} + 1, {tasks}) g WHERE g % 50 = 7;
INSERT INTO notifications (user_id, task_id, remind_at, title, message)
    SELECT 'u' || (g % {users}), g, now() - g * interval '1 second', 'task ' || g, 'due soon'
    FROM generate_series(1, {tasks}) g WHERE g % 100 = 5;
INSERT INTO outbox (event_id, event_type, topics, message_key, task_id, user_id, payload, published_at)
    SELECT gen_random_uuid(), 'task.created', ARRAY['task-events'], 'u' || (g % {users}), g, 'u' || (g % {users}),
           jsonb_build_object('task_id', g), CASE WHEN g % 20 <> 0 THEN now() END
    FROM generate_series(1, {tasks}) g WHERE g % 10 = 0;
INSERT INTO dav_collection_names (user_id, segment, category_id)
    SELECT 'u' || u, 'list-' || u, u * 5 + 1 FROM generate_series(0, {users} - 1) u;
INSERT INTO dav_task_properties (user_id, task_id, href, kept)
    SELECT 'u' || (g % {users}), g, 'client-' || g || '.ics', 'X-KEPT:1' FROM generate_series(1, {tasks}) g
    WHERE g % 100 = 17;
SET session_replication_role = DEFAULT;
SELECT setval(pg_get_serial_sequence('categories', 'id'), (SELECT max(id) FROM categories));
SELECT setval(pg_get_serial_sequence('tags', 'id'), (SELECT max(id) FROM tags));
SELECT setval(pg_get_serial_sequence('tasks', 'id'), (SELECT max(id) FROM tasks));
"""

# Each probe statement touches one row of its table; its transaction is rolled back.
PROBES = {
    "tasks": "UPDATE tasks SET title = title WHERE user_id = 'u1' AND id = {users} + 1",
    "task_tags": "UPDATE task_tags SET tag_id = tag_id WHERE user_id = 'u1' AND task_id = 1",
    "outbox": "UPDATE outbox SET attempts = attempts WHERE user_id = 'u10' AND task_id = 10",
}
PROBE_EVERY_S = 0.05
SAMPLE_EVERY_S = 0.01


@dataclass
class LockFigures:
    migration_s: float = 0.0
    # table → the longest a probe's write on it waited (s), and how many probes ran
    probe_wait_s: dict[str, float] = field(default_factory=dict)
    probes: dict[str, int] = field(default_factory=dict)
    # table → the longest an ACCESS EXCLUSIVE lock on it was seen held (s)
    exclusive_s: dict[str, float] = field(default_factory=dict)


async def fill(dsn: str, tasks: int, users: int = USERS) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(FILL.format(tasks=tasks, users=users))
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def fingerprint(dsn: str) -> dict[str, tuple[int, int]]:
    """(rows, a hash of all of them) of each per-user table of revision 0007: a migration that keeps every row keeps
    these."""
    conn = await asyncpg.connect(dsn)
    try:
        result = {}
        for table in PER_USER_TABLES:
            if table not in OLD_TABLES:
                continue
            row = await conn.fetchrow(f"SELECT count(*), coalesce(sum(hashtext(x::text)::bigint), 0) FROM {table} x")
            assert row is not None
            result[table] = (int(row[0]), int(row[1]))
        return result
    finally:
        await conn.close()


async def _probe(dsn: str, sql: str, stop: asyncio.Event) -> tuple[float, int]:
    conn = await asyncpg.connect(dsn)
    longest, count = 0.0, 0
    try:
        while not stop.is_set():
            transaction = conn.transaction()
            await transaction.start()
            started = time.perf_counter()
            try:
                await conn.execute(sql)
                waited = time.perf_counter() - started
            finally:
                await transaction.rollback()  # the probe leaves the data as it found it
            longest, count = max(longest, waited), count + 1
            await asyncio.sleep(PROBE_EVERY_S)
    finally:
        await conn.close()
    return longest, count


async def _sampler(dsn: str, stop: asyncio.Event) -> dict[str, float]:
    """Longest continuous ACCESS EXCLUSIVE hold seen per per-user table."""
    conn = await asyncpg.connect(dsn)
    since: dict[str, float] = {}
    longest: dict[str, float] = {}
    sql = (
        "SELECT DISTINCT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.mode = 'AccessExclusiveLock' AND l.granted AND c.relname = ANY($1::text[])"
    )
    try:
        while not stop.is_set():
            now = time.perf_counter()
            held = {row[0] for row in await conn.fetch(sql, list(PER_USER_TABLES))}
            for table in held:
                since.setdefault(table, now)
                longest[table] = max(longest.get(table, 0.0), now - since[table] + SAMPLE_EVERY_S)
            for table in set(since) - held:
                del since[table]
            await asyncio.sleep(SAMPLE_EVERY_S)
    finally:
        await conn.close()
    return longest


async def migrate_under_probes(dsn: str, users: int = USERS) -> LockFigures:
    """Upgrade the database to head while the probes write and the sampler watches; the figures."""
    stop = asyncio.Event()
    probes = {t: asyncio.create_task(_probe(dsn, sql.format(users=users), stop)) for t, sql in PROBES.items()}
    sampler = asyncio.create_task(_sampler(dsn, stop))
    await asyncio.sleep(0.2)  # every probe has run once before the migration starts
    engine = create_engine(dsn, pool_size=1)
    figures = LockFigures()
    started = time.perf_counter()
    try:
        await migrate(engine)
    finally:
        figures.migration_s = time.perf_counter() - started
        await engine.dispose()
        await asyncio.sleep(0.2)
        stop.set()
    for table, task in probes.items():
        figures.probe_wait_s[table], figures.probes[table] = await task
    figures.exclusive_s = await sampler
    return figures


async def prepared_copy(factory: DatabaseFactory, tasks: int) -> str:
    """A new database at revision 0007 holding `tasks` tasks and their related rows."""
    dsn = await factory.create(migrated=False)
    engine = create_engine(dsn, pool_size=1)
    try:
        await migrate(engine, "0007")
    finally:
        await engine.dispose()
    await fill(dsn, tasks)
    return dsn


def report(tasks: int, fill_s: float, figures: LockFigures, rows: dict[str, tuple[int, int]], version: str) -> str:
    lines = [
        "# Migration 0008 on a large copy: how long it locks writers out",
        "",
        f"`.venv/bin/python -m bench.migration_locks --tasks {tasks}` on {platform.machine()}, {version}; "
        f"fill {fill_s:.1f} s (generate_series, {USERS} users). The migration ran while a writer per table updated "
        f"one row every {PROBE_EVERY_S * 1000:.0f} ms and pg_locks was sampled every {SAMPLE_EVERY_S * 1000:.0f} ms.",
        "",
        f"Migration (upgrade 0007 → head, 0008 the one that rekeys): {figures.migration_s:.1f} s in all, writes going "
        "on throughout.",
        "",
        "| table | longest write wait (probe) | probes | longest ACCESS EXCLUSIVE seen (pg_locks) |",
        "|---|---:|---:|---:|",
    ]
    for table in PER_USER_TABLES:
        wait = figures.probe_wait_s.get(table)
        exclusive = figures.exclusive_s.get(table)
        lines.append(
            f"| {table} | {'' if wait is None else f'{wait * 1000:.0f} ms'} | {figures.probes.get(table, '')} | "
            f"{'not seen' if exclusive is None else f'≤ {exclusive * 1000:.0f} ms'} |"
        )
    lines += [
        "",
        "Rows before and after (count; every row's hash compared too): "
        + ", ".join(f"{table} {count:,}" for table, (count, _) in rows.items())
        + ".",
        "",
        "The ACCESS EXCLUSIVE figure is a sampler's: a hold shorter than its 10 ms period can go unseen, and one it",
        "sees is rounded up to the period. The probes' wait includes their own round trip (about a millisecond).",
        "",
    ]
    return "\n".join(lines)


async def run(tasks: int) -> None:
    from bench.common import write_report
    from tests.support.database import postgres_server

    with postgres_server("mcp-todo-bench-locks-") as server:
        factory = DatabaseFactory(server.dsn, prefix="mcp_todo_locks")
        started = time.perf_counter()
        dsn = await prepared_copy(factory, tasks)
        fill_s = time.perf_counter() - started
        before = await fingerprint(dsn)
        figures = await migrate_under_probes(dsn)
        after = await fingerprint(dsn)
        assert before == after, (before, after)
        conn = await asyncpg.connect(dsn)
        version = str(await conn.fetchval("SHOW server_version")).split()[0]
        await conn.close()
        write_report("migration_locks", report(tasks, fill_s, figures, after, f"PostgreSQL {version}"))
        await factory.drop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    asyncio.run(run(parser.parse_args().tasks))


if __name__ == "__main__":
    main()
