"""The release: `python -m build` makes the wheel and the sdist of the distribution `mcp-todo-server` (the name
`mcp-todo` on PyPI is another project), `twine check` passes them, and the wheel installed into a fresh virtualenv
carries the migrations and the worker binaries and serves MCP over stdio."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from mcp_todo import __version__
from tests.support.database import DatabaseFactory
from tests.support.processes import clean_env

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DISTRIBUTION = "mcp-todo-server"
STEM = f"{DISTRIBUTION.replace('-', '_')}-{__version__}"
TOOL_COUNT = 17

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh virtualenv with only the wheel (and its dependencies) installed, and then no pip:
    the virtualenv the Dockerfile's builder stage makes for the image."""
    env_dir = tmp_path_factory.mktemp("fresh-venv")
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(dist / f"{STEM}-py3-none-any.whl")],
        check=True,
        capture_output=True,
        timeout=900,
    )
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "uninstall", "--yes", "--quiet", "pip"], check=True, timeout=120
    )
    assert not (bin_dir / "pip").exists()
    return bin_dir


def test_the_distribution_name_is_ours_and_the_commands_keep_theirs() -> None:
    assert PROJECT["name"] == DISTRIBUTION
    assert PROJECT["version"] == __version__
    assert set(PROJECT["scripts"]) == {"mcp-todo", "mcp-todo-notifier", "mcp-todo-recurrer"}


def test_build_makes_a_wheel_and_an_sdist_that_twine_accepts(dist: Path) -> None:
    assert sorted(p.name for p in dist.iterdir()) == [f"{STEM}-py3-none-any.whl", f"{STEM}.tar.gz"]
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with tarfile.open(dist / f"{STEM}.tar.gz") as sdist:
        names = set(sdist.getnames())
    for required in ("sql/schema.sql", "README.md", "pyproject.toml", "mcp_todo/cli.py", "workers/notifier.py"):
        assert f"{STEM}/{required}" in names, f"{required} missing from the sdist"


def test_wheel_ships_migrations_and_workers(dist: Path) -> None:
    wheel = zipfile.ZipFile(dist / f"{STEM}-py3-none-any.whl")
    names = set(wheel.namelist())
    for required in (
        "mcp_todo/db/migrations/env.py",
        "mcp_todo/db/migrations/script.py.mako",
        "mcp_todo/db/migrations/versions/0001_initial.py",
        "workers/notifier.py",
        "workers/recurrer.py",
    ):
        assert required in names, f"{required} missing from the wheel"
    metadata = wheel.read(f"{STEM}.dist-info/METADATA").decode()
    assert f"Name: {DISTRIBUTION}\n" in metadata
    entry_points = wheel.read(f"{STEM}.dist-info/entry_points.txt").decode()
    for line in ("mcp-todo = mcp_todo.cli:main", "mcp-todo-notifier = workers.notifier:main"):
        assert line in entry_points


def test_the_installed_commands_run(installed: Path) -> None:
    for command in ("mcp-todo", "mcp-todo-notifier", "mcp-todo-recurrer"):
        result = subprocess.run(
            [str(installed / command), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0 and __version__ in result.stdout, result.stdout + result.stderr


async def test_the_installed_wheel_serves_mcp_over_stdio(
    installed: Path, db_factory: DatabaseFactory, tmp_path: Path
) -> None:
    """initialize, tools/list and one tool call against the installed `mcp-todo`, as a host launches it."""
    dsn = await db_factory.create()
    env = clean_env(DATABASE_URL=dsn, MCP_TODO_USER="packager", MCP_TODO_TIMEZONE="UTC")
    params = StdioServerParameters(command=str(installed / "mcp-todo"), env=env, cwd=tmp_path)
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60) as client:
            tools = (await client.list_tools()).tools
            assert len(tools) == TOOL_COUNT
            result = await client.call_tool("add_task", {"title": "Ship the wheel"})
            assert not result.is_error, result.content


def test_the_readme_gives_the_uvx_line_of_the_published_name() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"uvx --from {DISTRIBUTION} mcp-todo" in readme
    assert f'"args": ["--from", "{DISTRIBUTION}", "mcp-todo"]' in readme
