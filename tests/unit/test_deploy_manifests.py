"""The deploy files parse and hold together, without a cluster or a Docker daemon: Kubernetes
manifests (structure and field names of the kinds used, probes, replicas, secret references, PDB,
migrate Job), the compose file, the Dockerfile (multi-stage, non-root, HEALTHCHECK on /healthz, no
secrets) and the systemd unit (`systemd-analyze verify` and its offline security score when
systemd-analyze exists; a parser check of the required directives always)."""

from __future__ import annotations

import asyncio
import configparser
import json
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.settings import Settings

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
GRACE_SECONDS = Settings.model_fields["grace_seconds"].default


def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def load(path: Path) -> Any:
    [doc] = load_all(path)
    return doc


# ---------------------------------------------------------------------------------------------
# Kubernetes: a small schema of the fields used (typos and misplaced fields fail)
# ---------------------------------------------------------------------------------------------
META = {"name", "namespace", "labels", "annotations"}
PROBE = {"httpGet", "periodSeconds", "timeoutSeconds", "failureThreshold", "initialDelaySeconds",
         "successThreshold"}  # fmt: skip
CONTAINER = {"name", "image", "imagePullPolicy", "args", "command", "ports", "env", "envFrom",
             "startupProbe", "livenessProbe", "readinessProbe", "resources", "securityContext",
             "volumeMounts"}  # fmt: skip
POD_SPEC = {"containers", "terminationGracePeriodSeconds", "automountServiceAccountToken",
            "securityContext", "topologySpreadConstraints", "volumes", "restartPolicy",
            "serviceAccountName"}  # fmt: skip
API_VERSIONS = {
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "PodDisruptionBudget": "policy/v1",
    "Service": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
}
TOP = {
    "Deployment": {"apiVersion", "kind", "metadata", "spec"},
    "Job": {"apiVersion", "kind", "metadata", "spec"},
    "PodDisruptionBudget": {"apiVersion", "kind", "metadata", "spec"},
    "Service": {"apiVersion", "kind", "metadata", "spec"},
    "ServiceMonitor": {"apiVersion", "kind", "metadata", "spec"},
    "ConfigMap": {"apiVersion", "kind", "metadata", "data"},
    "Secret": {"apiVersion", "kind", "metadata", "type", "stringData", "data"},
    "Kustomization": {"apiVersion", "kind", "labels", "resources", "namespace", "images"},
}


def only(keys: set[str], obj: dict[str, Any], where: str) -> None:
    unknown = set(obj) - keys
    assert not unknown, f"{where}: unknown field(s) {sorted(unknown)}"


def check_pod_template(template: dict[str, Any], where: str) -> None:
    only({"metadata", "spec"}, template, where)
    only(META, template["metadata"], f"{where}.metadata")
    spec = template["spec"]
    only(POD_SPEC, spec, f"{where}.spec")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["containers"], where
    volumes = {v["name"] for v in spec.get("volumes", [])}
    for c in spec["containers"]:
        only(CONTAINER, c, f"{where}.containers[{c.get('name')}]")
        assert c["name"] and c["image"], c
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in c:
                only(PROBE, c[probe], f"{where}.{probe}")
                port = c[probe]["httpGet"]["port"]
                assert port in ports or port in ports.values(), f"{probe} port {port!r} undeclared"
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes, f"volume {mount['name']!r} undeclared"
        for env in c.get("env", []):
            only({"name", "value", "valueFrom"}, env, f"{where}.env")
            assert ("value" in env) != ("valueFrom" in env), env


def manifests() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_all(path):
            out.setdefault(doc["kind"], []).append(doc)
    return out


