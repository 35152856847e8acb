"""Every subprocess an end-to-end test starts watches its event loop (tests/support/processes.py turns the watchdog on
for all of them) and logs `event=loop_blocked` when a callback holds it: a test during which such a line appeared in
any process log under the session's temporary directory fails, naming the line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.engine import create_engine
from mcp_todo.settings import Settings
from tests.support.database import DatabaseFactory
from tests.support.processes import FAST_REJOIN_SESSION_TIMEOUT_MS, WorkerProcess, loop_blocked_lines, worker_env


class BlockedLoopLines:
    """The `event=loop_blocked` lines written to the `*.log` files under `root` since the last look: every helper
    here sends a subprocess's stderr to such a file (ServerProcess, WorkerProcess, stdio_session, …)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._read_up_to: dict[Path, int] = {}

    def new(self) -> list[str]:
        found: list[str] = []
        for path in sorted(self.root.rglob("*.log")):
            try:
                with path.open("rb") as log:
                    start = self._read_up_to.get(path, 0)
                    if start > log.seek(0, 2):  # written anew
                        start = 0
                    log.seek(start)
                    text = log.read()
            except OSError:  # removed meanwhile, or not a file
                continue
            complete = text[: text.rfind(b"\n") + 1]  # a line still being written is read whole next time
            self._read_up_to[path] = start + len(complete)
            found += [f"{path.name}: {line}" for line in loop_blocked_lines(complete.decode(errors="replace"))]
        return found


@pytest.fixture(scope="session")
def blocked_loop_lines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlockedLoopLines]:
    lines = BlockedLoopLines(tmp_path_factory.getbasetemp())
    yield lines
    # What module-scoped processes wrote after the last test (while they stopped).
    _fail_on(lines.new())


@pytest.fixture(autouse=True)
def no_blocked_loop(blocked_loop_lines: BlockedLoopLines) -> Iterator[None]:
    yield
    _fail_on(blocked_loop_lines.new())


def _fail_on(lines: list[str]) -> None:
    if lines:
        shown = "\n".join(line[:2000] for line in lines[:5])
        pytest.fail(f"a subprocess blocked its event loop ({len(lines)} time(s)):\n{shown}", pytrace=False)


# The e2e database and the worker binaries, shared by the worker tests.
@pytest.fixture
async def e2e_db(db_factory: DatabaseFactory) -> AsyncIterator[tuple[str, AsyncEngine]]:
    dsn = await db_factory.create()
    engine = create_engine(dsn, pool_size=3)
    try:
        yield dsn, engine
    finally:
        await engine.dispose()


@pytest.fixture
async def workers(
    e2e_db: tuple[str, AsyncEngine], kafka_settings: Settings, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[WorkerProcess]]]:
    started: list[WorkerProcess] = []

    async def start(name: str, **extra_env: str) -> WorkerProcess:
        env = worker_env(e2e_db[0], kafka_settings, session_timeout_ms=FAST_REJOIN_SESSION_TIMEOUT_MS, **extra_env)
        worker = await WorkerProcess(name, env, tmp_path).start()
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            await worker.close()
