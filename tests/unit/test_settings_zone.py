"""MCP_TODO_TIMEZONE and its default: every way a host names its zone resolves to an IANA name (or to UTC, said in
one log line), and a name that is not an IANA zone is refused by the domain's one resolver."""

from __future__ import annotations

import logging
import zoneinfo
from pathlib import Path

import pydantic
import pytest

from mcp_todo.settings import Settings, _default_timezone


def _zoneinfo_dir() -> Path:
    for directory in map(Path, zoneinfo.TZPATH):
        if (directory / "Europe" / "London").is_file():
            return directory
    pytest.skip("no system zoneinfo directory")


@pytest.fixture
def zoneinfo_dir() -> Path:
    return _zoneinfo_dir()


@pytest.fixture
def no_host_files(tmp_path: Path) -> tuple[Path, Path]:
    """An /etc/localtime and /etc/timezone that do not exist."""
    return tmp_path / "no-localtime", tmp_path / "no-timezone"


def test_the_default_is_the_hosts_zone_when_tz_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", ":America/New_York")
    assert _default_timezone() == "America/New_York"
    monkeypatch.setenv("TZ", "UTC")
    assert _default_timezone() == "UTC"


@pytest.mark.parametrize("tz", ["{dir}/Europe/London", ":{dir}/Europe/London", ":{dir}/posix/Europe/London"])
def test_a_tz_that_is_the_path_of_a_zone_file_gives_its_name(
    tz: str, zoneinfo_dir: Path, monkeypatch: pytest.MonkeyPatch, no_host_files: tuple[Path, Path]
) -> None:
    if "posix" in tz and not (zoneinfo_dir / "posix").is_dir():
        pytest.skip("no posix/ zone files on this system")
    monkeypatch.setenv("TZ", tz.format(dir=zoneinfo_dir))
    assert _default_timezone(*no_host_files) == "Europe/London"


def test_tz_colon_localtime_follows_the_link_to_its_zone(
    tmp_path: Path, zoneinfo_dir: Path, monkeypatch: pytest.MonkeyPatch, no_host_files: tuple[Path, Path]
) -> None:
    # /etc/localtime → ../usr/share/zoneinfo/Asia/Tokyo style, through a second link as some systems have it.
    (tmp_path / "etc").mkdir()
    (tmp_path / "zone").symlink_to(zoneinfo_dir / "Asia" / "Tokyo")
    localtime = tmp_path / "etc" / "localtime"
    localtime.symlink_to("../zone")
    monkeypatch.setenv("TZ", f":{localtime}")
    assert _default_timezone(*no_host_files) == "Asia/Tokyo"
    monkeypatch.delenv("TZ")
    assert _default_timezone(localtime, no_host_files[1]) == "Asia/Tokyo"


def test_a_copied_localtime_falls_back_to_etc_timezone(
    tmp_path: Path, zoneinfo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TZ", raising=False)
    localtime = tmp_path / "localtime"
    localtime.write_bytes((zoneinfo_dir / "Europe" / "Berlin").read_bytes())
    timezone_file = tmp_path / "timezone"
    timezone_file.write_text("Europe/Berlin\n")
    assert _default_timezone(localtime, timezone_file) == "Europe/Berlin"


@pytest.mark.parametrize("tz", ["Mars/Base", "../etc/passwd", "localtime", "CET-1CEST", ":/nonexistent/zoneinfo/X"])
def test_without_a_zone_anywhere_the_default_is_utc_said_in_one_line(
    tz: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_host_files: tuple[Path, Path]
) -> None:
    monkeypatch.setenv("TZ", tz)
    with caplog.at_level(logging.INFO, logger="mcp_todo.settings"):
        assert _default_timezone(*no_host_files) == "UTC"
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "using UTC" in record.getMessage()
    assert "\n" not in record.getMessage()


def test_the_settings_loader_takes_the_zone_from_tz(
    zoneinfo_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MCP_TODO_TIMEZONE", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("TZ", str(zoneinfo_dir / "Europe" / "London"))
    assert Settings().timezone == "Europe/London"


@pytest.mark.parametrize(
    "zone", ["Mars/Base", "localtime", "posixrules", "Factory", "posix/Europe/London", "right/UTC", "America"]
)
def test_the_setting_refuses_what_is_not_an_iana_zone(zone: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="is not an IANA time zone"):
        Settings.model_validate({"MCP_TODO_TIMEZONE": zone})
    assert Settings.model_validate({"MCP_TODO_TIMEZONE": "Europe/London"}).timezone == "Europe/London"


@pytest.mark.parametrize("blank", ["", "   "])
def test_an_empty_zone_counts_as_unset(
    blank: str, zoneinfo_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`MCP_TODO_TIMEZONE=` is how many .env templates leave a setting for later: the host's zone, as if unset."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", str(zoneinfo_dir / "Asia" / "Tokyo"))
    monkeypatch.setenv("MCP_TODO_TIMEZONE", blank)
    assert Settings().timezone == "Asia/Tokyo"
    (tmp_path / ".env").write_text(f"MCP_TODO_TIMEZONE={blank}\n")
    monkeypatch.delenv("MCP_TODO_TIMEZONE")
    assert Settings().timezone == "Asia/Tokyo"
