"""Which statements would route to one shard of a database distributed by user_id: a small SQL tokenizer, the
per-user tables a statement reads or writes (after FROM, JOIN, UPDATE, INTO, with their aliases), whether it names
one user (`user_id = $n`, `user_id = ANY($n)`, `user_id IN (…)`, or an INSERT that writes user_id from a parameter),
and whether every per-user table it reads has a condition on its user_id (co-located joins).

A statement on a per-user table without one is a violation unless it is on `CROSS_SHARD`: the few statements that
read or write across users by design, each with what it does on a distributed database (docs/scaling.md repeats
the list). tests/e2e/test_routing.py runs the tools, the relay, the workers' handlers, the reminder scheduler, the
purge and import/export with pg_stat_statements and checks every statement it recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PER_USER_TABLES = frozenset(
    {
        "categories",
        "tags",
        "tasks",
        "task_tags",
        "task_dependencies",
        "notifications",
        "outbox",
        "user_settings",
        "dav_tombstones",
        "dav_collection_names",
        "dav_task_properties",
        "dav_sync_horizons",
    }
)
# Shared by every user: the token table (looked up by a secret before the user is known) and Alembic's version.
SHARED_TABLES = frozenset({"api_tokens", "alembic_version"})


@dataclass(frozen=True)
class CrossShard:
    name: str
    # Matched against the normalized statement with its whitespace collapsed.
    pattern: str
    behaviour: str


CROSS_SHARD: tuple[CrossShard, ...] = (
    CrossShard(
        "reminder due scan",
        r"SELECT t\.user_id, t\.id FROM tasks t WHERE t\.status = \$\d+ AND NOT t\.reminder_sent",
        "the scheduler's claim of every user's due reminders (FOR UPDATE SKIP LOCKED, earliest first, LIMIT): Citus "
        "refuses row locks in a multi-shard SELECT, so on Citus the claim is one multi-shard UPDATE … RETURNING of "
        "the due rows (no LIMIT; the workers' row locks make two schedulers claim each reminder once)",
    ),
    CrossShard(
        "next reminder",
        r"SELECT min\(remind_at\) FROM tasks WHERE status = \$\d+ AND NOT reminder_sent",
        "when the scheduler wakes next: a min() on every shard's partial index ix_tasks_reminder_due, merged on "
        "the coordinator; unchanged on Citus",
    ),
    CrossShard(
        "trash purge",
        r"DELETE FROM tasks WHERE deleted_at <",
        "the daily purge of every user's old trash (SELECT … FOR UPDATE SKIP LOCKED in a CTE, then DELETE): Citus "
        "refuses the row locks multi-shard, so on Citus it is a plain multi-shard DELETE … RETURNING whose NOT EXISTS "
        "(a live subtask) is co-located on (user_id, parent_id); one purge at a time by its advisory lock",
    ),
    CrossShard(
        "CalDAV tombstone prune",
        r"DELETE FROM dav_tombstones WHERE made_at <",
        "the daily purge's removal of every user's old CalDAV tombstones, moving each user's sync horizon: a "
        "multi-shard DELETE … RETURNING feeding an INSERT … ON CONFLICT by user_id; Citus runs it on each shard when "
        "the two tables are co-located (the rows grouped by user stay on their shard)",
    ),
    CrossShard(
        "relay claim",
        r"FROM outbox WHERE published_at IS NULL AND parked_at IS NULL AND \(task_id %",
        "the relay's claim of pending events (FOR UPDATE SKIP LOCKED, id order): unchanged with the outbox a Citus "
        "local table on the coordinator (the plan in docs/scaling.md); Citus would refuse it on a distributed outbox",
    ),
    CrossShard(
        "relay mark / fail",
        r"UPDATE outbox (AS o )?SET (published_at|attempts)",
        "the relay marking the rows it published or failed, by id through the pending index: on the "
        "coordinator's local outbox, unchanged",
    ),
    CrossShard(
        "outbox prune",
        r"DELETE FROM outbox WHERE \(user_id, id\) IN \(SELECT user_id, id FROM outbox WHERE published_at <",
        "the relay's retention of published rows, in chunks: on the coordinator's local outbox, unchanged",
    ),
    CrossShard(
        "outbox backlog",
        r"SELECT count\(\*\) AS pending",
        "the relay's gauge of waiting events, every few seconds: on the coordinator's local outbox, unchanged",
    ),
    CrossShard(
        "live feed (local mode)",
        r"SELECT id, payload FROM outbox WHERE id > \$\d+ OR id = ANY|SELECT coalesce\(max\(id\), \$\d+\) FROM outbox",
        "local mode's live feed reading the outbox rows newer than an id (ix_outbox_id): local mode runs on one "
        "PostgreSQL, and on Citus the outbox is the coordinator's local table, so unchanged",
    ),
    CrossShard(
        "undelivered notifications",
        r"FROM notifications WHERE delivered_at IS NULL AND created_at >",
        "local mode's resend of undelivered notifications at start: one multi-shard read, merged on the "
        "coordinator; unchanged on Citus",
    ),
    CrossShard(
        "worker batches by (user_id, id)",
        r"unnest\((CAST\(\$\d+ AS \w+\[\]\), )*CAST\(\$\d+ AS text\[\]\)",
        "the workers' batches (events of many users from one Kafka poll) and the scheduler's marking of "
        "what it claimed, joined on (user_id, id) pairs: multi-shard, each row by its full key; the recurrer's FOR "
        "SHARE of the completed tasks is refused multi-shard by Citus, so on Citus it splits its batch by user",
    ),
    CrossShard(
        "outbox write",
        r"INSERT INTO outbox \(.*\) SELECT .* FROM jsonb_to_recordset\(",
        "a transaction's events from one JSON parameter: into the coordinator's local outbox in the "
        "transaction of the change on the user's worker (Citus commits the two with two-phase commit)",
    ),
    CrossShard(
        "known users",
        r"SELECT DISTINCT user_id FROM|SELECT user_id FROM \w+ UNION",
        "the list of users (export --all-users, doctor): a multi-shard scan of the user keys, by an operator; "
        "unchanged on Citus",
    ),
)


@dataclass(frozen=True)
class Violation:
    query: str
    tables: frozenset[str]  # the per-user tables read or written without a user_id condition


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<param>\$\d+)
    | (?P<number>\d+(?:\.\d+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<op>::|<>|!=|<=|>=|\|\||[=<>+\-*/%(),.;\[\]:])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(sql: str) -> list[str]:
    """The statement's tokens, comments and whitespace dropped, words and quoted names folded to lower case."""
    tokens = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        value = match.group()
        if kind in ("space", "comment"):
            continue
        if kind == "word":
            value = value.lower()
        elif kind == "quoted":
            value = value[1:-1].replace('""', '"').lower()
        tokens.append(value)
    return tokens


