"""The agenda app's day arithmetic (apps/agenda/src/days.js: groups, dates across month ends and a change of offset,
snoozing), run by Node's own test runner: the module has no dependencies, so no `npm ci` is needed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[2] / "apps" / "agenda"


def test_days_js() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (CI installs it for the OAuth and agenda tests)", pytrace=False)
    run = subprocess.run([node, "--test", "test/"], cwd=APP_DIR, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
