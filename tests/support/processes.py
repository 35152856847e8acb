"""The project's binaries as real subprocesses: a clean environment for them, and the two workers with their logs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from mcp_todo.settings import Settings
from tests.support.polling import eventually
from tests.support.pooler import database_env

BIN = Path(sys.executable).parent  # the virtualenv's console scripts: mcp-todo, mcp-todo-recurrer, mcp-todo-notifier
REPO_ROOT = Path(__file__).resolve().parents[2]
# A group join on tansu takes ~5 s; after a SIGKILL the dead member's session must expire first.
READY_TIMEOUT_S = 45.0
# tansu completes a join only once the previous members' sessions have expired (it ignores LeaveGroup), so with
# aiokafka's 10 s session a restarted worker waits ~18 s to get its partitions; 2 s makes it a few seconds.
FAST_REJOIN_SESSION_TIMEOUT_MS = 2000
_OWN_VARIABLES = ("KAFKA_", "MCP_TODO_", "DATABASE_URL")
# Every subprocess watches its event loop (mcp_todo/runtime/watchdog.py) and logs `event=loop_blocked` when a
# callback holds it longer than this; tests/e2e/conftest.py fails the test whose processes logged one. 250 ms: a
# tool call takes a few milliseconds and a batch tens, so a quarter second on the loop is a blocking call (a regex
# gone exponential, sync I/O), never honest work; and it stays clear of the scheduling noise of a loaded 2-core CI
# machine, where a process waits for a CPU for tens of milliseconds at times.
LOOP_WATCHDOG_ENV = {"MCP_TODO_LOOP_WATCHDOG_MS": "250"}
LOOP_BLOCKED = "event=loop_blocked"


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without the project's own variables (nothing from a developer's shell steers the
    subprocess), with the loop watchdog on, plus `variables`."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_OWN_VARIABLES)} | LOOP_WATCHDOG_ENV | variables


def loop_blocked_lines(text: str) -> list[str]:
    """The lines of a process's log that report a blocked event loop."""
    return [line for line in text.splitlines() if LOOP_BLOCKED in line]


def worker_env(dsn: str, settings: Settings, *, session_timeout_ms: int | None = None, **extra: str) -> dict[str, str]:
    """What a worker binary needs to run on `dsn` and `settings`' broker and topic prefix (tansu: no idempotence)."""
    assert settings.kafka_bootstrap_servers is not None
    env = clean_env(
        **database_env(dsn),
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        KAFKA_TOPIC_PREFIX=settings.kafka_topic_prefix,
        KAFKA_ENABLE_IDEMPOTENCE="false",
        MCP_TODO_LOG_LEVEL="INFO",
    )
    if session_timeout_ms is not None:
        env["KAFKA_CONSUMER_SESSION_TIMEOUT_MS"] = str(session_timeout_ms)
    return env | extra


def pid_cpu_seconds(pid: int) -> float | None:
    """User + system CPU a process has used so far (Linux /proc); None when it is not readable (not on this host)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerProcess:
    """A worker binary (or `mcp-todo` with `args`) in a subprocess, its stderr and stdout written to files in
    `log_dir` (read back as `lines` and `stdout`): the test or benchmark process spends nothing on relaying them.

    With `own_group`, it runs in a process group of its own and `kill()` kills the whole group, so nothing it
    started outlives it (the chaos soak kills and restarts processes many times)."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_dir: Path,
        *,
        args: Sequence[str] = (),
        own_group: bool = False,
    ) -> None:
        self.name = name
        self.env = env
        self.args = tuple(args)
        self.own_group = own_group
        self.cwd = log_dir  # no stray .env
        stem = f"{name}-{uuid.uuid4().hex[:6]}"
        self.log_path = log_dir / f"{stem}.stderr.log"
        self.stdout_path = log_dir / f"{stem}.stdout"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Self:
        # The child keeps its own descriptors of both files; ours close at once.
        with self.log_path.open("wb") as stderr, self.stdout_path.open("wb") as stdout:
            self.proc = await asyncio.create_subprocess_exec(
                str(BIN / self.name),
                *self.args,
                env=self.env,
                start_new_session=self.own_group,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def lines(self) -> list[str]:
        """Its log lines so far."""
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    @property
    def stdout(self) -> bytes:
        return self.stdout_path.read_bytes() if self.stdout_path.exists() else b""

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.lines[-n:])

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Wait for its `msg=ready` line (its consumer has partitions); returns the time.monotonic() it was seen."""

        def ready() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}")
            return any(" msg=ready " in f"{line} " for line in self.lines)

        try:
            return await eventually(ready, timeout_s, f"{self.name} is ready", interval_s=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.tail()}") from None

    def kill(self) -> None:
        """SIGKILL (its whole group with `own_group`), as when its host dies; `stop()` or `close()` reaps it."""
        assert self.proc is not None
        if self.own_group and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it has just exited: nothing left to kill
                os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> tuple[int, float]:
        """Signal the worker and wait for it to exit; returns (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"{self.name} did not exit within {timeout_s} s: {self.tail()}") from None
        return code, time.monotonic() - started

    async def close(self) -> None:
        """Kill it if it still runs (teardown after a failure)."""
        if self.running:
            self.kill()
            await self.stop(signal.SIGKILL)

    def cpu_seconds(self) -> float:
        """User + system CPU it has used so far (Linux /proc)."""
        assert self.proc is not None
        return pid_cpu_seconds(self.proc.pid) or 0.0


def run_bench(module: str, args: Sequence[str], output_dir: Path, *, timeout_s: float) -> tuple[int, str]:
    """`python -m bench.<module> <args>` from the repository root, its report written to `output_dir`: its exit code
    and its report (the tail of its stderr when it wrote none)."""
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "BENCH_OUTPUT_DIR": str(output_dir)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    path = output_dir / f"{module}.md"
    return result.returncode, path.read_text() if path.exists() else result.stderr[-4000:]
