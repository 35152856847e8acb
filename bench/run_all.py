"""Every benchmark, one after the other, then bench/RESULTS.md from their reports:

    .venv/bin/python -m bench.run_all

Each benchmark measures its baseline in the same run (a no-op tool and the raw SQL statement; raw aiokafka) and
reports medians, tails and ratios. Uses TEST_DATABASE_URL's PostgreSQL when set, else an embedded one; starts its own
`tansu` broker for the Kafka parts. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
BENCHES = ("core", "relay", "workers", "lean", "next")


def machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: nothing to set, but `--help` says what a run does before it takes minutes."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run_all",
        description="Run every benchmark, one after the other, then write bench/RESULTS.md from their reports. "
        f"Each also runs on its own: {', '.join(f'python -m bench.{name}_bench' for name in BENCHES)}.",
        epilog="Uses TEST_DATABASE_URL's PostgreSQL when set, else an embedded one; starts its own tansu broker for "
        "the Kafka parts. Takes a few minutes on 2 cores.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    parse_arguments(argv)
    for name in BENCHES:
        subprocess.run([sys.executable, "-m", f"bench.{name}_bench"], check=True, cwd=HERE.parent)
    database = "TEST_DATABASE_URL's PostgreSQL" if os.environ.get("TEST_DATABASE_URL") else "embedded PostgreSQL 18"
    parts = [
        "# Benchmark results",
        "",
        f"`.venv/bin/python -m bench.run_all` on {machine()}; {database}; "
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Each section names its own command.",
        "",
    ]
    for name in BENCHES:
        report = (HERE / "results" / f"{name}.md").read_text().strip()
        parts += ["#" + report if report.startswith("# ") else report, ""]
    (HERE / "RESULTS.md").write_text("\n".join(parts))
    sys.stdout.write("\n".join(parts))


if __name__ == "__main__":
    main()
