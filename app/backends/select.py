"""Choosing the device and building its backend: explicit, logged, never a silent fallback."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.backends.base import Backend
from app.errors import StartupError
from app.settings import Device
from modelspec.manifest import Manifest
from modelspec.neuron import NeuronUnavailable, import_torch_neuronx, neuron_devices

logger = logging.getLogger("housing.backends")


def _neuron_usable() -> bool:
    try:
        import_torch_neuronx()
    except NeuronUnavailable:
        return False
    return bool(neuron_devices())


def _xla_installed() -> bool:
    # find_spec, not import: importing torch_xla initialises its runtime, which `auto` must not
    # do just to decide. An installed but broken torch-xla then fails loudly at load.
    return importlib.util.find_spec("torch_xla") is not None


@dataclass(frozen=True)
class DeviceProbes:
    """How ``auto`` looks for devices. Tests pass fakes: a seam for hardware we do not have."""

    neuron: Callable[[], bool] = _neuron_usable
    xla: Callable[[], bool] = _xla_installed


def resolve_device(requested: Device, probes: DeviceProbes | None = None) -> str:
    if requested != "auto":
        return requested
    probes = probes or DeviceProbes()
    if probes.neuron():
        return "neuron"
    if probes.xla():
        return "xla"
    return "cpu"


# Which devices can run an artifact compiled for each target.
RUNS_ON = {"cpu": ("cpu", "xla"), "neuron": ("neuron",)}


def load_backend(device: str, artifact: Path, manifest: Manifest) -> Backend:
    compiled = manifest.compiled
    assert compiled is not None
    if device not in RUNS_ON[compiled.target]:
        raise StartupError(
            f"{artifact} was compiled for {compiled.target}, which cannot run on {device}. "
            f"Hint: recompile with `python -m compile --target "
            f"{'neuron' if device == 'neuron' else 'cpu'}`, or set HOUSING_DEVICE to one of "
            f"{', '.join(RUNS_ON[compiled.target])}."
        )
    if device == "neuron":
        from app.backends.neuron import NeuronBackend

        if not neuron_devices():
            raise StartupError(
                "HOUSING_DEVICE=neuron but this machine has no /dev/neuron* device. Hint: run "
                "on an inf2 instance with the Neuron driver, and pass the device into the "
                "container (--device=/dev/neuron0)."
            )
        return NeuronBackend(artifact, compiled)
    if device == "xla":
        from app.backends.xla import XlaBackend

        return XlaBackend(artifact, compiled)
    from app.backends.cpu import CpuBackend

    return CpuBackend(artifact, compiled)
