"""The chaos soak's 60-second run (bench/chaos.py): the whole Kafka-mode pipeline under load while processes are
killed, the broker link is cut and PostgreSQL restarts; every check of its report must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import run_bench

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DURATION_S = 60
# Start-up (~20 s; ~45 s on a machine shared with other jobs), the run, the quiet drain (~35 s: the last reminders
# come due 30 s after the load; at most 66 s), reading the topics, teardown: 215 s in all on a loaded 2-core machine.
TIMEOUT_S = 300


def test_a_60_second_chaos_soak_loses_nothing(tmp_path: Path) -> None:
    # Through PgBouncer in transaction mode, as on Neon's pooled endpoint (the direct URL for LISTEN and locks).
    args = ["--duration", str(DURATION_S), "--pooler", "--logs", str(tmp_path / "logs")]
    code, report = run_bench("chaos", args, tmp_path, timeout_s=TIMEOUT_S)
    assert code == 0, report
    assert "**PASS**" in report
