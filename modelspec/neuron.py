"""Importing torch-neuronx and finding Neuron devices: the one place that decides whether the
Neuron SDK is usable.

PyPI's ``torch-neuronx`` is a placeholder whose import raises a plain ``ImportError`` (not
``ModuleNotFoundError``), so that is what is caught. Nothing here runs at import time.
"""

from __future__ import annotations

import glob
import os
from types import ModuleType

INSTALL_HINT = (
    "use the AWS Neuron DLAMI or Deep Learning Container on inf2, or pip install torch-neuronx "
    "and neuronx-cc from AWS's Neuron package index (PyPI's packages of those names are "
    "placeholders)"
)
# Test seam: a folder of stand-in device files to look in instead of /dev, for the machines
# without Inferentia that run the tests (tests/fakes/neuron_site). Never set in production.
FAKE_DEV_DIR_ENV = "FAKE_NEURON_DEV_DIR"


class NeuronUnavailable(Exception):
    """torch-neuronx cannot be imported; the message says why and how to install it."""


def import_torch_neuronx() -> ModuleType:
    try:
        import torch_neuronx  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise NeuronUnavailable(f"torch-neuronx does not import ({exc})") from exc
    return torch_neuronx


def neuron_devices() -> list[str]:
    """The Neuron device files of this machine (one per Inferentia chip)."""
    folder = os.environ.get(FAKE_DEV_DIR_ENV, "/dev")
    return sorted(glob.glob(os.path.join(folder, "neuron[0-9]*")))
