"""The Kubernetes manifests, validated offline: well-formed objects, commands that exist, only contract variables."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcp_todo.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [doc for path in sorted((ROOT / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]
KNOWN_ENV = {str(field.validation_alias) for field in Settings.model_fields.values()}
SCRIPTS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
REQUIRED = {"ConfigMap": "data", "Secret": "stringData", "Deployment": "spec", "Job": "spec", "Service": "spec"}


def pod_specs() -> list[dict[str, Any]]:
    return [doc["spec"]["template"]["spec"] for doc in DOCS if doc["kind"] in {"Deployment", "Job"}]


def test_every_object_is_well_formed() -> None:
    kinds = sorted(doc["kind"] for doc in DOCS)
    assert kinds.count("Deployment") == 3 and kinds.count("Job") == 2
    for doc in DOCS:
        assert doc["apiVersion"] and re.fullmatch(r"[a-z0-9-]+", doc["metadata"]["name"])
        assert REQUIRED[doc["kind"]] in doc


def test_selectors_match_their_pod_labels() -> None:
    for doc in DOCS:
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("spec", pod_specs(), ids=lambda s: s["containers"][0]["name"])
def test_containers_run_real_commands_with_contract_settings(spec: dict[str, Any]) -> None:
    for container in spec["containers"]:
        assert container["command"][0] in SCRIPTS
        assert container["resources"]["limits"]["memory"]
    config = next(doc for doc in DOCS if doc["kind"] == "ConfigMap")
    secret = next(doc for doc in DOCS if doc["kind"] == "Secret")
    assert set(config["data"]) | set(secret["stringData"]) <= KNOWN_ENV


def test_worker_shutdown_grace_exceeds_the_30s_drain() -> None:
    for spec in pod_specs():
        if "terminationGracePeriodSeconds" in spec:
            assert spec["terminationGracePeriodSeconds"] > 30


def test_server_probes_split_liveness_from_readiness() -> None:
    """Liveness never depends on the database (an outage must not restart healthy replicas); readiness does; the
    start-up probe allows for the server's wait for its database."""
    server = next(doc for doc in DOCS if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "mcp-todo-server")
    container = server["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    startup_timeout_s = Settings.model_fields["startup_timeout_s"].default
    assert startup["periodSeconds"] * startup["failureThreshold"] > startup_timeout_s
