"""The README's front door stays true: its two quick-start commands are the ones CI and the package provide."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
QUICK_START = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
COMMANDS = re.findall(r"```bash\n(.+?)\n```", QUICK_START)
DATA_SECTION = README.split("### Your data", 1)[1].split("\n## ", 1)[0]


def test_quick_start_has_the_two_commands() -> None:
    assert len(COMMANDS) == 2
    assert COMMANDS[0] == "uvx --from . mcp-todo"
    assert COMMANDS[1].endswith("pytest")


def test_the_quick_start_and_claude_desktop_run_the_same_command() -> None:
    """The Quick start's command is the host's, from the checkout (tests/e2e/test_quickstart.py runs both)."""
    config = re.findall(r"```json\n(.+?)\n```", README.split("## Claude Desktop", 1)[1], flags=re.S)[0]
    server = json.loads(config)["mcpServers"]["todo"]
    assert [server["command"], *server["args"]] == ["uvx", "--from", "/path/to/mcp-todo", "mcp-todo"]
    assert COMMANDS[0] == "uvx --from . mcp-todo"


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci_lines[-1] == COMMANDS[1]


def test_the_server_command_is_a_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mcp-todo"] == "mcp_todo.cli:main"


def readme_command_lines() -> list[str]:
    """The `mcp-todo` commands of the README's shell blocks and of its data section's inline code, each up to a
    redirection or the next command."""
    lines = []
    for block in re.findall(r"```bash\n(.+?)\n```", README, flags=re.S):
        lines += [line.split("#", 1)[0] for line in block.splitlines()]
    lines += re.findall(r"`([^`]+)`", DATA_SECTION)
    return [
        command
        for line in lines
        if (command := re.split(r"\s(?:>|\||&&)\s", line, maxsplit=1)[0].strip()).startswith("mcp-todo ")
    ]


def test_every_readme_mcp_todo_command_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Options and subcommands the README shows exist (parsed by the real click commands, not run; the files they
    read exist, empty, in a scratch directory)."""
    import shlex

    import click

    from mcp_todo.cli import main

    commands = readme_command_lines()
    assert len(commands) >= 2
    assert "mcp-todo import mcp-todo-backup.json" in commands  # the backup and restore the README promises
    monkeypatch.chdir(tmp_path)
    for command in commands:
        args = shlex.split(command)[1:]
        for arg in args:
            if re.fullmatch(r"[\w-]+\.(json|ics|csv)", arg):
                (tmp_path / arg).touch()
        ctx = main.make_context("mcp-todo", [])
        cmd: click.Command = main
        while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
            sub = cmd.get_command(ctx, args[0])
            assert sub is not None, f"{command}: no such command {args[0]!r}"
            cmd, args = sub, args[1:]
            if not isinstance(cmd, click.Group):
                break
            ctx = click.Context(cmd, info_name=cmd.name, parent=ctx)
        cmd.make_context(cmd.name or "", list(args), parent=ctx)  # raises on an unknown option or a bad value
