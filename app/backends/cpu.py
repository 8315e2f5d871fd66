"""The CPU backend: the TorchScript artifact, run by libtorch on this process's threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from app.backends.base import to_numpy
from modelspec import torchscript
from modelspec.buckets import run_bucketed
from modelspec.manifest import CompiledInfo


class CpuBackend:
    device = "cpu"

    def __init__(self, artifact: Path, compiled: CompiledInfo) -> None:
        self.batch_sizes = tuple(compiled.batch_sizes)
        self.dynamic_batch = compiled.dynamic_batch
        self._module = torchscript.load(artifact, map_location="cpu").eval()

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            batch = torch.from_numpy(x)
            if self.dynamic_batch:
                return to_numpy(self._module.forward(batch))
            return to_numpy(run_bucketed(self._module.forward, batch, self.batch_sizes))
