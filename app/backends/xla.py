"""The XLA backend: the artifact's weights in the eager network, on a torch-xla device.

``torch.jit.load(...).to(xla)`` does not work for TorchScript, so the verified artifact's
state (weights and normalisation buffers) is loaded into ``HousingNet`` and that module is
moved to the device. Every batch is padded to a compiled bucket so that, after warm-up, no
request triggers an XLA compilation.
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
from modelspec.network import HousingNet, NetConfig

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

    def __init__(self, artifact: Path, compiled: CompiledInfo, network: dict[str, Any]) -> None:
        if "PJRT_DEVICE" not in os.environ:
            # torch-xla would probe for TPUs and GPUs first; say what we use instead of guessing.
            os.environ["PJRT_DEVICE"] = "CPU"
            logger.info("PJRT_DEVICE is not set; using the XLA CPU client (PJRT_DEVICE=CPU)")
        torch_xla = import_torch_xla()
        self.batch_sizes = tuple(compiled.batch_sizes)
        self._xla = torch_xla.device()
        scripted = torchscript.load(artifact, map_location="cpu")
        model = HousingNet(NetConfig.from_dict(network))
        # The traced module also holds the spec-derived (non-persistent) buffers; take only
        # the trained state the eager network declares.
        state = scripted.state_dict()
        missing = [k for k in model.state_dict() if k not in state]
        if missing:
            raise StartupError(
                f"{artifact} lacks {missing}: it was not compiled from this network. "
                "Hint: re-run `python -m training` and `python -m compile --target cpu`."
            )
        model.load_state_dict({k: state[k] for k in model.state_dict()})
        self._model = model.eval().to(self._xla)
        logger.info("model on %s (PJRT_DEVICE=%s)", self._xla, os.environ["PJRT_DEVICE"])

    def _run(self, chunk: torch.Tensor) -> torch.Tensor:
        return self._model(chunk.to(self._xla)).cpu()

    def predict(self, x: np.ndarray) -> np.ndarray:
        # no_grad, not inference_mode: inference tensors are not supported on XLA.
        with torch.no_grad():
            return to_numpy(run_bucketed(self._run, torch.from_numpy(x), self.batch_sizes))
