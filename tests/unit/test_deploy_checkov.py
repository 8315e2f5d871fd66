"""checkov on every deployment file -- the CloudFormation template, the Kubernetes manifests and
both Dockerfiles -- as a user runs it, offline:

    checkov --framework cloudformation,kubernetes,dockerfile --skip-download --quiet --compact \\
      -f deploy/aws/housing-inference.yaml deploy/k8s/*.yaml Dockerfile deploy/Dockerfile.neuron-sdk

No finding may be left, and each skip must be one listed in SKIPS, with its reason beside it in
the file (CloudFormation: the resource's `Metadata: checkov: skip`; Kubernetes: a
`checkov.io/skip<n>: ID=reason` annotation; Dockerfile: a `# checkov:skip=ID: reason` comment).
Broken copies, in the same run, prove that it finds what it should. The test reads the run's
JSON report, without --quiet, so that the skips and their reasons are in it. checkov lives in a
virtualenv of its own, .venv/checkov (`make install`; its pins conflict with .venv's)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import decode_str

from tests.support.project import ROOT

CHECKOV_VERSION = "3.3.30"  # the Makefile's pin
FRAMEWORKS = ("cloudformation", "kubernetes", "dockerfile")
TEMPLATE = Path("deploy/aws/housing-inference.yaml")
K8S = Path("deploy/k8s")
DOCKERFILES = [Path("Dockerfile"), Path("deploy/Dockerfile.neuron-sdk")]
# Every skip, as (file, check). The reasons are in the files; a new skip must be added here.
SKIPS = {
    (str(TEMPLATE), "CKV_AWS_2"),  # port 80: a redirect, or plain HTTP only by parameter
    (str(TEMPLATE), "CKV_AWS_103"),  # the same listener
    (str(TEMPLATE), "CKV_AWS_91"),  # access logs only with AccessLogBucket
    (str(K8S / "deployment.yaml"), "CKV_K8S_11"),  # no CPU limit
    (str(K8S / "deployment.yaml"), "CKV_K8S_15"),  # IfNotPresent for a digest-pinned image
    ("Dockerfile", "CKV_DOCKER_7"),  # FROM ${BASE_IMAGE}: checkov does not expand ARG
    ("deploy/Dockerfile.neuron-sdk", "CKV_DOCKER_7"),  # FROM ${UBUNTU_IMAGE}
}
# checkov's stand-in for a skip without a reason.
NO_REASON = "No comment provided"

Report = dict[str, Any]
Doc = dict[str, Any]


def deployment_files() -> list[Path]:
    manifests = [K8S / p.name for p in sorted((ROOT / K8S).glob("*.yaml"))]
    return [TEMPLATE, *manifests, *DOCKERFILES]


def checkov_exe() -> str:
    own = Path(sys.prefix) / "checkov" / "bin" / "checkov"
    found = str(own) if own.exists() else shutil.which("checkov")
    assert found, "checkov runs from .venv/checkov: run `make install`"
    return found


def checkov(paths: list[Path]) -> list[Report]:
    """One offline run over ``paths`` (relative to the repository or absolute): one JSON report
    per framework."""
    # Offline: no platform key, nothing downloaded (--skip-download: no guidelines, no
    # external checks).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_"))}
    result = subprocess.run(
        [checkov_exe(), "--framework", ",".join(FRAMEWORKS), "--skip-download", "--compact"]
        + ["--output", "json", "--file", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: findings
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def results(reports: list[Report], kind: str, under: Path) -> list[tuple[str, Report]]:
    """The results of one kind about files under ``under``, with their path relative to it."""
    out = []
    for report in reports:
        for check in report["results"].get(kind, []):
            # Absolute for Dockerfiles, as given for the others.
            path = ROOT / check["file_abs_path"]
            if path.is_relative_to(under):
                out.append((str(path.relative_to(under)), check))
    return out


def findings(reports: list[Report], under: Path = ROOT) -> set[tuple[str, str]]:
    return {(file, c["check_id"]) for file, c in results(reports, "failed_checks", under)}


def skips(reports: list[Report], under: Path = ROOT) -> dict[tuple[str, str], str]:
    return {
        (file, c["check_id"]): c["check_result"].get("suppress_comment", NO_REASON).strip()
        for file, c in results(reports, "skipped_checks", under)
    }


def unexplained(reports: list[Report], under: Path = ROOT) -> set[tuple[str, str]]:
    """Skips whose reason is missing or too short to say anything."""
    return {
        key
        for key, reason in skips(reports, under).items()
        if reason == NO_REASON or len(reason) < 40
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Report], Path]:
    """One checkov run over the deployment files and every broken copy (MUTANTS, in a folder
    of its own each): the reports, and the folder of the copies."""
    folder = tmp_path_factory.mktemp("checkov-mutants")
    paths = []
    for name, (make, _) in MUTANTS.items():
        (folder / name).mkdir()
        for file, text in make(name).items():
            (folder / name / file).write_text(text)
            paths.append(folder / name / file)
    return checkov([*deployment_files(), *paths]), folder


@pytest.fixture(scope="module")
def reports(run: tuple[list[Report], Path]) -> list[Report]:
    return run[0]


def test_checkov_is_the_pinned_version(reports: list[Report]) -> None:
    assert {r["summary"]["checkov_version"] for r in reports} == {CHECKOV_VERSION}
    assert f"checkov=={CHECKOV_VERSION}" in (ROOT / "Makefile").read_text()


def test_checkov_reads_every_deployment_file(reports: list[Report]) -> None:
    assert sorted(r["check_type"] for r in reports) == sorted(FRAMEWORKS)
    for report in reports:
        assert report["results"]["parsing_errors"] == [], report["check_type"]
    read = {
        file
        for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for file, _ in results(reports, kind, ROOT)
    }
    # Files without a check of their own (the Namespace, the NetworkPolicy, which only the
    # pods' graph check reads, the HPA and the PDB) have no result of their own.
    assert read <= {str(p) for p in deployment_files()}
    assert {str(TEMPLATE), str(K8S / "deployment.yaml"), *map(str, DOCKERFILES)} <= read


def test_checkov_finds_nothing(reports: list[Report]) -> None:
    assert findings(reports) == set()


def test_every_skip_is_listed_and_has_its_reason_beside_it(reports: list[Report]) -> None:
    assert set(skips(reports)) == SKIPS
    assert unexplained(reports) == set()


# Broken copies, each in a folder of its own, with the findings checkov must report for it.
def cfn_template() -> Doc:
    doc, problems = decode_str((ROOT / TEMPLATE).read_text())
    assert not problems, problems
    plain: Doc = json.loads(json.dumps(doc))
    return plain


def cfn(mutate: Callable[[Doc], None]) -> dict[str, str]:
    doc = cfn_template()
    mutate(doc)
    return {"housing-inference.json": json.dumps(doc, indent=1)}


def k8s(mutate: Callable[[dict[str, list[Doc]]], None]) -> Callable[[str], dict[str, str]]:
    """Every manifest, changed by ``mutate``, with "housing-inference" (names, namespace,
    labels) renamed after the copy: checkov's graph check that each pod has a NetworkPolicy
    matches labels across all files of a run, so each copy gets labels of its own."""

    def files(name: str) -> dict[str, str]:
        manifests = {
            p.name: [
                d for d in yaml.safe_load_all(p.read_text().replace("housing-inference", name)) if d
            ]
            for p in sorted((ROOT / K8S).glob("*.yaml"))
            if p.name != "kustomization.yaml"
        }
        mutate(manifests)
        return {name: yaml.safe_dump_all(docs) for name, docs in manifests.items() if docs}

    return files


def deployment_of(manifests: dict[str, list[Doc]]) -> Doc:
    (doc,) = manifests["deployment.yaml"]
    return doc


def pod_of(manifests: dict[str, list[Doc]]) -> Doc:
    spec: Doc = deployment_of(manifests)["spec"]["template"]["spec"]
    return spec


def key_in_env(manifests: dict[str, list[Doc]]) -> None:
    (container,) = pod_of(manifests)["containers"]
    secret = {"secretKeyRef": {"name": "housing-inference", "key": "api-key"}}
    container["env"].append({"name": "HOUSING_API_KEY", "valueFrom": secret})


def token_mounted(manifests: dict[str, list[Doc]]) -> None:
    del pod_of(manifests)["automountServiceAccountToken"]


def image_by_tag(manifests: dict[str, list[Doc]]) -> None:
    (container,) = pod_of(manifests)["containers"]
    container["image"] = "housing-inference:neuron"


def without_network_policy(manifests: dict[str, list[Doc]]) -> None:
    manifests["networkpolicy.yaml"] = []


def in_the_default_namespace(manifests: dict[str, list[Doc]]) -> None:
    manifests["namespace.yaml"] = []
    for docs in manifests.values():
        for doc in docs:
            if doc["metadata"].get("namespace") != "monitoring":
                doc["metadata"].pop("namespace", None)


def skip_without_reason(manifests: dict[str, list[Doc]]) -> None:
    annotations = deployment_of(manifests)["metadata"]["annotations"]
    annotations["checkov.io/skip1"] = annotations["checkov.io/skip1"].partition("=")[0]


def dockerfile(change: Callable[[str], str]) -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    changed = change(text)
    assert changed != text
    return {"Dockerfile": changed}


def drop_lines(pattern: str) -> Callable[[str], str]:
    return lambda text: re.sub(pattern, "", text, flags=re.MULTILINE)


MutantFiles = Callable[[str], dict[str, str]]
MUTANTS: dict[str, tuple[MutantFiles, set[str]]] = {
    "cfn-log-group-without-kms": (
        lambda _: cfn(lambda d: d["Resources"]["LogGroup"]["Properties"].pop("KmsKeyId")),
        {"CKV_AWS_158"},
    ),
    "cfn-key-without-rotation": (
        lambda _: cfn(
            lambda d: d["Resources"]["LogKey"]["Properties"].update(EnableKeyRotation=False)
        ),
        {"CKV_AWS_7"},
    ),
    # The skips are what silences these: without them, checkov sees the listener and the
    # load balancer as they are.
    "cfn-listener-skips-removed": (
        lambda _: cfn(lambda d: d["Resources"]["HttpListener"].pop("Metadata")),
        {"CKV_AWS_2", "CKV_AWS_103"},
    ),
    "cfn-access-log-skip-removed": (
        lambda _: cfn(lambda d: d["Resources"]["LoadBalancer"].pop("Metadata")),
        {"CKV_AWS_91"},
    ),
    "k8s-service-account-token": (k8s(token_mounted), {"CKV_K8S_38"}),
    "k8s-key-in-the-environment": (k8s(key_in_env), {"CKV_K8S_35"}),
    "k8s-image-by-tag": (k8s(image_by_tag), {"CKV_K8S_43"}),
    "k8s-without-network-policy": (k8s(without_network_policy), {"CKV2_K8S_6"}),
    "k8s-default-namespace": (k8s(in_the_default_namespace), {"CKV_K8S_21"}),
    # checkov counts a skip without a reason as a skip: unexplained() is what refuses it.
    "k8s-skip-without-reason": (k8s(skip_without_reason), set()),
    "docker-runs-as-root": (lambda _: dockerfile(drop_lines(r"^USER .*\n")), {"CKV_DOCKER_3"}),
    "docker-without-healthcheck": (
        lambda _: dockerfile(drop_lines(r"^HEALTHCHECK .*\n.*\n")),
        {"CKV_DOCKER_2"},
    ),
    "docker-skip-removed": (
        lambda _: dockerfile(drop_lines(r"^# checkov:skip=.*\n")),
        {"CKV_DOCKER_7"},
    ),
}


def by_mutant(pairs: set[tuple[str, str]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {name: set() for name in MUTANTS}
    for file, check in pairs:
        found[Path(file).parts[0]].add(check)
    return found


@pytest.mark.parametrize("name", MUTANTS)
def test_checkov_catches_a_broken_copy(name: str, run: tuple[list[Report], Path]) -> None:
    reports, folder = run
    assert by_mutant(findings(reports, folder))[name] == MUTANTS[name][1]


def test_a_skip_without_a_reason_is_refused(run: tuple[list[Report], Path]) -> None:
    reports, folder = run
    refused = by_mutant(unexplained(reports, folder))
    assert {name for name, checks in refused.items() if checks} == {"k8s-skip-without-reason"}
    assert refused["k8s-skip-without-reason"] == {"CKV_K8S_11"}
