"""`python -m bench.run_all` takes minutes; `--help` says what it does and runs nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_help_prints_help_and_runs_no_benchmark() -> None:
    results = ROOT / "bench" / "RESULTS.md"
    before = results.stat().st_mtime_ns if results.exists() else None
    # Help is printed in about a second; a real run takes minutes, so 60 s tells the two apart on a loaded machine.
    result = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m bench.run_all")
    assert "bench/RESULTS.md" in result.stdout and "python -m bench.core_bench" in result.stdout
    assert (results.stat().st_mtime_ns if results.exists() else None) == before


def test_an_unknown_argument_is_refused_at_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unrecognized arguments: --quick" in result.stderr
