"""Fail unless this interpreter's installed distributions are exactly the locked ones.

Usage: python check_lock.py REQUIREMENTS, where REQUIREMENTS is `uv export --frozen --extra test --no-emit-project`
output (name==version lines with environment markers). Every locked distribution whose marker holds here must be
installed at its locked version, and nothing else may be installed but the project itself and the venv's own tools.
"""

from __future__ import annotations

import sys
from importlib.metadata import distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# What `python3 -m venv` puts in every venv, and the project, which the lock records but the export leaves out.
NOT_LOCKED = {"pip", "setuptools", "wheel", "mcp-todo-server"}


def locked_versions(text: str) -> dict[str, str]:
    locked: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].rstrip(" \\").strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (pin,) = requirement.specifier
        assert pin.operator == "==", line
        locked[canonicalize_name(requirement.name)] = pin.version
    return locked


def main() -> int:
    locked = locked_versions(Path(sys.argv[1]).read_text())
    installed: dict[str, str] = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    problems = [
        f"{name}: locked {version}, installed {installed.get(name, 'nothing')}"
        for name, version in sorted(locked.items())
        if installed.get(name) != version
    ]
    problems += [
        f"{name}: installed {version}, not in uv.lock"
        for name, version in sorted(installed.items())
        if name not in locked and name not in NOT_LOCKED
    ]
    for problem in problems:
        print(f"check_lock: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
