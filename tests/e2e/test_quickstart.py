"""The README's first commands as a newcomer runs them: uv from PyPI, Debian's own python3 (the system's, not the one
this test runs on), a fresh checkout in a home directory only its owner may enter (mode 700, as root's is), and the
uv cache and the data dir inside that home. Quick start, the Claude Desktop config run exactly as the host runs it,
and a changed source picked up by the next start without a reinstall."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.e2e.test_stdio import TOOL_COUNT, call
from tests.support.processes import REPO_ROOT, clean_env

pytestmark = pytest.mark.slow

README = (REPO_ROOT / "README.md").read_text()
QUICK_START = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
SERVER_COMMAND = re.findall(r"```bash\n(.+?)\n```", QUICK_START)[0]
DESKTOP_CONFIG = json.loads(re.findall(r"```json\n(.+?)\n```", README.split("## Claude Desktop", 1)[1], flags=re.S)[0])[
    "mcpServers"
]["todo"]
CHECKOUT_PLACEHOLDER = "/path/to/mcp-todo"

SYSTEM_PYTHON = Path("/usr/bin/python3")
UV = "uv>=0.13,<1"
# A uv run resolves, downloads and builds on first use, then starts and migrates a new PostgreSQL: seconds here,
# bounded generously for a loaded 2-core CI machine.
RUN_TIMEOUT_S = 240


def _system_python_missing() -> str | None:
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is absent (.ci/run installs Debian's python3)"
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info >= (3, 11))"], capture_output=True, text=True
    )
    if version.stdout.strip() != "True":
        return f"{SYSTEM_PYTHON} is older than 3.11, which mcp-todo needs"
    return None


@pytest.fixture(scope="module")
def uv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding only `uv` and `uvx`, installed from PyPI (no Python of its own to be found on PATH)."""
    reason = _system_python_missing()
    if reason is not None:
        pytest.skip(reason)
    target = tmp_path_factory.mktemp("uv")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", target, UV],
        check=True,
        timeout=RUN_TIMEOUT_S,
    )
    return target / "bin"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home directory of mode 700 with a fresh checkout of this tree in it (the working tree, as one commit)."""
    home = tmp_path_factory.mktemp("home")
    home.chmod(0o700)
    checkout = home / "mcp-todo"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            (checkout / name).write_bytes(source.read_bytes())
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=checkout, check=True)
    subprocess.run([*git, "add", "-A"], cwd=checkout, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "checkout"], cwd=checkout, check=True)
    yield home
    _stop_postgres(home)


def _data_dir(home: Path) -> Path:
    return home / ".local" / "share" / "mcp-todo"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def postgres_running(home: Path) -> bool:
    return (_data_dir(home) / "pgdata" / "postmaster.pid").exists()


def _stop_postgres(home: Path) -> None:
    """Whatever a failed test left running."""
    try:
        pid = int((_data_dir(home) / "pgdata" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    except (OSError, IndexError, ValueError):
        pass


def newcomer_env(uv_dir: Path, home: Path, **variables: str) -> dict[str, str]:
    """A stock system's environment: uv on PATH, the system's directories, and no Python but Debian's to find.
    Nothing of this machine's own setup that would steer uv or Python elsewhere (caches, data dirs, interpreters)."""
    own = ("UV_", "XDG_", "PYTHON", "VIRTUAL_ENV", "PYENV", "CONDA")
    env = {k: v for k, v in clean_env().items() if not k.startswith(own)}
    return (
        env
        | {
            "PATH": f"{uv_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home),
            # Only the package registries are reachable: the interpreter is the system's, never a download.
            "UV_PYTHON_DOWNLOADS": "never",
            # The registry may be reached through a proxy whose certificate only the system's store holds.
            "UV_NATIVE_TLS": "true",
        }
        | variables
    )


