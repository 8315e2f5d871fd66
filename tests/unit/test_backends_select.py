"""Device choice: ``auto`` follows the probes in order; explicit choices never fall back."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from app.backends.select import DeviceProbes, load_backend, resolve_device
from app.core.served import verify_artifacts
from app.errors import StartupError


def _probes(neuron: bool, xla: bool) -> DeviceProbes:
    return DeviceProbes(neuron=lambda: neuron, xla=lambda: xla)


@pytest.mark.parametrize(
    ("neuron", "xla", "expected"),
    [(True, True, "neuron"), (False, True, "xla"), (False, False, "cpu")],
)
def test_auto_prefers_neuron_then_xla_then_cpu(neuron: bool, xla: bool, expected: str) -> None:
    assert resolve_device("auto", _probes(neuron, xla)) == expected


@pytest.mark.parametrize("device", ["neuron", "xla", "cpu"])
def test_an_explicit_device_is_taken_as_asked(device: str) -> None:
    assert resolve_device(device, _probes(False, False)) == device  # type: ignore[arg-type]


def test_a_cpu_artifact_cannot_be_served_on_neuron(artifacts: Path) -> None:
    manifest, artifact = verify_artifacts(artifacts)
    with pytest.raises(
        StartupError, match="compiled for cpu.*Hint: recompile with .*--target neuron"
    ):
        load_backend("neuron", artifact, manifest)


def test_neuron_without_the_sdk_is_an_error_not_a_fallback(artifacts: Path) -> None:
    manifest, artifact = verify_artifacts(artifacts)
    assert manifest.compiled is not None
    neuron_manifest = manifest.model_copy(
        update={"compiled": manifest.compiled.model_copy(update={"target": "neuron"})}
    )
    with pytest.raises(StartupError, match="no /dev/neuron. device|torch-neuronx"):
        load_backend("neuron", artifact, neuron_manifest)


@pytest.mark.skipif(
    importlib.util.find_spec("torch_xla") is not None, reason="torch-xla is installed here"
)
def test_xla_without_torch_xla_is_an_error_not_a_fallback(artifacts: Path) -> None:
    manifest, artifact = verify_artifacts(artifacts)
    with pytest.raises(StartupError, match="torch-xla does not import.*Hint: .*\\.venv-xla"):
        load_backend("xla", artifact, manifest)