def test_every_manifest_has_a_known_kind_and_only_known_fields() -> None:
    found = manifests()
    assert set(found) == set(API_VERSIONS), set(found) ^ set(API_VERSIONS)
    for kind, docs in found.items():
        for doc in docs:
            assert doc["apiVersion"] == API_VERSIONS[kind]
            only(TOP[kind], doc, kind)
            if kind != "Kustomization":
                only(META, doc["metadata"], f"{kind}.metadata")
                assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    [deployment], [job] = found["Deployment"], found["Job"]
    only({"replicas", "revisionHistoryLimit", "selector", "strategy", "template"},
         deployment["spec"], "Deployment.spec")  # fmt: skip
    check_pod_template(deployment["spec"]["template"], "Deployment.template")
    only({"backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "template"},
         job["spec"], "Job.spec")  # fmt: skip
    check_pod_template(job["spec"]["template"], "Job.template")


def test_deployment_two_replicas_probes_secrets_and_scraping() -> None:
    found = manifests()
    [deployment], [config], [secret] = found["Deployment"], found["ConfigMap"], found["Secret"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > int(config["data"]["C9_SYNC_GRACE_SECONDS"])
    [worker] = pod["containers"]
    assert worker["args"] == ["run"]
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert worker["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    [port] = worker["ports"]
    assert port["containerPort"] == int(config["data"]["C9_SYNC_HTTP_PORT"])
    assert config["data"]["C9_SYNC_HTTP_HOST"] == "0.0.0.0"  # probes come from the kubelet
    assert config["data"]["C9_SYNC_AUTO_MIGRATE"] == "false"  # the Job migrates, as the owner
    sources = {next(iter(s)): next(iter(s.values()))["name"] for s in worker["envFrom"]}
    assert sources == {
        "configMapRef": config["metadata"]["name"],
        "secretRef": secret["metadata"]["name"],
    }
    assert {
        "DATABASE_URL",
        "GITHUB_TOKEN",
        "JIRA_API_TOKEN",
        "AZURE_DEVOPS_PAT",
        "LINEAR_API_KEY",
    } <= set(secret["stringData"])
    assert all(v == "CHANGE-ME" or "CHANGE-ME" in v for v in secret["stringData"].values()), (
        "no real secret"
    )
    # Writable state under a read-only root filesystem.
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    home = {e["name"]: e.get("value") for e in worker["env"]}["C9_SYNC_HOME"]
    assert {home, "/tmp"} <= mounts
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    [monitor] = found["ServiceMonitor"]
    [service] = found["Service"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_pdb_and_service_select_the_worker_pods_and_the_job_migrates() -> None:
    found = manifests()
    [deployment], [pdb], [service], [job], [secret] = (
        found[k] for k in ("Deployment", "PodDisruptionBudget", "Service", "Job", "Secret")
    )
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["minAvailable"] == 1 < deployment["spec"]["replicas"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    worker_ports = {
        p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert service["spec"]["ports"][0]["targetPort"] in worker_ports
    job_pod = job["spec"]["template"]
    assert (
        not job_pod["metadata"]["labels"].items()
        >= deployment["spec"]["selector"]["matchLabels"].items()
    ), "the Job's pods must not count as workers (Service, PDB)"
    assert job_pod["spec"]["restartPolicy"] in ("Never", "OnFailure")
    [migrate] = job_pod["spec"]["containers"]
    assert migrate["args"] == ["migrate"]
    ref = {e["name"]: e for e in migrate["env"]}["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert migrate["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def test_kustomization_lists_existing_files_and_renders() -> None:
    kustomization = load(K8S / "kustomization.yaml")
    listed = kustomization["resources"]
    assert all((K8S / name).is_file() for name in listed)
    # Kept out on purpose: the Job is immutable, the example Secret would overwrite a real one.
    assert not {"migrate-job.yaml", "secret.example.yaml"} & set(listed)
    kubectl = shutil.which("kubectl")
    if kubectl:  # renders offline: kustomize parses every listed file
        rendered = subprocess.run(
            [kubectl, "kustomize", str(K8S)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert rendered.returncode == 0, rendered.stderr
        kinds = re.findall(r"(?m)^kind: (\w+)$", rendered.stdout)
        assert sorted(kinds) == sorted(load(K8S / n)["kind"] for n in listed)


# ---------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------
def test_compose_postgres_migrate_worker() -> None:
    compose = load(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "worker", "roles", "prometheus", "grafana"}
    postgres, migrate, worker = services["postgres"], services["migrate"], services["worker"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "ports" not in postgres, "the database stays inside the compose network"
    assert migrate["command"] == ["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert worker["command"] == ["run"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["environment"]["C9_SYNC_AUTO_MIGRATE"] == "false"
    assert "/healthz" in " ".join(worker["healthcheck"]["test"])
    assert int(worker["stop_grace_period"].rstrip("s")) > GRACE_SECONDS
    for service in (migrate, worker):
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "container" / "Dockerfile"
        ).resolve()
        assert service["image"] == worker["image"]
        # Secrets come from the environment of `docker compose`, never literal values.
        for name, value in service["environment"].items():
            if re.search(r"TOKEN|PAT|KEY|PASSWORD", name):
                assert value.startswith("${") and value.endswith(":-}"), name
    assert set(compose["volumes"]) == {"pgdata", "grafana"}


def test_compose_dashboards_read_only_after_the_roles() -> None:
    """Grafana starts after the roles (deploy/postgres/roles.sql and its read-only login) are
    applied, which needs the migrated schema; nothing but the worker's /metrics and the two UIs is
    published, and those only on the loopback address."""
    services = load(DEPLOY / "compose.yaml")["services"]
    roles, grafana, prometheus = services["roles"], services["grafana"], services["prometheus"]
    assert roles["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    script = " ".join(roles["command"])
    assert script.index("postgres/roles.sql") < script.index("grafana/login-role.sql")
    for volume in roles["volumes"] + grafana["volumes"] + prometheus["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (DEPLOY / source).exists(), volume
    assert grafana["depends_on"]["roles"]["condition"] == "service_completed_successfully"
    assert "IN ROLE c9_dashboard" in (DEPLOY / "grafana" / "login-role.sql").read_text()
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "container" / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)  # line continuations
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            found.append([])
        assert found, "instructions before the first FROM"
        found[-1].append(instruction)
    return found


def test_dockerfile_multi_stage_slim_non_root_no_secrets() -> None:
    build, runtime = stages()
    assert re.fullmatch(r"python:3\.11-slim AS build", build[0][1])
    assert re.fullmatch(r"python:3\.11-slim AS runtime", runtime[0][1])
    assert any(w == "RUN" and "pip wheel" in r for w, r in build)
    assert any(w == "RUN" and "from=build" in r and "pip install" in r for w, r in runtime)
    assert not any(w == "COPY" for w, _ in runtime), "the runtime stage gets wheels only"
    [user] = [r for w, r in runtime if w == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert [r for w, r in runtime if w == "ENTRYPOINT"] == ['["c9-sync"]']
    assert [r for w, r in runtime if w == "CMD"] == ['["run"]']
    env = " ".join(r for w, r in runtime if w == "ENV")
    assert "C9_SYNC_HTTP_HOST=0.0.0.0" in env and "C9_SYNC_LOG_FORMAT=json" in env
    for word, rest in dockerfile_instructions():
        if word in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"TOKEN|SECRET|PASSWORD|PAT\b|API_KEY|DATABASE_URL", rest), rest
    # The build stage copies everything the wheel is built from.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {src for w, r in build if w == "COPY" for src in r.split()[:-1]}
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert {"pyproject.toml", pyproject["project"]["readme"], *packages} <= copied
    ignore = (DEPLOY / "container" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1 :][:5] == ["!pyproject.toml", "!README.md", "!worker/",
                                                    "!connectors/", "!schema/"]  # fmt: skip


def healthcheck_argv() -> list[str]:
    [check] = [r for w, r in stages()[-1] if w == "HEALTHCHECK"]
    options, _, command = check.partition(" CMD ")
    assert "--interval" in options and "--timeout" in options
    argv = json.loads(command)
    assert argv[0] == "python" and "/healthz" in argv[-1]
    return argv


async def test_dockerfile_healthcheck_probes_healthz() -> None:
    from worker import http

    async def ready() -> str | None:
        return None

    server = await http.serve("127.0.0.1", 0, ready)
    port = server.sockets[0].getsockname()[1]
    argv = [sys.executable, *healthcheck_argv()[1:]]
    env = {"C9_SYNC_HTTP_PORT": str(port), "PATH": "/usr/bin:/bin"}
    try:
        healthy = await asyncio.to_thread(
            subprocess.run, argv, env=env, capture_output=True, timeout=30
        )
    finally:
        server.close()
        await server.wait_closed()
    assert healthy.returncode == 0, healthy.stderr
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    down = await asyncio.to_thread(
        subprocess.run,
        argv,
        env={**env, "C9_SYNC_HTTP_PORT": str(free)},
        capture_output=True,
        timeout=30,
    )
    assert down.returncode != 0


# ---------------------------------------------------------------------------------------------
# systemd
# ---------------------------------------------------------------------------------------------
UNIT = DEPLOY / "systemd" / "c9-sync.service"


def unit_directives() -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (a key may repeat, as Environment= does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        assert current is not None, line
        key, eq, value = line.partition("=")
        assert eq, f"not a directive: {line!r}"
        sections[current].setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match[1]) * (60 if match[2] == "min" else 1)


def test_unit_file_required_directives() -> None:
    unit = unit_directives()
    assert set(unit) == {"Unit", "Service", "Install"}
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert seconds(service["WatchdogSec"]) > 0
    assert seconds(service["TimeoutStopSec"]) > GRACE_SECONDS
    assert service["DynamicUser"] == "yes" or service.get("User") not in (None, "root")
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                       "ProtectHome": "yes"}.items():  # fmt: skip
        assert service[key] == value, key
    assert service["StateDirectory"] == "c9-sync"
    env = dict(e.split("=", 1) for e in unit["Service"]["Environment"])
    assert env["C9_SYNC_HOME"] == "%S/c9-sync", "state lives under StateDirectory"
    assert service["ExecStart"].endswith("c9-sync run")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "systemd" / "c9-sync.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert float(example["C9_SYNC_GRACE_SECONDS"]) < seconds(service["TimeoutStopSec"])
    assert example["C9_SYNC_AUTO_MIGRATE"] == "false"
    # configparser agrees it is well-formed INI (duplicates allowed, as systemd allows them).
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    assert parser["Service"]["Type"] == "notify"


@pytest.fixture
def installed_unit(tmp_path) -> Iterator[Path]:
    """The unit with ExecStart pointing at this venv's c9-sync (verify checks the binary exists)."""
    c9 = Path(sys.executable).with_name("c9-sync")
    text = UNIT.read_text().replace("/opt/c9-sync/bin/c9-sync", str(c9))
    path = tmp_path / "c9-sync.service"
    path.write_text(text)
    yield path


def test_unit_file_verifies_with_systemd_analyze(installed_unit) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        # No systemd here: test_unit_file_required_directives is the check that runs.
        assert unit_directives()["Service"]["Type"] == ["notify"]
        return
    verify = subprocess.run(
        [analyze, "verify", str(installed_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    # Unknown or misspelt directives are only warnings: any output is a failure here.
    assert verify.stderr.strip() == "" and verify.stdout.strip() == "", verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=25", str(installed_unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert score and float(score[1]) <= 2.5, security.stdout[-500:]
