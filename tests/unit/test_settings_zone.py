"""MCP_TODO_TIMEZONE and its default go through the domain's one zone resolver."""

from __future__ import annotations

import pydantic
import pytest

from mcp_todo.settings import Settings, _default_timezone


def test_the_default_is_the_hosts_zone_when_tz_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", ":America/New_York")
    assert _default_timezone() == "America/New_York"


@pytest.mark.parametrize("tz", ["Mars/Base", "../etc/passwd"])
def test_a_tz_that_names_no_zone_is_not_the_default(tz: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", tz)
    assert _default_timezone() != tz  # the /etc/localtime link or UTC instead, never a configuration error


@pytest.mark.parametrize("zone", ["Mars/Base", "localtime", "America"])
def test_the_setting_refuses_what_the_resolver_refuses(zone: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="is not an IANA time zone"):
        Settings.model_validate({"MCP_TODO_TIMEZONE": zone})
    assert Settings.model_validate({"MCP_TODO_TIMEZONE": "Europe/London"}).timezone == "Europe/London"
