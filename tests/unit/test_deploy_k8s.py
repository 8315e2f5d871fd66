"""deploy/k8s/, checked offline: every manifest against the Kubernetes schemas of the minimum
version the manifests state and of the newest kubernetes-validate knows, the features that set
that minimum, and what the manifests promise: their own namespace, no service-account token,
keys from mounted files, a NetworkPolicy, an image pinned by digest, the autoscaler's metrics.
checkov's run is in test_deploy_checkov.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from app.compose import create_app
from app.settings import Settings
from tests.support.project import ROOT

K8S = ROOT / "deploy" / "k8s"
NAMESPACE = "housing-inference"
# The oldest Kubernetes the manifests are for: deploy/k8s/README.md and kustomization.yaml state
# it, and the namespace pins Pod Security's profile to it. FEATURES below says what sets it.
K8S_MIN_VERSION = "1.30"
K8S_NEWEST = ".".join(latest_version().split(".")[:2])
KEYS_DIR = "/var/run/secrets/housing"

Doc = dict[str, Any]


def k8s_documents() -> list[tuple[str, Doc]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def of_kind(kind: str) -> Doc:
    (doc,) = [doc for _, doc in k8s_documents() if doc["kind"] == kind]
    return doc


def deployment() -> Doc:
    return of_kind("Deployment")


def pod() -> Doc:
    spec: Doc = deployment()["spec"]["template"]["spec"]
    return spec


def container() -> Doc:
    (found,) = pod()["containers"]
    return found


def kustomization() -> Doc:
    doc: Doc = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return doc


def routes() -> set[str]:
    app = create_app(Settings(artifacts=Path("artifacts"), device="cpu"))
    return set(app.openapi()["paths"])


@pytest.mark.parametrize("version", [K8S_MIN_VERSION, K8S_NEWEST])
@pytest.mark.parametrize(("name", "doc"), k8s_documents(), ids=lambda v: str(v)[:20])
def test_kubernetes_manifests_match_the_schemas(name: str, doc: Doc, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_catches_a_typo() -> None:
    doc = deployment()
    broken = {**doc, "spec": {**doc["spec"], "replica": 2}}  # not "replicas"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_MIN_VERSION, strict=True)
    hpa = of_kind("HorizontalPodAutoscaler")
    queue = {**hpa["spec"]["metrics"][0], "pods": {"metric": {"name": "x"}, "targt": {}}}
    broken = {**hpa, "spec": {**hpa["spec"], "metrics": [queue]}}  # not "target"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_MIN_VERSION, strict=True)


def test_the_minimum_version_schema_refuses_a_later_field() -> None:
    """A field that came after the minimum fails there: the schema check at the minimum is
    what keeps newer fields out. (Pod-level `resources` came in 1.32.)"""
    doc = deployment()
    spec = {**pod(), "resources": {"limits": {"memory": "4Gi"}}}
    broken = {**doc, "spec": {**doc["spec"], "template": {"spec": spec}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_MIN_VERSION, strict=True)
    kubernetes_validate.validate(broken, K8S_NEWEST, strict=True)


# Fields in the schemas of older versions too, but on by default only from some version: what the
# manifests use of them sets the minimum. (what, used?, on by default from, where that is said)
FEATURES: list[tuple[str, Callable[[], bool], str, str]] = [
    (
        "preStop sleep action",
        lambda: "sleep" in container()["lifecycle"]["preStop"],
        "1.30",
        "KEP-3960 (kubernetes/enhancements#3960): alpha 1.29, beta and on by default 1.30",
    ),
    (
        "topologySpreadConstraints matchLabelKeys",
        lambda: any("matchLabelKeys" in c for c in pod()["topologySpreadConstraints"]),
        "1.27",
        "KEP-3243 (kubernetes/enhancements#3243): beta and on by default 1.27",
    ),
    (
        "PodDisruptionBudget unhealthyPodEvictionPolicy",
        lambda: "unhealthyPodEvictionPolicy" in of_kind("PodDisruptionBudget")["spec"],
        "1.27",
        "KEP-3017 (kubernetes/enhancements#3017): alpha 1.26, beta 1.27, GA 1.31",
    ),
    (
        "gRPC readiness probe",
        lambda: "grpc" in container()["readinessProbe"],
        "1.24",
        "KEP-2727: beta and on by default 1.24, GA 1.27",
    ),
]


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.split(".")
    return int(major), int(minor_)


def test_the_stated_minimum_version_is_what_the_manifests_need() -> None:
    used = {name: since for name, is_used, since, _ in FEATURES if is_used()}
    assert set(used) == {name for name, *_ in FEATURES}, "a feature left: update FEATURES"
    assert max(used.values(), key=minor) == K8S_MIN_VERSION
    # The same version everywhere it is written.
    readme = (K8S / "README.md").read_text()
    kustomize = (K8S / "kustomization.yaml").read_text()
    for text in (readme, kustomize):
        assert re.findall(r"Kubernetes (\d+\.\d+) or later", text) == [K8S_MIN_VERSION]
    labels = of_kind("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce-version"] == f"v{K8S_MIN_VERSION}"
    assert minor(K8S_MIN_VERSION) < minor(K8S_NEWEST)


def test_kustomize_lists_every_manifest() -> None:
    listed = kustomization()["resources"]
    assert sorted(listed) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    # The namespace first: kubectl applies in this order.
    assert listed[0] == "namespace.yaml"


def test_everything_lives_in_the_services_namespace() -> None:
    namespace = of_kind("Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, doc in k8s_documents():
        if doc["kind"] == "Namespace":
            continue
        # prometheus-adapter reads its rules from its own namespace.
        expected = "monitoring" if name == "prometheus-adapter.yaml" else NAMESPACE
        assert doc["metadata"].get("namespace") == expected, name
    # Not through kustomize's `namespace:`, which would move the adapter's ConfigMap too.
    assert "namespace" not in kustomization()


def test_the_pods_get_no_service_account_token() -> None:
    account = of_kind("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod()["serviceAccountName"] == account["metadata"]["name"]
    assert pod()["automountServiceAccountToken"] is False


def test_the_keys_are_files_from_a_mounted_secret() -> None:
    env = {e["name"]: e for e in container()["env"]}
    # No secret in the environment.
    assert not [name for name, e in env.items() if "valueFrom" in e]
    assert {"HOUSING_API_KEY", "HOUSING_ADMIN_KEY"}.isdisjoint(env)
    files = {
        "HOUSING_API_KEY_FILE": f"{KEYS_DIR}/api-key",
        "HOUSING_ADMIN_KEY_FILE": f"{KEYS_DIR}/admin-key",
    }
    assert {name: env[name]["value"] for name in files} == files
    # Variables the server reads (HOUSING_ + a settings field).
    assert Settings.model_config["env_prefix"] == "HOUSING_"
    assert {"api_key_file", "admin_key_file"} <= set(Settings.model_fields)
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod()["volumes"]}
    (keys,) = [name for name, m in mounts.items() if m["mountPath"] == KEYS_DIR]
    assert mounts[keys]["readOnly"] is True
    secret = volumes[keys]["secret"]
    assert secret["secretName"] == "housing-inference"
    # Required: without the Secret the pod waits instead of serving without keys.
    assert not secret.get("optional", False)
    # Readable by the server's group only (root owns the files; fsGroup is their group).
    assert secret["defaultMode"] == 0o440
    assert pod()["securityContext"]["fsGroup"] == pod()["securityContext"]["runAsGroup"]
    # No Secret with values ships here.
    assert "Secret" not in {doc["kind"] for _, doc in k8s_documents()}


def test_the_root_filesystem_is_read_only_with_tmp_writable() -> None:
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod()["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/opt/ml/model"]]["persistentVolumeClaim"]["readOnly"] is True


def test_the_network_policy_lets_in_the_service_ports_and_out_dns_and_otlp() -> None:
    policy = of_kind("NetworkPolicy")["spec"]
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    ports = {(p["port"], p["protocol"]) for p in ingress["ports"]}
    assert ports == {(p["containerPort"], "TCP") for p in container()["ports"]}
    # Prometheus scrapes a port the policy lets in.
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert (int(annotations["prometheus.io/port"]), "TCP") in ports
    egress = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {(53, "UDP"), (53, "TCP"), (4317, "TCP"), (4318, "TCP")}
    for rule in policy["egress"]:
        assert all("ipBlock" not in peer for peer in rule["to"])  # inside the cluster only


def test_the_image_is_pinned_by_digest() -> None:
    image = container()["image"]
    name, _, digest = image.partition("@")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    (entry,) = kustomization()["images"]
    assert entry["name"] == name  # the entry that replaces it
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry["digest"])
    assert "newTag" not in entry
    # The placeholder exists nowhere: an unedited apply fails to pull.
    assert digest == entry["digest"] == "sha256:" + "0" * 64
    assert container()["imagePullPolicy"] == "IfNotPresent"


def adapter_rules() -> list[Doc]:
    config = of_kind("ConfigMap")["data"]["config.yaml"]
    rules: list[Doc] = yaml.safe_load(config)["rules"]
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
    spread = pod()["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()


def test_the_deployment_fits_the_service() -> None:
    kinds = {doc["kind"] for _, doc in k8s_documents()}
    assert kinds == {
        "Namespace",
        "ServiceAccount",
        "NetworkPolicy",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
    }
    known = routes()
    assert container()["livenessProbe"]["httpGet"]["path"] == "/health/live"
    # Readiness through the gRPC door (the same flag as /health/ready), liveness through HTTP.
    assert container()["readinessProbe"]["grpc"]["port"] == 8081
    assert {"/health/live", "/health/ready"} <= known
    assert container()["resources"]["limits"]["aws.amazon.com/neuroncore"] >= 1
    env = {e["name"]: e.get("value") for e in container()["env"]}
    grace = float(env["HOUSING_GRACEFUL_TIMEOUT_S"])
    pre_stop = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    # Kubernetes counts preStop inside the grace period: the drain must fit after it.
    assert pod()["terminationGracePeriodSeconds"] > pre_stop + grace
    assert [(p["name"], p["containerPort"]) for p in container()["ports"]] == [
        ("http", 8080),
        ("grpc", 8081),
    ]
    service = of_kind("Service")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http", "grpc"}
    security = pod()["securityContext"]
    assert security["runAsNonRoot"] is True
    # The image's own user (Dockerfile: USER 10001:10001).
    assert (security["runAsUser"], security["runAsGroup"]) == (10001, 10001)
