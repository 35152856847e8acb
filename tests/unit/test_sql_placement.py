"""Every SQL statement lives in `mcp_todo/db/`: the rest of `mcp_todo/` and `workers/` calls named functions there.

Read from the source with `ast` (nothing is imported): outside db/ no string literal may read as an SQL statement
(an f-string is read with its placeholders filled in), and nothing may build one with SQLAlchemy (`text()`,
`select()`, `insert()`, `update()`, `delete()`, `func.…`, … imported from any `sqlalchemy` module; a Core table,
from `table_of` or `__table__`, whose only use is building statements; a db/ table's own `insert()` …), and no
connection may run one of db/'s statement objects itself. The checker itself is held to samples of the SQL that
lived outside db/ before it moved there, and to look-alikes it must leave alone (log lines, docstrings, dict.update).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
PACKAGES: Final = ("mcp_todo", "workers")
SQL_HOME: Final = ROOT / "mcp_todo" / "db"

# The opening of a statement, in upper case as this project writes SQL, followed by what makes it a statement and
# not a word of a message: "LISTEN mcp_todo_outbox" is SQL, "LISTEN connection failed; polling" a log line.
_STATEMENT: Final = re.compile(
    r"""^\s*(?:
        SELECT(?:\s+\S|\s*$)
      | INSERT\s+INTO\s
      | UPDATE\s+\w+(?:\s+\w+)?\s+SET\s
      | DELETE\s+FROM\s
      | WITH\s+(?:RECURSIVE\s+)?\w+(?:\s*\([\w\s,]*\))?\s+AS\s+(?:(?:NOT\s+)?MATERIALIZED\s+)?\(
      | MERGE\s+INTO\s
      | (?:TRUNCATE|VACUUM|ANALYZE|EXPLAIN|REINDEX|CLUSTER)\s+[\w("]
      | COPY\s+[\w"(]+.*\b(?:FROM|TO)\b
      | LOCK\s+(?:TABLE\s+)?\w+\s*(?:IN\s|;|$)
      | (?:UN)?LISTEN\s+[\w"*]+\s*;?\s*$
      | NOTIFY\s+[\w"]+\s*(?:,|;|$)
      | (?:CREATE|ALTER|DROP)\s+(?:OR\s+REPLACE\s+|UNIQUE\s+|TEMP(?:ORARY)?\s+|MATERIALIZED\s+)*
        (?:TABLE|INDEX|VIEW|SEQUENCE|SCHEMA|EXTENSION|FUNCTION|PROCEDURE|TRIGGER|TYPE|ROLE|USER|DATABASE|POLICY
          |PUBLICATION|SUBSCRIPTION|DOMAIN)\b
      | SET\s+(?:LOCAL\s+|SESSION\s+)?(?:\w+\.)?\w+\s*(?:=|TO\s)
      | (?:SHOW|RESET)\s+(?:\w+\.)?\w+\s*;?\s*$
      | (?:BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION)\s*;?\s*$
      | (?:SAVEPOINT|RELEASE\s+SAVEPOINT|ROLLBACK\s+TO\s+SAVEPOINT)\s+\w+\s*;?\s*$
      | (?:LEFT|RIGHT|FULL|INNER|CROSS)\s+(?:OUTER\s+)?JOIN\s
      | (?:ORDER|GROUP)\s+BY\s
      | RETURNING\s+[\w*]
      | ON\s+CONFLICT\b
      | FOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE)\b
    )""",
    re.VERBOSE,
)

# What SQLAlchemy builds SQL with, under the names its modules export them by.
_BUILDERS: Final = frozenset(
    {
        "text",
        "select",
        "insert",
        "update",
        "delete",
        "func",
        "literal",
        "literal_column",
        "column",
        "table",
        "union",
        "union_all",
        "exists",
        "lateral",
        "values",
        "bindparam",
        "and_",
        "or_",
        "not_",
        "case",
        "cast",
        "tuple_",
    }
)
_PLACEHOLDER: Final = "x"
# The methods a connection (SQLAlchemy's or asyncpg's) runs a statement with.
_RUNS: Final = frozenset(
    {"execute", "executemany", "scalar", "scalars", "stream", "stream_scalars", "fetch", "fetchrow", "fetchval"}
)


def _is_sql(value: str) -> bool:
    return _STATEMENT.match(value) is not None


def _fstring_text(node: ast.JoinedStr) -> str:
    return "".join(
        part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else _PLACEHOLDER
        for part in node.values
    )


def _is_db_module(node: ast.ImportFrom) -> bool:
    module = node.module or ""
    head = module.split(".")[0] if node.level else ".".join(module.split(".")[:2])
    return head == ("db" if node.level else "mcp_todo.db")


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def sql_found(source: str, filename: str = "<sample>") -> list[str]:
    """Where `source` holds SQL text or builds SQL with SQLAlchemy: one `line: what` entry for each."""
    tree = ast.parse(source, filename=filename)
    builders: dict[str, str] = {}  # local name → the SQLAlchemy builder it is
    sqlalchemy_modules: set[str] = set()  # local names of `import sqlalchemy…` modules
    from_db: set[str] = set()  # local names of what was imported from mcp_todo.db (statements, modules)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy" and not node.level:
            for alias in node.names:
                if alias.name in _BUILDERS:
                    builders[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and _is_db_module(node):
            from_db.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "mcp_todo" and not node.level:
            from_db.update(alias.asname or alias.name for alias in node.names if alias.name == "db")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlalchemy":
                    sqlalchemy_modules.add(alias.asname or alias.name.split(".")[0])
                elif alias.name == "mcp_todo.db" or alias.name.startswith("mcp_todo.db."):
                    from_db.add(alias.asname or "mcp_todo")

    skipped: set[int] = set()  # docstrings, and the pieces of f-strings (read whole)
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            skipped.add(id(node.value))
        elif isinstance(node, ast.JoinedStr):
            skipped.update(id(part) for part in node.values)

    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "__table__":
            found.append(f"{node.lineno}: a Core table ({ast.unparse(node)}), built to write statements with")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            if _is_sql(node.value):
                found.append(f"{node.lineno}: SQL text {node.value[:60]!r}")
        elif isinstance(node, ast.JoinedStr) and id(node) not in skipped:
            if _is_sql(_fstring_text(node)):
                found.append(f"{node.lineno}: SQL f-string {_fstring_text(node)[:60]!r}")
        elif isinstance(node, ast.Call):
            called = node.func
            root = _root_name(called)
            if isinstance(called, ast.Name) and called.id in builders:
                found.append(f"{node.lineno}: SQLAlchemy {builders[called.id]}()")
            elif isinstance(called, ast.Attribute) and root in builders:
                found.append(f"{node.lineno}: SQLAlchemy {builders[root]}.{called.attr}()")
            elif isinstance(called, ast.Attribute) and root in sqlalchemy_modules and called.attr in _BUILDERS:
                found.append(f"{node.lineno}: SQLAlchemy {root}.{called.attr}()")
            elif isinstance(called, ast.Name) and called.id == "table_of":
                found.append(f"{node.lineno}: a Core table (table_of), built to write statements with")
            elif (
                isinstance(called, ast.Attribute)
                and called.attr in ("select", "insert", "update", "delete")
                and not node.args
                and not node.keywords
                and root in from_db
            ):
                found.append(f"{node.lineno}: a Core statement on a table of db/ ({ast.unparse(called)}())")
            elif (
                isinstance(called, ast.Attribute)
                and called.attr in _RUNS
                and node.args
                and isinstance(node.args[0], ast.Name | ast.Attribute)
                and _root_name(node.args[0]) in from_db
            ):
                found.append(f"{node.lineno}: runs a statement of db/ ({ast.unparse(node.args[0])}), not a function")
    return sorted(set(found), key=lambda entry: int(entry.split(":")[0]))


def _modules_outside_db() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if not path.is_relative_to(SQL_HOME)
    ]


def test_no_module_outside_db_holds_or_builds_sql() -> None:
    modules = _modules_outside_db()
    assert len(modules) > 50, "the walk found too few modules to have looked in the right place"
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in modules
        if (found := sql_found(path.read_text(encoding="utf-8"), str(path)))
    }
    assert offenders == {}, "SQL outside mcp_todo/db/ (give it a named function there):\n" + "\n".join(
        f"  {path}: {entry}" for path, entries in offenders.items() for entry in entries
    )


@pytest.mark.parametrize(
    "module",
    [
        "tasks.py",  # composed text(): shape_select and the data-modifying CTEs
        "labels.py",  # SQLAlchemy Core
        "outbox.py",  # raw asyncpg, $n parameters
        "porting.py",  # moved here from the import and export
        "purge.py",  # moved here from the trash purge job
    ],
)
def test_the_check_sees_the_sql_in_db_in_each_style(module: str) -> None:
    """The checker is alive on real code: each of db/'s styles is found where it belongs."""
    assert sql_found((SQL_HOME / module).read_text(encoding="utf-8"))


# Verbatim from the modules outside db/ that held SQL before it moved (the trash purge job, the export's source, the
# import's store, doctor), and the other ways of writing SQL the check must see.
OLD_SQL_OUTSIDE_DB: Final = {
    "advisory lock in text()": """
from sqlalchemy import text
_LOCK: Final = text("SELECT pg_try_advisory_xact_lock(hashtextextended('mcp-todo:trash-purge', 0))")
""",
    "a statement joined from f-strings": """
_OWNERS: Final = ("tasks", "categories", "tags", "user_settings", "api_tokens")
_KNOWN_USERS: Final = " UNION ".join(f"SELECT user_id FROM {table}" for table in _OWNERS) + " ORDER BY 1"
""",
    "a statement's head added to its tail": """
_USER_KNOWN: Final = text(
    "SELECT " + " OR ".join(f"EXISTS (SELECT 1 FROM {table} WHERE user_id = :user_id)" for table in _OWNERS)
)
""",
    "implicitly joined literals": """
_KNOWN: Final = (
    "SELECT t.*, (SELECT array_agg(tt.tag_id) FROM task_tags tt WHERE tt.task_id = t.id) AS tag_ids "
    "FROM tasks t WHERE t.user_id = :user_id"
)
""",
    "Core select() of func": """
from sqlalchemy import func, select
async def next_id(conn):
    return await conn.scalar(select(func.nextval(func.pg_get_serial_sequence("tasks", "id"))))
""",
    "a Core table's insert()": """
from mcp_todo.db.models import Task, table_of
_tasks = table_of(Task)
async def add(conn, values):
    await conn.execute(_tasks.insert().values(**values))
""",
    "a db table's own statement methods": """
from mcp_todo.db import porting as porting_db
from mcp_todo.db.models import Task
async def wipe(conn, task_id):
    await conn.execute(porting_db._task_tags.delete().where(porting_db._task_tags.c.task_id == task_id))
    await conn.execute(Task.__table__.insert().values(id=task_id))
""",
    "raw asyncpg SHOW": """
async def version(conn):
    return await conn.fetchval("SHOW server_version", timeout=3.0)
""",
    "sa.select through a module alias": """
import sqlalchemy as sa
statement = sa.select(sa.column("id"))
""",
    "an UPDATE built in an f-string": """
def statement(assignments):
    return f"WITH changed AS (UPDATE tasks SET {assignments}updated_at = :now RETURNING *) SELECT * FROM changed"
""",
    "a dialect insert under another name": """
from sqlalchemy.dialects.postgresql import insert as pg_insert
statement = pg_insert(table).values(x=1).on_conflict_do_nothing()
""",
    "a statement of db/ run outside it": """
from mcp_todo.db.engine import CUSTOM_PLANS
async def batch(engine):
    async with engine.begin() as conn:
        await conn.execute(CUSTOM_PLANS)
""",
    "a private statement of a db module run outside it": """
from mcp_todo.db import tasks as tasks_db
async def peek(conn, user_id, task_id):
    return await conn.execute(tasks_db._FETCH, {"user_id": user_id, "task_id": task_id})
""",
    "a statement reached through the db package": """
from mcp_todo import db
import mcp_todo.db.outbox
async def peek(conn):
    await conn.execute(db.tasks._FETCH)
    await conn.execute(mcp_todo.db.outbox._INSERT)
""",
    "LISTEN on a raw connection": """
async def listen(conn):
    await conn.execute("LISTEN mcp_todo_reminders")
""",
    "a join fragment": """
JOIN: Final = "LEFT JOIN categories c ON c.id = t.category_id AND c.user_id = t.user_id"
""",
    "a locking clause": """
clause = "FOR UPDATE SKIP LOCKED"
""",
}

NOT_SQL: Final = {
    "log lines and messages that start with a keyword": """
log.warning("LISTEN connection failed; polling", extra={"error": name})
log.info("LISTEN connection restored")
raise ValueError("Update the task first, then delete it")
""",
    "docstrings that quote SQL": '''
def claim():
    """SELECT … FOR UPDATE SKIP LOCKED: each row once, whichever replica asks."""
''',
    "methods named like statements": """
changes.update(status="pending")
seen.update(ids)
items.insert(0, first)
queue.select()
""",
    "sqlalchemy names that build no SQL": """
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy import exc as sa_exc
""",
    "db functions called with a connection": """
from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.engine import use_custom_plans
async def read(conn, ctx, user_id, task_id):
    await use_custom_plans(conn)
    await tasks_db.update(conn, user_id, task_id, {}, ctx.now)
    return await tasks_db.fetch(conn, user_id, task_id)
""",
    "an f-string that names a setting": """
note = f"SET {name} in the environment to change it"
""",
}


@pytest.mark.parametrize("sample", sorted(OLD_SQL_OUTSIDE_DB))
def test_the_check_finds_sql_written_the_old_ways(sample: str) -> None:
    assert sql_found(OLD_SQL_OUTSIDE_DB[sample]), f"not seen: {sample}"


@pytest.mark.parametrize("sample", sorted(NOT_SQL))
def test_the_check_leaves_look_alikes_alone(sample: str) -> None:
    assert sql_found(NOT_SQL[sample]) == []
