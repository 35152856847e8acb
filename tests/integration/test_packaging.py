"""The wheel a person installs carries the migrations and the worker binaries."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_migrations_and_workers(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mcp_todo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "mcp_todo/db/migrations/env.py",
        "mcp_todo/db/migrations/script.py.mako",
        "mcp_todo/db/migrations/versions/0001_initial.py",
        "workers/notifier.py",
        "workers/recurrer.py",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "mcp-todo = mcp_todo.cli:main" in text
