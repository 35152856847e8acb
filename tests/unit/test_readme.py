"""The README's front door stays true: its two quick-start commands are the ones CI and the package provide."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
QUICK_START = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
COMMANDS = re.findall(r"```bash\n(.+?)\n```", QUICK_START)


def test_quick_start_has_the_two_commands() -> None:
    assert len(COMMANDS) == 2
    assert COMMANDS[0] == "pip install . && mcp-todo"
    assert COMMANDS[1].endswith("pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci_lines[-1] == COMMANDS[1]


def test_the_server_command_is_a_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mcp-todo"] == "mcp_todo.cli:main"
