"""Misconfiguration as one line: the settings' validation errors condensed, and the process edge that prints
`Error: …` on stderr and exits 2."""

from __future__ import annotations

from typing import Final, NoReturn

import click
import pydantic

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.settings import Settings, get_settings

CONFIG_EXIT_CODE: Final = 2


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """`invalid configuration — field: problem; …`, without the values (they may be secrets)."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'settings'}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()
    )
    return f"invalid configuration — {problems}"


def load_settings() -> Settings:
    """The settings, or a ConfigurationError saying in one line what is wrong with them."""
    try:
        return get_settings()
    except pydantic.ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None


def exit_with_error(message: str, code: int = CONFIG_EXIT_CODE) -> NoReturn:
    """Print the first line of `message` as `Error: …` on stderr and exit with `code`."""
    click.echo(f"Error: {message.splitlines()[0] if message else 'unknown error'}", err=True)
    raise SystemExit(code)