def tool_pythons(home: Path) -> set[str]:
    """The `home` of every environment uv made (pyvenv.cfg): the interpreter each runs on."""
    homes = set()
    for cfg in (home / ".cache" / "uv").rglob("pyvenv.cfg"):
        for line in cfg.read_text().splitlines():
            if line.startswith("home = "):
                homes.add(line.removeprefix("home = "))
    return homes


async def test_quick_start_serves_on_debians_own_python(uv_dir: Path, home: Path) -> None:
    checkout = home / "mcp-todo"
    command, *args = shlex.split(SERVER_COMMAND)
    env = newcomer_env(uv_dir, home, MCP_TODO_USER="newcomer", MCP_TODO_TIMEZONE="Europe/London")
    params = StdioServerParameters(command=command, args=args, env=env, cwd=checkout)
    log = home.parent / "quickstart.log"
    with log.open("a") as errlog:
        try:
            async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=RUN_TIMEOUT_S) as client:
                assert len((await client.list_tools()).tools) == TOOL_COUNT
                await call(client, "add_task", title="Water the plants", due_date="tomorrow 9am")
                # English text search reads the server's own dictionary files, behind the closed home.
                found = await call(client, "search_tasks", query="watering plant")
                assert [task["title"] for task in found["tasks"]] == ["Water the plants"]
        except Exception as exc:  # the client only says the connection closed: the reason is in the server's log
            raise AssertionError(f"the Quick start failed: {log.read_text()[-3000:]}") from exc
    # A walk through uv's cache: off the event loop.
    pythons = await asyncio.to_thread(tool_pythons, home)
    assert pythons == {str(SYSTEM_PYTHON.parent)}, "uv ran another interpreter than Debian's python3"
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() != 0, reason="the failure needs root: the wheel runs "
                    "PostgreSQL as a user of its own only then")  # fmt: skip
async def test_claude_desktop_config_as_root_under_a_closed_home(uv_dir: Path, home: Path) -> None:
    """The host's command, exactly: the README's `command` and `args` (the checkout's path in place of the
    placeholder) and its `env`, with standard input closed; the server migrates, serves, and exits cleanly."""
    checkout = home / "mcp-todo"
    args = [str(checkout) if arg == CHECKOUT_PLACEHOLDER else arg for arg in DESKTOP_CONFIG["args"]]
    assert str(checkout) in args, f"the README's Claude Desktop args no longer name {CHECKOUT_PLACEHOLDER}"
    env = newcomer_env(uv_dir, home, **DESKTOP_CONFIG.get("env", {}))
    process = await asyncio.create_subprocess_exec(
        DESKTOP_CONFIG["command"], *args, env=env, cwd=home,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    errors = stderr.decode(errors="replace")
    assert process.returncode == 0, errors[-3000:]
    assert 'msg="server ready"' in errors and "Traceback" not in errors, errors[-3000:]
    assert stdout == b""
    # The last process out stopped PostgreSQL and left the home as closed as it found it.
    assert mode_of(home) == 0o700
    assert not postgres_running(home)


async def test_a_changed_source_is_picked_up_without_a_reinstall(uv_dir: Path, home: Path) -> None:
    """`uvx --from CHECKOUT` rebuilds when a source file changes (`[tool.uv] cache-keys`), as after a `git pull`."""
    checkout = home / "mcp-todo"
    env = newcomer_env(uv_dir, home)

    async def help_text() -> str:
        process = await asyncio.create_subprocess_exec(
            "uvx", "--from", str(checkout), "mcp-todo", "--help", env=env, cwd=home,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
        assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]
        return stdout.decode()

    before = await help_text()
    cli = checkout / "mcp_todo" / "cli.py"
    first_line = "A task manager for LLM hosts: an MCP server on PostgreSQL."
    assert first_line in before and first_line in cli.read_text()
    cli.write_text(cli.read_text().replace(first_line, "A task manager, changed after the first run.", 1))
    assert "A task manager, changed after the first run." in await help_text()
