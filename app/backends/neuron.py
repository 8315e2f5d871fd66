"""The Neuron backend: the artifact traced by ``torch_neuronx.trace``, on a NeuronCore.

Not run on Inferentia hardware in this repository's CI (there is none): it follows the AWS
documentation -- ``import torch_neuronx`` registers the Neuron ops, ``torch.jit.load`` places
the compiled graphs on the NeuronCore(s) this process may see, inputs and outputs are CPU
tensors, and shapes are static, so every batch is padded to a traced size. The artifact's
forward runs its CPU preamble (derived features) and then the NeuronCore graph, here on the
device thread; ``preamble`` and ``body`` are its two parts, for timing them apart. Tests drive
it through ``neuronx=``, a named fake of the torch_neuronx module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.backends.base import to_numpy
from app.errors import StartupError
from modelspec import torchscript
from modelspec.buckets import run_bucketed
from modelspec.manifest import CompiledInfo
from modelspec.neuron import INSTALL_HINT, NeuronUnavailable, import_torch_neuronx


class NeuronBackend:
    device = "neuron"

    def __init__(self, artifact: Path, compiled: CompiledInfo, neuronx: Any = None) -> None:
        if neuronx is None:
            try:
                neuronx = import_torch_neuronx()
            except NeuronUnavailable as exc:
                raise StartupError(
                    f"HOUSING_DEVICE=neuron but {exc}. Hint: {INSTALL_HINT}."
                ) from exc
        self.runtime_module = neuronx
        self.batch_sizes = tuple(compiled.batch_sizes)
        self.dynamic_batch = False  # a compiled Neuron graph per bucket
        self._module = torchscript.load(artifact)
        # Absent in artifacts compiled before the split (one graph; they still serve).
        self.preamble = getattr(self._module, "preamble", None)
        self.body = getattr(self._module, "body", None)

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return to_numpy(run_bucketed(self._module, torch.from_numpy(x), self.batch_sizes))
