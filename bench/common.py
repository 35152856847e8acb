"""What every benchmark needs beside tests/support (the PostgreSQL server, fresh databases, the broker, the worker
processes): percentiles and where a report goes."""

from __future__ import annotations

import os
from pathlib import Path

RESULTS_DIR = Path(os.environ.get("BENCH_OUTPUT_DIR", Path(__file__).parent / "results"))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_report(name: str, report: str) -> None:
    """Write `report` to RESULTS_DIR/`name`.md (bench/results unless BENCH_OUTPUT_DIR says otherwise) and print it."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.md").write_text(report)
    print(report)
