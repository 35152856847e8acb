"""uv.lock is the install: it records what pyproject.toml asks for (so an edit without `uv lock` fails here, without
the network), CI and the Dockerfile install from it, and .ci/check_lock.py fails a venv that drifted from it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
CHECK_LOCK = ROOT / ".ci" / "check_lock.py"

Requested = tuple[str, tuple[str, ...], str, str]


def requested(project: dict[str, Any]) -> set[Requested]:
    """pyproject's requirements, the optional ones with their extra's marker, as uv.lock's metadata writes them."""
    found: set[Requested] = set()
    groups: dict[str | None, list[str]] = {None: project.get("dependencies", [])}
    groups.update(project.get("optional-dependencies", {}))
    for extra, lines in groups.items():
        for line in lines:
            requirement = Requirement(line)
            markers = [f"({requirement.marker})"] if requirement.marker else []
            markers += [f"extra == '{extra}'"] if extra else []
            found.add(
                (
                    canonicalize_name(requirement.name),
                    tuple(sorted(requirement.extras)),
                    str(requirement.specifier),
                    str(Marker(" and ".join(markers))) if markers else "",
                )
            )
    return found


def root_package(lock: dict[str, Any]) -> dict[str, Any]:
    roots: list[dict[str, Any]] = [package for package in lock["package"] if package.get("source") == {"editable": "."}]
    (root,) = roots
    return root


def locked_requests(lock: dict[str, Any]) -> set[Requested]:
    return {
        (
            canonicalize_name(entry["name"]),
            tuple(sorted(entry.get("extras", []))),
            str(SpecifierSet(entry.get("specifier", ""))),
            str(Marker(entry["marker"])) if "marker" in entry else "",
        )
        for entry in root_package(lock)["metadata"]["requires-dist"]
    }


def test_the_lock_records_what_pyproject_asks_for() -> None:
    """Re-lock after editing pyproject.toml's dependencies or version: `uv lock` (CONTRIBUTING.md)."""
    project = PYPROJECT["project"]
    root = root_package(LOCK)
    assert root["name"] == project["name"]
    assert root["version"] == project["version"]
    assert locked_requests(LOCK) == requested(project), "uv.lock is stale: run `uv lock`"
    assert sorted(root["metadata"]["provides-extras"]) == sorted(project["optional-dependencies"])
    assert LOCK["requires-python"] == project["requires-python"]


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p["dependencies"].__setitem__(0, "mcp>=2.4,<2.5"),
        lambda p: p["dependencies"].append("rich>=13"),
        lambda p: p["optional-dependencies"]["test"].pop(),
        lambda p: p["optional-dependencies"]["test"].append("pytest-timeout>=2"),
        lambda p: p["dependencies"].__setitem__(-1, p["dependencies"][-1] + "; python_version < '3.12'"),
    ],
)
def test_an_edit_without_relocking_is_caught(edit: Any) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edit(project)
    assert locked_requests(LOCK) != requested(project)


def test_every_locked_package_comes_from_pypi() -> None:
    """Nothing from this machine's local wheel mirrors or a path: the lock installs the same anywhere."""
    for package in LOCK["package"]:
        if package is not root_package(LOCK):
            assert package["source"] == {"registry": "https://pypi.org/simple"}, package["name"]
            assert "file://" not in str(package), package["name"]


def test_ci_and_the_image_install_from_the_lock() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [(i, line) for i, line in enumerate(ci) if line and not line.startswith("#")]
    export = next(i for i, line in commands if 'uv" export' in line and "--frozen" in line)
    install = next(i for i, line in commands if "--require-hashes" in line)
    check = next(i for i, line in commands if line.startswith(".venv/bin/python .ci/check_lock.py "))
    assert export < install < check < len(ci) - 1, "the locked install and its check come before the README's command"
    assert "--extra test" in ci[export]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY .*\buv\.lock\b", dockerfile, flags=re.M)
    assert "uv export --quiet --frozen --no-emit-project" in dockerfile and "--require-hashes" in dockerfile
    assert "!uv.lock" in (ROOT / ".dockerignore").read_text().splitlines()
    pins = set(re.findall(r"uv==[\d.]+", "\n".join(ci) + dockerfile))
    assert len(pins) == 1, f"CI and the image use one uv: {pins}"


def run_check(requirements: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "locked.txt"
    path.write_text(requirements)
    return subprocess.run(
        [sys.executable, str(CHECK_LOCK), str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def this_venv() -> dict[str, str]:
    return {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in distributions()
        if canonicalize_name(d.metadata["Name"]) not in {"pip", "setuptools", "wheel", "mcp-todo-server"}
    }


def as_export(versions: dict[str, str]) -> str:
    """The shape `uv export` writes: hashes on continuation lines, markers after a semicolon."""
    lines = [f"{name}=={version} \\\n    --hash=sha256:{'0' * 64}" for name, version in sorted(versions.items())]
    return "# generated\n" + "\n".join(lines) + "\nnot-for-here==1.0 ; sys_platform == 'never'\n"


def test_check_lock_passes_a_venv_that_is_the_lock(tmp_path: Path) -> None:
    result = run_check(as_export(this_venv()), tmp_path)
    assert result.returncode == 0, result.stderr


def test_check_lock_fails_a_drifted_version(tmp_path: Path) -> None:
    versions = this_venv() | {"pytest": "0.0.1"}
    result = run_check(as_export(versions), tmp_path)
    assert result.returncode == 1
    assert re.search(r"pytest: locked 0\.0\.1, installed \S+", result.stderr), result.stderr


def test_check_lock_fails_a_package_the_lock_does_not_have(tmp_path: Path) -> None:
    versions = this_venv()
    del versions["pytest"]
    result = run_check(as_export(versions), tmp_path)
    assert result.returncode == 1
    assert "pytest: installed" in result.stderr and "not in uv.lock" in result.stderr


def test_check_lock_fails_a_locked_package_not_installed(tmp_path: Path) -> None:
    result = run_check(as_export(this_venv() | {"no-such-package": "1.0"}), tmp_path)
    assert result.returncode == 1
    assert "no-such-package: locked 1.0, installed nothing" in result.stderr
