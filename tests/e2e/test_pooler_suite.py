"""The MCP tool suite (the tools, subtasks and the trash, batches, search, isolation between users, bad input,
dependencies, the races of two writers) and the local-mode handlers, run again with every transaction going through
Debian's PgBouncer in transaction mode (tests/support/pooler.py), and LISTEN, session locks and migrations through the
direct URL, as on Neon's pooled endpoint. Both workers over the test broker go through one in the chaos soak's CI run
(test_chaos.py, `--pooler`): two server processes, two recurrers and two notifiers sharing it, killed and restarted,
with the database stopped once, and a check that the pooler's server connections were fewer than its clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT

pytestmark = [pytest.mark.slow]

# The relay is not here: it runs on the direct URL whatever DATABASE_URL is (LISTEN and session locks), so its tests
# would only repeat themselves; the chaos soak runs relays, both workers and two servers through the pooler.
SUITE = (
    "tests/integration/test_tools.py",
    "tests/integration/test_subtasks_and_trash.py",
    "tests/integration/test_batches_and_repeat_after_completion.py",
    "tests/integration/test_search.py",
    "tests/integration/test_isolation.py",
    "tests/integration/test_bad_input.py",
    "tests/integration/test_dependencies.py",
    # Two writers at once: their transactions interleave on the pooler's few server connections.
    "tests/integration/test_dependency_races.py",
    "tests/integration/test_tree_races.py",
    "tests/integration/test_local_handlers.py",
)
# About a minute on a loaded 2-core machine; the bound only keeps a hang from holding CI.
TIMEOUT_S = 900


def test_the_tool_suite_and_local_handlers_pass_through_pgbouncer(tmp_path: Path) -> None:
    report = tmp_path / "pooler.json"
    # In one process (`-n 0`), so that one pooler carries all of it and writes the report; and as a pytest of its
    # own, not one of the outer run's xdist workers.
    outer = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    env = outer | {"TEST_POOLER": "pgbouncer", "TEST_POOLER_REPORT": str(report)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *SUITE],
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
