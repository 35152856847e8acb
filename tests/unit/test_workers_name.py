"""The top-level import name `workers`, which mcp-todo's wheel installs and an old PyPI distribution (`workers` 0.1)
installs too: `mcp-todo doctor` names any other distribution that provides it, and none of this project's own
dependencies does."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from mcp_todo.doctor import OWN_DISTRIBUTION, workers_package

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_own_distribution_is_the_one_pyproject_builds() -> None:
    assert tomllib.loads(PYPROJECT.read_text())["project"]["name"] == OWN_DISTRIBUTION


def test_only_mcp_todo_or_nothing_is_no_problem() -> None:
    # An editable install records no package files, so the environment may name no provider at all.
    for providers in ({}, {"workers": ["mcp-todo-server"]}, {"workers": ["mcp_todo_server"]}, {"mcp_todo": ["x"]}):
        finding = workers_package(providers)
        assert finding.problem is None, providers
        assert finding.value.startswith("mcp-todo-server's own")


def test_another_distribution_is_named_with_the_fix() -> None:
    finding = workers_package({"workers": ["mcp-todo-server", "workers"], "workerpool": ["workers"]})
    assert finding.value == "also installed by workers"
    assert finding.problem is not None
    assert "`workers`" in finding.problem and "an environment of its own" in finding.problem


def test_no_dependency_of_this_environment_installs_workers() -> None:
    # Every package the lockfile installs (the test extra included) is in this environment.
    providers = importlib.metadata.packages_distributions()
    assert workers_package(providers).problem is None, providers.get("workers")
