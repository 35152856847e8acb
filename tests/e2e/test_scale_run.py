"""The load run's short version (bench/scale_run.py): two server replicas behind PgBouncer in transaction mode, three
workers, 20 sessions for 10 s (10 calls/s offered) with one replica and one recurrer killed halfway; every check of
its report must pass (no request failed that a client could not retry, no event lost or duplicated, one successor per
completion, the pooler's server connections shared). The 200-session, 60-second run is the benchmark's default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import run_bench

pytestmark = [pytest.mark.kafka]

# Start-up ~10 s, the load, the quiet drain (no task comes due after the load), reading the topics: ~35 s in all;
# the timeout leaves room for a machine shared with other jobs.
TIMEOUT_S = 180


def test_two_replicas_behind_pgbouncer_lose_no_request_and_no_event_through_a_kill(tmp_path: Path) -> None:
    args = ["--sessions", "20", "--duration", "10", "--rate", "0.5", "--drain", "40"]
    code, report = run_bench("scale_run", args, tmp_path, timeout_s=TIMEOUT_S)
    assert code == 0, report
    assert "**PASS**" in report
    assert "kill -9 server-1" in report and "kill -9 recurrer-1" in report, report
