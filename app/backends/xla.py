"""The XLA backend: the artifact's preamble on the host, its body on a torch-xla device.

The same placement as on a NeuronCore (``modelspec/placement.py``): the preamble (derived
features, normalisation) runs as the artifact's CPU TorchScript, and the body (Linear, ReLU)
on the XLA device. ``torch.jit.load(...).to(xla)`` does not work for TorchScript, so the
verified artifact's body weights are loaded into the eager ``Body`` and that module is moved to
the device. Every batch is padded to a compiled bucket so that, after warm-up, no request
triggers an XLA compilation.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.backends.base import to_numpy
from app.errors import StartupError
from modelspec import torchscript
from modelspec.buckets import run_bucketed
from modelspec.manifest import CompiledInfo
from modelspec.placement import Body

logger = logging.getLogger("housing.backends.xla")


def import_torch_xla() -> Any:
    try:
        import torch_xla
    except ImportError as exc:
        raise StartupError(
            f"HOUSING_DEVICE=xla but torch-xla does not import ({exc}). Hint: run from the "
            "XLA virtualenv (`make .venv-xla`: torch 2.9 + torch-xla 2.9), or set "
            "HOUSING_DEVICE=cpu."
        ) from exc
    return torch_xla


class XlaBackend:
    device = "xla"

    def __init__(self, artifact: Path, compiled: CompiledInfo) -> None:
        if "PJRT_DEVICE" not in os.environ:
            # torch-xla would probe for TPUs and GPUs first; say what we use instead of guessing.
            os.environ["PJRT_DEVICE"] = "CPU"
            logger.info("PJRT_DEVICE is not set; using the XLA CPU client (PJRT_DEVICE=CPU)")
        torch_xla = import_torch_xla()
        self.batch_sizes = tuple(compiled.batch_sizes)
        self.dynamic_batch = False  # every call padded to a bucket: one XLA graph each
        self._xla = torch_xla.device()
        scripted = torchscript.load(artifact, map_location="cpu")
        if compiled.features_on != "host" or not hasattr(scripted, "body"):
            raise StartupError(
                f"{artifact} is not a host-preamble artifact (features on the "
                f"{compiled.features_on}): it was compiled before the split or for another "
                "target. Hint: re-run `python -m compile --target cpu`."
            )
        self._preamble = scripted.preamble
        body = Body.from_state(dict(scripted.body.state_dict()))
        self._body = body.to(self._xla)
        logger.info("model on %s (PJRT_DEVICE=%s)", self._xla, os.environ["PJRT_DEVICE"])

    def _run(self, chunk: torch.Tensor) -> torch.Tensor:
        return self._body(self._preamble(chunk).to(self._xla)).cpu()

    def predict(self, x: np.ndarray) -> np.ndarray:
        # no_grad, not inference_mode: inference tensors are not supported on XLA.
        with torch.no_grad():
            return to_numpy(run_bucketed(self._run, torch.from_numpy(x), self.batch_sizes))
