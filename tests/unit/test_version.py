"""One version: CHANGELOG.md's newest release, pyproject.toml, the package, `mcp-todo --version`, the installed
distribution's metadata and the Helm chart's appVersion (the image tag it deploys by default) say the same."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import mcp_todo
from mcp_todo.cli import main

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CHANGELOG = (ROOT / "CHANGELOG.md").read_text()
RELEASE_HEADING = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", flags=re.M)


def newest_release(changelog: str) -> str:
    """The version of the first `## [X.Y.Z] - YYYY-MM-DD` heading, which must come right after `## [Unreleased]`."""
    headings = re.findall(r"^## .*$", changelog, flags=re.M)
    assert headings[0] == "## [Unreleased]", headings[:1]
    release = RELEASE_HEADING.fullmatch(headings[1])
    assert release, f"not a release heading: {headings[1]!r}"
    return release[1]


def test_every_version_is_the_changelogs_newest() -> None:
    expected = newest_release(CHANGELOG)
    assert PYPROJECT["version"] == expected
    assert mcp_todo.__version__ == expected
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output == f"mcp-todo, version {expected}\n", result.output
    # The installed metadata is pyproject's as of the last install (`make` reinstalls when pyproject.toml changes).
    assert version(PYPROJECT["name"]) == expected
    chart = yaml.safe_load((ROOT / "k8s" / "mcp-todo" / "Chart.yaml").read_text())
    assert chart["appVersion"] == expected


def test_the_changelogs_releases_are_newest_first_and_each_once() -> None:
    releases = [(tuple(int(part) for part in v.split(".")), day) for v, day in RELEASE_HEADING.findall(CHANGELOG)]
    assert releases, "no release heading"
    assert releases == sorted(releases, reverse=True)
    assert len({v for v, _ in releases}) == len(releases)


def test_a_changelog_that_lags_the_version_is_caught() -> None:
    """A bump in pyproject.toml without its changelog entry (or a heading that is not a release) fails."""
    bumped = CHANGELOG.replace("## [Unreleased]", "## [Unreleased]\n\n## [9.9.9] - 2099-01-01", 1)
    assert newest_release(bumped) == "9.9.9" != PYPROJECT["version"]
    for broken in (
        CHANGELOG.replace("## [Unreleased]", "## Unreleased", 1),
        RELEASE_HEADING.sub(lambda m: f"## {m[1]}", CHANGELOG, count=1),
    ):
        with pytest.raises(AssertionError):
            newest_release(broken)
