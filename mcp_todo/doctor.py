"""`mcp-todo doctor`: the state of this installation as the settings describe it, each part checked briefly.

Every check has a short timeout, so an unreachable database or broker is reported in seconds, not after a
connection's default wait; nothing is changed (an embedded database that was never created is not created here).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from mcp_todo import __version__
from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.settings import Settings

# Long enough for a database or broker on another continent to answer, short enough that `doctor` on a dead host
# is done before a person wonders whether it hangs.
CHECK_TIMEOUT_S: Final = 3.0
# The worker binaries' entry points are the top-level import package `workers`, a name an old PyPI distribution
# (`workers` 0.1) installs too: two distributions in one environment write the same `workers/__init__.py`, and
# uninstalling either removes it for both (docs/architecture.md, "The import name `workers`").
WORKERS_PACKAGE: Final = "workers"
OWN_DISTRIBUTION: Final = "mcp-todo-server"  # pyproject.toml's name


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was looked at, what was found, and what is wrong with it (None: nothing)."""

    name: str
    value: str
    problem: str | None = None


def _data_dir(settings: Settings) -> Finding:
    path = settings.data_dir
    if settings.database_url is not None:
        return Finding("data directory", f"{path} (unused: DATABASE_URL is set)")
    if not path.exists():
        return Finding("data directory", f"{path} (not created yet; the first `mcp-todo` creates it)")
    if not os.access(path, os.W_OK | os.X_OK):
        return Finding("data directory", str(path), f"{path} is not writable by this user")
    return Finding("data directory", str(path))


def _canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def workers_package(providers: Mapping[str, list[str]] | None = None) -> Finding:
    """Whether a distribution other than mcp-todo-server installs the import package `workers` here (`providers`: import
    name to distributions, as `importlib.metadata.packages_distributions` reads them from this environment)."""
    providers = importlib.metadata.packages_distributions() if providers is None else providers
    others = sorted({name for name in providers.get(WORKERS_PACKAGE, []) if _canonical(name) != OWN_DISTRIBUTION})
    if not others:
        return Finding("workers package", "mcp-todo-server's own (no other distribution installs `workers` here)")
    named = ", ".join(others)
    return Finding(
        "workers package",
        f"also installed by {named}",
        f"{named} installs an import package `workers` too, into the directory of mcp-todo's worker binaries: "
        "install mcp-todo in an environment of its own (uvx, the Docker image, a venv)",
    )


async def _database(settings: Settings) -> list[Finding]:
    """The database (password hidden), whether it answers, and its schema revision against this version's."""
    from mcp_todo.db.embedded import start_embedded
    from mcp_todo.db.engine import connect, create_engine, normalize_dsn, redact_dsn, server_version
    from mcp_todo.db.migrate import current_revision, head_revision

    head = head_revision()
    if settings.database_url is None:
        pgdata = settings.data_dir / "pgdata"
        shown = f"embedded PostgreSQL in {pgdata}"
        if not pgdata.exists():
            return [
                Finding("database", f"{shown} (not created yet)"),
                Finding("schema", f"none yet; the server migrates the embedded database to {head} at start"),
            ]
        dsn = await start_embedded(settings.data_dir)
    else:
        dsn = normalize_dsn(settings.database_url.get_secret_value())
        shown = redact_dsn(dsn)
        if settings.direct_database_url is not None:
            # DATABASE_URL is a transaction-mode pooler: it must answer, and the probes below take the direct URL.
            await (await connect(dsn, timeout_s=CHECK_TIMEOUT_S)).close()
            dsn = normalize_dsn(settings.direct_database_url.get_secret_value(), "MCP_TODO_DIRECT_DATABASE_URL")
            shown = f"{shown} (pooled), direct {redact_dsn(dsn)}"
    conn = await connect(dsn, timeout_s=CHECK_TIMEOUT_S)
    try:
        version = await server_version(conn, timeout_s=CHECK_TIMEOUT_S)
    finally:
        await conn.close()
    database = Finding("database", f"{shown} (PostgreSQL {version}, reachable)")
    engine = create_engine(dsn, pool_size=1)
    try:
        current = await current_revision(engine)
    finally:
        await engine.dispose()
    if current == head:
        return [database, Finding("schema", f"revision {current} (current)")]
    if current is None:
        return [database, Finding("schema", "empty", "the database has no mcp-todo schema: run `mcp-todo migrate`")]
    return [
        database,
        Finding(
            "schema",
            f"revision {current}, this version's is {head}",
            f"the schema is at {current}, not {head}: run `mcp-todo migrate` (or upgrade mcp-todo if it is newer)",
        ),
    ]


async def _broker(settings: Settings) -> Finding:
    from mcp_todo.pipeline.kafka import check_broker

    if settings.local_mode:
        return Finding("broker", "none (local mode: KAFKA_BOOTSTRAP_SERVERS is unset)")
    where = f"{settings.kafka_bootstrap_servers} ({settings.kafka_security_protocol})"
    try:
        await check_broker(settings, timeout_s=CHECK_TIMEOUT_S)
    except ConfigurationError as exc:
        return Finding("broker", f"{where}, not reachable", str(exc))
    return Finding("broker", f"{where}, reachable")


def _mode(settings: Settings) -> Finding:
    if settings.local_mode:
        workers = "local: the notifier and recurrer run inside the server, fed from the outbox"
    else:
        workers = "Kafka: run mcp-todo-notifier and mcp-todo-recurrer beside the server"
    storage = "embedded database" if settings.database_url is None else "DATABASE_URL"
    auth = "HTTP needs `mcp-todo token create` tokens"
    if settings.oauth_issuer:
        auth += f" or OAuth tokens from {settings.oauth_issuer}"
    return Finding("mode", f"{workers}; {storage}; {auth}")


async def diagnose(settings: Settings) -> list[Finding]:
    """Every finding, in the order they are printed."""
    findings = [
        Finding("version", f"mcp-todo {__version__}"),
        workers_package(),
        _data_dir(settings),
    ]
    try:
        findings += await _database(settings)
    except ConfigurationError as exc:
        from mcp_todo.db.migrate import head_revision

        findings.append(Finding("database", "not usable", str(exc)))
        findings.append(Finding("schema", f"unknown (this version's is {head_revision()})"))
    findings.append(await _broker(settings))
    findings += [
        Finding("user", f"{settings.user} (the user a stdio server acts for)"),
        Finding("zone", f"{settings.timezone} (MCP_TODO_TIMEZONE; unset: the host's zone)"),
        _mode(settings),
    ]
    if settings.notify_url_list:
        findings.append(Finding("notify", f"{len(settings.notify_url_list)} Apprise target(s) (not shown)"))
    return findings


def report_lines(findings: list[Finding]) -> list[str]:
    """`name  value` lines, and under each problem `  problem: …`."""
    width = max(len(finding.name) for finding in findings)
    lines = []
    for finding in findings:
        lines.append(f"{finding.name:<{width}}  {finding.value}")
        if finding.problem:
            lines.append(f"{'':<{width}}  problem: {finding.problem}")
    return lines


def summary(findings: list[Finding]) -> str | None:
    """One line naming every problem, or None when there is none."""
    problems = [f"{finding.name}: {finding.problem}" for finding in findings if finding.problem]
    if not problems:
        return None
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    return f"{count} — " + "; ".join(problems)
