"""The README's benchmark command works: the core benchmark, shrunk to seconds, produces a complete report.
(The figures themselves are not asserted: benchmarks are not timed tests.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_small(
    module: str, report: str, tmp_path: Path, pg_server_dsn: str, args: Sequence[str] = (), **env: str
) -> str:
    """Run `python -m module args` with `env` and the test server; the report it wrote."""
    env = os.environ | {"TEST_DATABASE_URL": pg_server_dsn, "BENCH_OUTPUT_DIR": str(tmp_path)} | env
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return (tmp_path / report).read_text()


@pytest.mark.slow
def test_core_benchmark_runs_small(tmp_path: Path, pg_server_dsn: str) -> None:
    report = run_small(
        "bench.core_bench",
        "core.md",
        tmp_path,
        pg_server_dsn,
        BENCH_USERS="2",
        BENCH_TASKS_PER_USER="300",
        BENCH_SAMPLES="25",
    )
    for row in ("| add_task |", "| complete_task |", "| list_tasks", "| search_tasks"):
        assert row in report
    assert "`tools/list` for the 17 tools:" in report


@pytest.mark.slow
def test_token_verify_benchmark_runs_small(tmp_path: Path, pg_server_dsn: str) -> None:
    report = run_small("bench.token_verify", "token_verify.md", tmp_path, pg_server_dsn, BENCH_TOKEN_VERIFY_CALLS="20")
    for row in ("| mtd_, database verifier (no cache) |", "| OAuth JWT RS256, combined verifier (cached) |"):
        assert row in report


@pytest.mark.slow
def test_load_benchmark_runs_small(tmp_path: Path, pg_server_dsn: str) -> None:
    small = ["--duration", "4", "--sessions", "4", "--rate", "5", "--cpu-sessions", "2", "--cpu-calls", "40"]
    report = run_small("bench.load", "load.md", tmp_path, pg_server_dsn, args=[*small, "--rounds", "1"])
    for row in ("| mcp-todo serve, mtd_ tokens |", "| no-op tool, JSON responses |", "| requests/s |"):
        assert row in report
    # The replica run's SIGTERM drained: replica A exited 0, and no request was lost.
    assert "| replica A's exit code after SIGTERM; seconds to exit | 0;" in report
    assert "| failed requests a client could not retry | 0 | 0 |" in report


@pytest.mark.slow
def test_startup_benchmark_runs_small(tmp_path: Path, pg_server_dsn: str) -> None:
    # This tree alone (no base commit to check out), one cold and one warm start.
    env = {"BENCH_BASE_COMMIT": "", "BENCH_RUNS": "1", "BENCH_WARM": "1"}
    report = run_small("bench.startup_bench", "startup.md", tmp_path, pg_server_dsn, **env)
    assert "| cold: start → tools/list answered |" in report
    assert "| warm: start → tools/list answered |" in report
    assert "| tools listed | 17 |" in report


@pytest.mark.slow
def test_tenant_benchmark_runs_small(tmp_path: Path, pg_server_dsn: str) -> None:
    env = {"BENCH_TENANT_SIZES": "500,1000", "BENCH_SAMPLES": "2"}
    report = run_small("bench.tenant_bench", "tenant.md", tmp_path, pg_server_dsn, **env)
    assert "| 500 tasks p50 / p95 ms | 1,000 tasks p50 / p95 ms |" in report
    assert report.count("| search_tasks") == 3 and report.count("| list_tasks") == 5


@pytest.mark.slow
@pytest.mark.kafka
def test_live_benchmark_runs_small(tmp_path: Path, pg_server_dsn: str) -> None:
    """`python -m bench.live_bench` with 2 users × 2 streams and 10 changes: every notice arrives and is timed."""
    env = {"BENCH_LIVE_USERS": "2", "BENCH_LIVE_STREAMS_PER_USER": "2", "BENCH_SAMPLES": "10"}
    report = run_small("bench.live_bench", "live.md", tmp_path, pg_server_dsn, **env)
    assert "(20 notices)" in report, report
    assert "| commit on B → notice on A |" in report