_TABLE_CONTEXT = {"from", "join", "update", "into"}
_FROM_LIST_ENDS = {"where", "join", "on", "group", "order", "limit", "returning", "set", "union", "values"}


_NOT_ALIASES = {
    "where", "join", "on", "left", "right", "inner", "outer", "cross", "full", "natural", "using", "set", "group",
    "order", "limit", "returning", "values", "union", "for", "lateral", "with", "select", "default", "offset",
    "(", ")", ",", ";",
}  # fmt: skip


@dataclass(frozen=True)
class Reference:
    table: str
    alias: str  # the table's own name when it has no alias
    written: bool  # the target of an INSERT (its rows' user_id is checked with the statement's values)


def references(tokens: list[str]) -> list[Reference]:
    """The tables the statement names after FROM, JOIN, UPDATE, INTO (and in a FROM list's commas), with aliases."""
    found: list[Reference] = []
    in_from_list = False
    depth_of_from = -1
    depth = 0
    for i, token in enumerate(tokens):
        if token == "(":
            depth += 1
            continue
        if token == ")":
            depth -= 1
            if depth < depth_of_from:
                in_from_list = False
            continue
        previous = tokens[i - 1] if i else ""
        if previous == "only":
            previous = tokens[i - 2] if i > 1 else ""
        if previous in _TABLE_CONTEXT or (in_from_list and previous == "," and depth == depth_of_from):
            table, after = token, i + 1
            if after < len(tokens) and tokens[after] == ".":
                table, after = (tokens[after + 1] if after + 1 < len(tokens) else token), after + 2  # schema.table
            if after < len(tokens) and tokens[after] == "as":
                after += 1
            alias = tokens[after] if after < len(tokens) and tokens[after] not in _NOT_ALIASES else table
            found.append(Reference(table, alias, previous == "into"))
        if token == "from":
            in_from_list, depth_of_from = True, depth
        elif token in _FROM_LIST_ENDS and depth == depth_of_from:
            in_from_list = False
    return found


def tables_of(tokens: list[str]) -> set[str]:
    """The tables the statement names after FROM, JOIN, UPDATE, INTO (and in a FROM list's commas)."""
    return {reference.table for reference in references(tokens)}


def _compared(tokens: list[str], i: int, width: int) -> bool:
    """Whether the column reference tokens[i:i+width] is one side of `=`, `= ANY (…)` or `IN (…)`."""
    after = tokens[i + width : i + width + 2]
    before = tokens[i - 1] if i else ""
    return (after[:1] == ["="]) or (after[:2] == ["in", "("]) or before == "="


