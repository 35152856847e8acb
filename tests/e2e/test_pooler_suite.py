"""The tool suite, the relay, the local-mode handlers and both workers over the test broker, run again with every
transaction going through Debian's PgBouncer in transaction mode (tests/support/pooler.py), and LISTEN, session locks
and migrations through the direct URL, as on Neon's pooled endpoint. The chaos soak's CI run (test_chaos.py) goes
through one too, with two server processes and four workers sharing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SUITE = (
    "tests/integration/test_tools.py",
    "tests/integration/test_relay.py",
    "tests/integration/test_local_handlers.py",
    "tests/e2e/test_workers.py",
)
# About 3 minutes on a loaded 2-core machine; the bound only keeps a hang from holding CI.
TIMEOUT_S = 900


def test_the_tool_suite_relay_and_workers_pass_through_pgbouncer(tmp_path: Path) -> None:
    report = tmp_path / "pooler.json"
    env = os.environ | {"TEST_POOLER": "pgbouncer", "TEST_POOLER_REPORT": str(report)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    figures = json.loads(report.read_text())
    # It really went through the pooler, and its server connections were shared by more clients than they number.
    assert figures["transactions"] > 1000, figures
    assert 0 < figures["peak_servers"] < figures["peak_clients"], figures
