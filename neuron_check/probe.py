"""What this machine offers for Neuron: device files, NeuronCores, SDK versions, instance type.

Nothing here claims a NeuronCore: importing torch_neuronx and running ``neuron-ls`` do not;
only loading a compiled model does (which the check does in child processes that exit).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from app.process.workers import CORES_PER_DEVICE
from modelspec.neuron import NeuronUnavailable, import_torch_neuronx, neuron_devices

# On Nitro instances the DMI product name is the instance type (e.g. inf2.xlarge).
_DMI_PRODUCT = Path("/sys/devices/virtual/dmi/id/product_name")


@dataclass
class Probe:
    instance_type: str
    devices: list[str]
    neuroncores: int
    neuron_ls: str  # how the core count was found
    python: str
    torch: str
    torch_neuronx: str | None
    neuronx_cc: str | None
    # Set when torch_neuronx is a test seam (tests/fakes/neuron_site): figures are not Neuron's.
    fake: str | None = None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _neuron_ls_cores() -> tuple[int, str] | None:
    """NeuronCores counted by ``neuron-ls --json-output`` (a list of devices, each with
    ``nc_count``), or None when the tool is absent or says nothing usable."""
    tool = shutil.which("neuron-ls")
    if tool is None:
        return None
    try:
        out = subprocess.run(
            [tool, "--json-output"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        devices = json.loads(out)
        return sum(int(d["nc_count"]) for d in devices), f"{tool} --json-output"
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None


def probe() -> Probe:
    devices = neuron_devices()
    counted = _neuron_ls_cores()
    if counted is not None:
        cores, source = counted
    else:
        cores, source = len(devices) * CORES_PER_DEVICE, "2 per /dev/neuron* device"
    try:
        instance = _DMI_PRODUCT.read_text().strip() or "unknown"
    except OSError:
        instance = "unknown"
    result = Probe(
        instance_type=instance,
        devices=devices,
        neuroncores=cores,
        neuron_ls=source,
        python=platform.python_version(),
        torch=torch.__version__,
        torch_neuronx=None,
        neuronx_cc=_version("neuronx-cc"),
    )
    try:
        module = import_torch_neuronx()
    except NeuronUnavailable as exc:
        result.problems.append(
            f"{exc}. Hint: run on the Neuron DLAMI's PyTorch virtualenv or in the Neuron "
            "DLC, where torch-neuronx is installed (NEURON_PYTHON=... make neuron-check)."
        )
    else:
        result.torch_neuronx = getattr(module, "__version__", None) or _version("torch-neuronx")
        result.fake = getattr(module, "TEST_SEAM", None)
    if not devices:
        result.problems.append(
            "no /dev/neuron* device. Hint: run on an inf2 instance with the Neuron driver "
            "(aws-neuronx-dkms); in a container, pass the device (--device=/dev/neuron0)."
        )
    elif cores < 1:
        result.problems.append("neuron-ls reports no NeuronCore on the Neuron device(s).")
    return result
