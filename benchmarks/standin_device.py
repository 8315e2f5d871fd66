"""A stand-in for a NeuronCore, for ``make bench``: what the host spends when the device is not it.

    HOUSING_DEVICE_THREAD=true python -m benchmarks.standin_device

runs ``python -m app``'s single-process server on the cpu artifact with the loaded backend
wrapped (after warm-up, through ``ModelRuntime(wrap_backend=...)``, the seam that
``tests/fakes/faulty_device.py`` also uses) so that every device call does what an inf2 host
does around a NeuronCore: the artifact's preamble (derived features, on the host CPU, as
``features_on: host`` places it), then a wait of ``STANDIN_DEVICE_US`` microseconds (default
100) that holds no CPU and no GIL, as the Neuron runtime's wait does. Its answers are not the
model's: every row gets the same value and scale, so only the host's costs -- HTTP, validation,
batching, price ranges, flags, metrics, the preamble -- are real. Nothing here touches Inferentia.

    STANDIN_DEVICE=free HOUSING_DEVICE_THREAD=false python -m benchmarks.standin_device

serves with a free device instead: every device call answers at once, with no preamble and no
wait, on the event loop. What a request costs then is the floor of the request path, with every
safeguard and no device work at all; ``make bench`` reports it beside the stand-in.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import torch

from app.backends.base import Backend
from app.core.runtime import ModelRuntime
from app.process.server import run_server
from app.settings import load_settings
from modelspec import torchscript
from modelspec.manifest import ARTIFACT_FILE

ANSWER = 200_000.0  # dollars, for every row
# And the log of every row's scale in dollars: like the artifact, a stand-in answers (n, 2).
LOG_SCALE = math.log(40_000.0)


class StandinDevice:
    def __init__(self, inner: Backend, preamble: torch.jit.ScriptModule, wait_s: float) -> None:
        self.device = inner.device
        self.batch_sizes = inner.batch_sizes
        self.dynamic_batch = inner.dynamic_batch
        self.preamble = preamble
        self.wait_s = wait_s

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            self.preamble(torch.from_numpy(x))
        time.sleep(self.wait_s)  # the device's time: no CPU, no GIL
        return answers(x.shape[0])


class FreeDevice:
    def __init__(self, inner: Backend) -> None:
        self.device = inner.device
        self.batch_sizes = inner.batch_sizes
        self.dynamic_batch = inner.dynamic_batch

    def predict(self, x: np.ndarray) -> np.ndarray:
        return answers(x.shape[0])


def answers(rows: int) -> np.ndarray:
    return np.column_stack((np.full(rows, ANSWER), np.full(rows, LOG_SCALE)))


def main() -> int:
    settings = load_settings()
    if settings is None:
        return 2
    artifact = torchscript.load(settings.artifacts / ARTIFACT_FILE, map_location="cpu")
    if not hasattr(artifact, "preamble"):
        print("error: the artifact has no host preamble; re-run `python -m compile`")
        return 2
    kind = os.environ.get("STANDIN_DEVICE", "neuron")
    if kind not in ("neuron", "free"):
        print(f"error: STANDIN_DEVICE={kind!r}; use neuron (the default) or free")
        return 2
    wait_s = float(os.environ.get("STANDIN_DEVICE_US", "100")) / 1e6

    def wrap(inner: Backend) -> Backend:
        if kind == "free":
            return FreeDevice(inner)
        return StandinDevice(inner, artifact.preamble, wait_s)

    return run_server(settings, runtime=ModelRuntime(settings, wrap_backend=wrap))


if __name__ == "__main__":
    sys.exit(main())