def user_id_conditions(tokens: list[str]) -> tuple[set[str], bool]:
    """(the aliases whose user_id is compared with something, whether an unqualified user_id is)."""
    aliases: set[str] = set()
    unqualified = False
    for i, token in enumerate(tokens):
        if token != "user_id":
            continue
        if i >= 2 and tokens[i - 1] == ".":
            if _compared(tokens, i - 2, 3):
                aliases.add(tokens[i - 2])
        elif _compared(tokens, i, 1):
            unqualified = True
    return aliases, unqualified


def names_one_user(tokens: list[str]) -> bool:
    """Whether the statement compares user_id with a parameter (= $n, = ANY ($n), IN ($n, …)) or inserts rows with
    a user_id from its VALUES or parameters."""
    for i, token in enumerate(tokens):
        if token != "user_id":
            continue
        after = tokens[i + 1 : i + 5]
        if after[:2] and after[0] == "=" and after[1].startswith("$"):
            return True
        if after[:3] == ["=", "any", "("] and len(after) > 3 and after[3].startswith("$"):
            return True
        if after[:2] == ["in", "("] and len(after) > 2 and after[2].startswith("$"):
            return True
        before = tokens[max(0, i - 3) : i]
        if before[-2:] and before[-1] == "." and len(before) >= 2:
            before = tokens[max(0, i - 4) : i - 2]
        if len(before) >= 2 and before[-1] == "=" and before[-2].startswith("$"):
            return True
    return any(_inserts_one_user(tokens, i) for i, token in enumerate(tokens) if token == "insert")


def _inserts_one_user(tokens: list[str], i: int) -> bool:
    """Whether the INSERT at tokens[i] writes user_id from a parameter: `INSERT INTO t (…, user_id, …)` followed by
    `VALUES (…, $n, …)` or `SELECT …, $n, …` at the same position."""
    if tokens[i + 1 : i + 2] != ["into"] or tokens[i + 3 : i + 4] != ["("]:
        return False
    end = tokens.index(")", i + 4)
    columns = [token for token in tokens[i + 4 : end] if token != ","]
    if "user_id" not in columns:
        return False
    position = columns.index("user_id")
    rest = tokens[end + 1 :]
    if rest[:2] == ["values", "("]:
        rest = rest[2:]
    elif rest[:1] == ["select"]:
        rest = rest[1:]
    else:
        return False
    items = _top_level_items(rest)
    if position >= len(items):
        return False
    item = items[position]
    # $n, $n::type or CAST($n AS type)
    if item and item[0].startswith("$") and (len(item) == 1 or item[1] == "::"):
        return True
    return item[:2] == ["cast", "("] and len(item) > 2 and item[2].startswith("$")


def _top_level_items(tokens: list[str]) -> list[list[str]]:
    """The comma-separated items of a select list or VALUES tuple, up to its end (FROM, a closing parenthesis)."""
    items: list[list[str]] = [[]]
    depth = 0
    for token in tokens:
        if depth == 0 and (token in ("from", "where", ";", "returning", "on") or token == ")"):
            break
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if depth == 0 and token == ",":
            items.append([])
            continue
        items[-1].append(token)
    return items


def _index(tokens: list[str], value: str) -> int:
    return tokens.index(value) if value in tokens else len(tokens)


def cross_shard_entry(query: str) -> CrossShard | None:
    flat = " ".join(query.split())
    flat = re.sub(r"\( ", "(", re.sub(r" \)", ")", flat))
    spaced = " ".join(tokenize_spaced(query))
    for entry in CROSS_SHARD:
        if re.search(entry.pattern, flat) or re.search(entry.pattern, spaced):
            return entry
    return None


def tokenize_spaced(sql: str) -> list[str]:
    """The tokens with their original case (for matching the named list on a normalized spacing)."""
    return [m.group() for m in _TOKEN.finditer(sql) if m.lastgroup not in ("space", "comment")]


def unrouted(tokens: list[str]) -> frozenset[str]:
    """The per-user tables that keep the statement from running on one shard: every one when it names no user, else
    those it reads without a condition on their user_id (an equality with a parameter or with another table's
    user_id, which carries the one parameter over on a co-located join)."""
    refs = [reference for reference in references(tokens) if reference.table in PER_USER_TABLES]
    if not refs:
        return frozenset()
    if not names_one_user(tokens):
        return frozenset(reference.table for reference in refs)
    aliases, unqualified = user_id_conditions(tokens)
    return frozenset(
        reference.table
        for reference in refs
        if not reference.written and reference.alias not in aliases and not unqualified
    )


def check(queries: list[str]) -> tuple[list[Violation], dict[str, list[str]]]:
    """(the statements on per-user tables that do not route to one user's shard and are on no list, the listed ones
    seen, by name)."""
    violations: list[Violation] = []
    listed: dict[str, list[str]] = {}
    for query in queries:
        tables = unrouted(tokenize(query))
        if not tables:
            continue
        entry = cross_shard_entry(query)
        if entry is not None:
            listed.setdefault(entry.name, []).append(query)
            continue
        violations.append(Violation(query, tables))
    return violations, listed
