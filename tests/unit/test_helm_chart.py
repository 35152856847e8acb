"""The Helm chart in k8s/mcp-todo, rendered offline (helm-python-sdk: Helm's own engine, no binary, no cluster) with
the default values and with k8s/values-production.yaml, and every object validated strictly (unknown fields fail)
against the Kubernetes OpenAPI schemas bundled by kubernetes-validate, for the oldest Kubernetes the chart supports
and the newest one bundled. Then what the schemas cannot know: real commands, contract settings, probes, hooks,
security contexts, drain timing."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from mcp_todo.cli import main as mcp_todo_cli
from mcp_todo.pipeline.worker_process import CHECK_TIMEOUT_S
from mcp_todo.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s" / "mcp-todo"
PRODUCTION = ROOT / "k8s" / "values-production.yaml"
RELEASE, NAMESPACE = "mcp-todo", "todo"
# The chart's kubeVersion floor (">=1.30.0-0"), and the newest schemas kubernetes-validate bundles.
KUBE_FLOOR = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"].removeprefix(">=").removesuffix("-0")
K8S_VERSIONS = (KUBE_FLOOR, kubernetes_validate.utils.latest_version())
SCRIPTS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
SETTINGS_ENV = {str(field.validation_alias) for field in Settings.model_fields.values()}
KNOWN_ENV = SETTINGS_ENV
WORKER_METRICS_PORT = 9464

# The fields of monitoring.coreos.com/v1 ServiceMonitor the chart uses (a CRD, so not in the Kubernetes schemas),
# closed like the strict schemas: a field outside them fails.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}


# The two values the chart has no default for (it refuses to render without them): the rest are the defaults.
REQUIRED: dict[str, Any] = {
    "database": {"url": "postgresql://todo:pw-db@db.example.com:5432/todo"},
    "kafka": {"bootstrapServers": "kafka.example.com:9092"},
}


def merged(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`values` over `base`, section by section, as Helm merges values files."""
    out = dict(base)
    for key, value in values.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(
    values: dict[str, Any] | None = None, chart: Path = CHART, *, base: dict[str, Any] = REQUIRED
) -> list[dict[str, Any]]:
    """Every object the chart renders for `values` over `base`, as `helm install` would (hooks included)."""
    manifests = helm.Chart.load(chart).render(
        merged(base, values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True
    )
    return [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def production_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(PRODUCTION.read_text())
    return values


def validate(doc: dict[str, Any]) -> None:
    """Raises on any object that is not valid for every supported Kubernetes version."""
    if doc["kind"] == "ServiceMonitor":
        jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


DEFAULT = render()
PRODUCTION_DOCS = render(production_values(), base={})
RENDERS = {"default": DEFAULT, "production": PRODUCTION_DOCS}


def objects(kind: str, docs: list[dict[str, Any]] = PRODUCTION_DOCS) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(kind: str, suffix: str, docs: list[dict[str, Any]] = PRODUCTION_DOCS) -> dict[str, Any]:
    (doc,) = [doc for doc in objects(kind, docs) if doc["metadata"]["name"] == f"{RELEASE}{suffix}"]
    return doc


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def containers(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for _name, spec in pod_specs(docs):
        yield from spec["containers"]


@pytest.mark.parametrize("values", RENDERS, ids=str)
def test_every_rendered_object_is_valid_kubernetes(values: str) -> None:
    docs = RENDERS[values]
    assert docs
    for doc in docs:
        validate(doc)


def test_the_schemas_of_both_versions_are_bundled() -> None:
    assert KUBE_FLOOR == "1.30.0"
    for version in K8S_VERSIONS:
        assert version in kubernetes_validate.utils.all_versions()


def test_the_chart_lints_clean() -> None:
    for values in (REQUIRED, production_values()):
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{K8S_VERSIONS[0]}")
        errors = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not errors, errors


def test_objects_of_each_render() -> None:
    kinds = sorted(doc["kind"] for doc in DEFAULT)
    expected = ["ConfigMap", "Secret", "Deployment", "Deployment", "Deployment", "Service", "Job", "Job"]
    assert kinds == sorted([*expected, "PodDisruptionBudget", "NetworkPolicy"])
    extra = sorted(doc["kind"] for doc in PRODUCTION_DOCS)
    for kind in ("Ingress", "HorizontalPodAutoscaler", "ServiceMonitor"):
        assert kind not in kinds and kind in extra
    for doc in PRODUCTION_DOCS:
        assert doc["metadata"]["name"].startswith(RELEASE)


def test_the_defaults_alone_refuse_to_render_naming_what_is_missing() -> None:
    """Nothing could start without a database and a broker, so the render fails and says which value to set."""
    with pytest.raises(helm.HelmError, match=r"database: set database\.url .* or database\.existingSecret"):
        render(base={})
    with pytest.raises(helm.HelmError, match=r"kafka\.bootstrapServers: set it"):
        render({"database": {"url": "postgresql://todo@db/todo"}}, base={})
    with pytest.raises(helm.HelmError, match="database: set"):
        render({"kafka": {"bootstrapServers": "kafka:9092"}}, base={})
    named_secret = render(
        {"database": {"existingSecret": "todo-db"}, "kafka": {"bootstrapServers": "kafka:9092"}}, base={}
    )
    server = named("Deployment", "-server", named_secret)["spec"]["template"]["spec"]["containers"][0]
    (database,) = [env for env in server["env"] if env["name"] == "DATABASE_URL"]
    assert database["valueFrom"]["secretKeyRef"]["name"] == "todo-db"
    for doc in named_secret:
        validate(doc)


def test_the_docs_render_one_liner_prints_only_manifests() -> None:
    """The line docs/deploy.md gives for rendering without a Helm binary, run as written: its output goes to
    `kubectl apply -f -`, so it is Kubernetes objects and nothing else (no NOTES.txt text)."""
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    (line,) = [line for line in deploy.splitlines() if line.startswith("python -c 'import helm_python")]
    command = shlex.split(line)
    assert command[0] == "python"
    result = subprocess.run(
        [sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    assert docs and all(isinstance(doc, dict) and {"apiVersion", "kind", "metadata"} <= doc.keys() for doc in docs)
    assert sorted(doc["kind"] for doc in docs) == sorted(doc["kind"] for doc in PRODUCTION_DOCS)
    assert "kubectl exec" not in result.stdout  # NOTES.txt's instructions


# --- CI catches a broken chart --------------------------------------------------------------------------------------


def test_an_unknown_field_passed_through_values_fails_validation() -> None:
    """A misspelt key inside a value the chart passes through as is (a toleration's `effectt`) renders, and the
    strict schemas reject it."""
    docs = render({"notifier": {"tolerations": [{"key": "spot", "operator": "Exists", "effectt": "NoSchedule"}]}})
    notifier = named("Deployment", "-notifier", docs)
    with pytest.raises(kubernetes_validate.ValidationError, match="effectt"):
        validate(notifier)


def test_a_misspelt_values_key_is_refused() -> None:
    """values.schema.json closes every section: a typo is an error, not a setting silently ignored."""
    with pytest.raises(helm.HelmError, match="replica"):
        render({"server": {"replica": 3}})
    with pytest.raises(helm.HelmError):
        render({"kafka": {"securityProtocol": "SASL_TLS"}})


def test_a_broken_template_fails(tmp_path: Path) -> None:
    chart = Path(shutil.copytree(CHART, tmp_path / "mcp-todo"))
    service = chart / "templates" / "server.yaml"
    service.write_text(service.read_text().replace("targetPort: http", "targetPortt: http"))
    with pytest.raises(kubernetes_validate.ValidationError, match="targetPortt"):
        for doc in render(chart=chart):
            validate(doc)
    service.write_text(service.read_text() + "\n{{ .Values.server.port | nosuchfunction }}\n")
    with pytest.raises(helm.HelmError):
        render(chart=chart)


def test_a_service_monitor_with_an_unknown_field_fails() -> None:
    monitor = named("ServiceMonitor", "", PRODUCTION_DOCS)
    broken = {**monitor, "spec": {**monitor["spec"], "endpoint": []}}
    with pytest.raises(jsonschema.ValidationError, match="endpoint"):
        validate(broken)


# --- what the schemas cannot know ----------------------------------------------------------------------------------


def check_mcp_todo_command(command: list[str]) -> None:
    """The command is a console script of the package, and its subcommands and options parse."""
    assert command[0] in SCRIPTS, command
    if command[0] != "mcp-todo":
        return
    cmd: click.Command = mcp_todo_cli
    ctx = cmd.make_context("mcp-todo", [])
    args = command[1:]
    while isinstance(cmd, click.Group) and args:
        sub = cmd.get_command(ctx, args[0])
        assert sub is not None, f"{shlex.join(command)}: no such command {args[0]!r}"
        cmd, args = sub, args[1:]
        ctx = click.Context(cmd, info_name=cmd.name, parent=ctx)
    assert not isinstance(cmd, click.Group), f"{shlex.join(command)} names a group, not a command"
    cmd.make_context(cmd.name or "", list(args), parent=ctx)


@pytest.mark.parametrize("values", RENDERS, ids=str)
def test_containers_run_real_commands(values: str) -> None:
    for container in containers(RENDERS[values]):
        check_mcp_todo_command(container["command"])
        for probe in ("startupProbe", "livenessProbe"):
            if "exec" in container.get(probe, {}):
                check_mcp_todo_command(container[probe]["exec"]["command"])


@pytest.mark.parametrize("values", RENDERS, ids=str)
def test_only_contract_settings_are_set(values: str) -> None:
    docs = RENDERS[values]
    names = set(objects("ConfigMap", docs)[0]["data"]) | set(objects("Secret", docs)[0].get("stringData", {}))
    for container in containers(docs):
        names |= {env["name"] for env in container.get("env", [])}
    assert names <= KNOWN_ENV, names - KNOWN_ENV


def test_secrets_come_from_existing_secrets_in_production() -> None:
    assert "stringData" not in objects("Secret")[0]
    server = named("Deployment", "-server")["spec"]["template"]["spec"]["containers"][0]
    refs = {env["name"]: env["valueFrom"]["secretKeyRef"] for env in server["env"] if "valueFrom" in env}
    assert refs["DATABASE_URL"] == {"name": "mcp-todo-database", "key": "DATABASE_URL"}
    # Neon's pooled endpoint in DATABASE_URL, its direct one beside it for LISTEN, session locks and migrations.
    assert refs["MCP_TODO_DIRECT_DATABASE_URL"] == {"name": "mcp-todo-database", "key": "MCP_TODO_DIRECT_DATABASE_URL"}
    assert refs["KAFKA_SASL_PASSWORD"] == {"name": "mcp-todo-kafka", "key": "KAFKA_SASL_PASSWORD"}
    config = objects("ConfigMap")[0]["data"]
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["MCP_TODO_OAUTH_ISSUER"].startswith("https://")
    assert config["MCP_TODO_PUBLIC_URL"] == "https://todo.example.com"
    assert "todo.example.com" in config["MCP_TODO_ALLOWED_HOSTS"].split()


def test_secrets_given_as_values_go_into_the_charts_secret_not_the_config() -> None:
    docs = render(
        {
            "database": {"url": "postgresql://u:pw-db@db/x"},
            "kafka": {"sasl": {"username": "u", "password": "pw-kafka"}},
            "notify": {"urls": "ntfy://pw-notify"},
        }
    )
    secret = objects("Secret", docs)[0]
    assert set(secret["stringData"]) == {"DATABASE_URL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} | {
        "MCP_TODO_NOTIFY_URLS"
    }
    text = yaml.safe_dump([doc for doc in docs if doc["kind"] != "Secret"])
    assert "pw-" not in text
    server = named("Deployment", "-server", docs)["spec"]["template"]["spec"]["containers"][0]
    assert {env["valueFrom"]["secretKeyRef"]["name"] for env in server["env"]} == {secret["metadata"]["name"]}


def test_a_direct_database_url_given_as_a_value_goes_into_the_secret_and_is_absent_unless_given() -> None:
    docs = render({"database": {"url": "postgresql://u:pw-db@pooler/x", "directUrl": "postgresql://u:pw-db@db/x"}})
    secret = objects("Secret", docs)[0]
    assert secret["stringData"]["MCP_TODO_DIRECT_DATABASE_URL"] == "postgresql://u:pw-db@db/x"
    for container in containers(docs):
        (ref,) = [env for env in container["env"] if env["name"] == "MCP_TODO_DIRECT_DATABASE_URL"]
        assert ref["valueFrom"]["secretKeyRef"] == {
            "name": secret["metadata"]["name"],
            "key": "MCP_TODO_DIRECT_DATABASE_URL",
        }
    for container in containers(render({"database": {"url": "postgresql://u:pw-db@db/x"}})):
        assert "MCP_TODO_DIRECT_DATABASE_URL" not in {env["name"] for env in container["env"]}


def test_the_database_url_is_required_never_an_embedded_database() -> None:
    """Without a URL the pods refuse to start (a required secret key), rather than each running its own database."""
    for container in containers(DEFAULT):
        (ref,) = [env for env in container["env"] if env["name"] == "DATABASE_URL"]
        assert ref["valueFrom"]["secretKeyRef"].get("optional") is not True


@pytest.mark.parametrize("values", RENDERS, ids=str)
def test_selectors_match_their_pods(values: str) -> None:
    docs = RENDERS[values]
    for doc in objects("Deployment", docs):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
    server_labels = named("Deployment", "-server", docs)["spec"]["template"]["metadata"]["labels"]
    assert named("Service", "", docs)["spec"]["selector"].items() <= server_labels.items()
    assert named("PodDisruptionBudget", "-server", docs)["spec"]["selector"]["matchLabels"].items() <= (
        server_labels.items()
    )


def test_server_probes_split_liveness_from_readiness() -> None:
    """Liveness never depends on the database (an outage must not restart healthy replicas); readiness does; the
    start-up probe allows for the server's wait for its database."""
    container = named("Deployment", "-server")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    startup_timeout_s = Settings.model_fields["startup_timeout_s"].default
    assert startup["periodSeconds"] * startup["failureThreshold"] > startup_timeout_s


def test_a_rolling_update_loses_no_request() -> None:
    """The server keeps serving for the preStop sleep (while proxies drop its endpoint), then drains within 30 s of
    SIGTERM, all inside the grace period; a new pod is up before an old one goes."""
    server = named("Deployment", "-server")
    spec = server["spec"]["template"]["spec"]
    sleep_s = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep_s > 0 and spec["terminationGracePeriodSeconds"] > sleep_s + 30
    assert server["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for name, pod in pod_specs(PRODUCTION_DOCS):
        if name.endswith(("-notifier", "-recurrer")):
            assert pod["terminationGracePeriodSeconds"] > 30


def test_workers_expose_metrics_and_probe_without_depending_on_the_broker() -> None:
    for name in ("notifier", "recurrer"):
        deployment = named("Deployment", f"-{name}")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == [f"mcp-todo-{name}"]
        assert {"name": "MCP_TODO_METRICS_PORT", "value": str(WORKER_METRICS_PORT)} in container["env"]
        assert {"name": "metrics", "containerPort": WORKER_METRICS_PORT, "protocol": "TCP"} in container["ports"]
        assert container["startupProbe"]["exec"]["command"] == [f"mcp-todo-{name}", "--check"]
        assert container["startupProbe"]["timeoutSeconds"] > CHECK_TIMEOUT_S  # the check answers before the probe quits
        assert container["livenessProbe"]["tcpSocket"]["port"] == "metrics"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(WORKER_METRICS_PORT)
    assert named("Deployment", "-notifier")["spec"]["replicas"] == 2
    docs = render({"recurrer": {"replicas": 3}})
    assert named("Deployment", "-recurrer", docs)["spec"]["replicas"] == 3


def test_server_metrics_are_scraped_and_the_service_monitor_is_optional() -> None:
    annotations = named("Deployment", "-server")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics" and annotations["prometheus.io/port"] == "8000"
    assert not objects("ServiceMonitor", DEFAULT)
    monitor = named("ServiceMonitor", "")
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} == {"http", "metrics"}
    workers_metrics = named("Service", "-workers-metrics")
    worker_labels = named("Deployment", "-notifier")["spec"]["template"]["metadata"]["labels"]
    server_labels = named("Deployment", "-server")["spec"]["template"]["metadata"]["labels"]
    assert workers_metrics["spec"]["selector"].items() <= worker_labels.items()
    assert not workers_metrics["spec"]["selector"].items() <= server_labels.items()


@pytest.mark.parametrize("values", RENDERS, ids=str)
def test_every_pod_is_locked_down(values: str) -> None:
    for name, spec in pod_specs(RENDERS[values]):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["automountServiceAccountToken"] is False, name
        tmp = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context["seccompProfile"]["type"] == "RuntimeDefault", name
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"] and "tmp" in tmp, name
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], name
            assert resources["limits"]["memory"], name


def test_jobs_are_hooks_that_migrate_then_create_topics() -> None:
    hooks = {
        doc["kind"] + "/" + doc["metadata"]["name"]: doc["metadata"]["annotations"]
        for doc in PRODUCTION_DOCS
        if "helm.sh/hook" in doc["metadata"].get("annotations", {})
    }
    for hook in hooks.values():
        assert set(hook["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    jobs = {doc["metadata"]["name"]: doc for doc in objects("Job")}
    migrate, topics = jobs["mcp-todo-migrate"], jobs["mcp-todo-topics"]
    assert migrate["spec"]["template"]["spec"]["containers"][0]["command"] == ["mcp-todo", "migrate"]
    assert topics["spec"]["template"]["spec"]["containers"][0]["command"] == ["mcp-todo", "topics", "create"]

    def weight(key: str) -> int:
        return int(hooks[key]["helm.sh/hook-weight"])

    # The settings exist before the jobs that read them; the schema before the topics.
    assert weight("ConfigMap/mcp-todo-config") < weight("Job/mcp-todo-migrate") < weight("Job/mcp-todo-topics")
    assert weight("Secret/mcp-todo-secrets") < weight("Job/mcp-todo-migrate")


def test_production_has_tls_ingress_autoscaling_and_a_network_policy() -> None:
    ingress = named("Ingress", "")
    assert ingress["spec"]["tls"][0]["hosts"] == ["todo.example.com"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "mcp-todo", "port": {"name": "http"}}
    hpa = named("HorizontalPodAutoscaler", "-server")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "mcp-todo-server"
    assert "replicas" not in named("Deployment", "-server")["spec"]  # the HPA owns it
    policy = named("NetworkPolicy", "")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    allowed_in = {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert allowed_in == {8000, WORKER_METRICS_PORT}
    allowed_out = {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}
    assert allowed_out == {53, 443, 5432, 9092}


# --- the README's operator commands, checked against the chart (they need a cluster, so nothing runs them) ------


README = (ROOT / "README.md").read_text()
DEPLOY = README.split("## Deploy with Helm", 1)[1].split("\n## ", 1)[0]
CONNECT = README.split("## Connect an MCP host over HTTP", 1)[1].split("\n## ", 1)[0]


def readme_commands(section: str, program: str) -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.startswith(program + " ")]


def option(command: list[str], *names: str) -> str:
    (value,) = [command[i + 1] for i, word in enumerate(command) if word in names]
    return value


def test_the_readme_helm_install_uses_the_chart_and_the_production_values() -> None:
    (helm_command,) = readme_commands(DEPLOY, "helm")
    assert helm_command[:4] == ["helm", "upgrade", "--install", RELEASE]
    assert (ROOT / helm_command[4]).resolve() == CHART
    assert (ROOT / option(helm_command, "-f", "--values")).resolve() == PRODUCTION


def test_the_readme_creates_the_secrets_the_production_values_name() -> None:
    created: dict[str, set[str]] = {}
    for command in readme_commands(DEPLOY, "kubectl"):
        if command[3:6] == ["create", "secret", "generic"]:
            keys = {word.split("=", 1)[1].split("=", 1)[0] for word in command if word.startswith("--from-literal=")}
            created[command[6]] = keys
    values = production_values()
    assert created == {
        values["database"]["existingSecret"]: {values["database"]["existingSecretKey"]},
        values["kafka"]["sasl"]["existingSecret"]: {
            values["kafka"]["sasl"]["usernameKey"],
            values["kafka"]["sasl"]["passwordKey"],
        },
    }


def test_the_readme_token_command_runs_in_the_server_deployment() -> None:
    (exec_command,) = [c for c in readme_commands(DEPLOY, "kubectl") if "exec" in c]
    target = next(word for word in exec_command if word.startswith("deploy/"))
    named("Deployment", target.removeprefix("deploy/" + RELEASE))
    check_mcp_todo_command(exec_command[exec_command.index("--") + 1 :])


def test_the_readme_host_configs_are_json_for_the_public_url() -> None:
    public_url = production_values()["publicUrl"]
    blocks = re.findall(r"```json\n(.+?)\n```", CONNECT, flags=re.S)
    assert len(blocks) == 2
    for block in blocks:
        assert f"{public_url}/mcp" in json.dumps(json.loads(block))
    for command in readme_commands(CONNECT, "claude"):
        assert command[:5] == ["claude", "mcp", "add", "--transport", "http"] and f"{public_url}/mcp" in command
