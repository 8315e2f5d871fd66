"""What every device backend provides, and the warm-up every one of them must pass."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

from app.errors import StartupError
from modelspec.manifest import CompiledInfo


class Backend(Protocol):
    """A loaded model on one device. ``predict`` runs on the runtime's single device thread."""

    device: str
    batch_sizes: tuple[int, ...]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Encoded float32 ``(n, N_ENCODED)`` -> float64 ``(n,)`` dollars."""
        ...


def warm_up(backend: Backend, compiled: CompiledInfo) -> None:
    """Run every batch bucket once, then check the device's answers against compile's.

    On XLA each new shape compiles on first use, so running every bucket here is what keeps
    the first requests from paying compilation. The reference check turns a device that loads
    but computes wrong (bad driver, wrong weights) into a startup error instead of bad prices.
    """
    width = len(compiled.reference_inputs[0])
    for size in backend.batch_sizes:
        out = backend.predict(np.zeros((size, width), dtype=np.float32))
        if out.shape != (size,):
            raise StartupError(f"warm-up at batch {size} returned shape {out.shape}")
    reference = np.asarray(compiled.reference_inputs, dtype=np.float32)
    got = backend.predict(reference)
    want = np.asarray(compiled.reference_outputs)
    worst = float(np.max(np.abs(got - want)))
    if not math.isfinite(worst) or worst > compiled.tolerance:
        raise StartupError(
            f"the model on {backend.device} answers the manifest's reference rows off by "
            f"${worst:.4f} (tolerance ${compiled.tolerance}). Hint: the device or its runtime "
            "computes differently from the compile host; recompile on this machine type, or "
            "try HOUSING_DEVICE=cpu to confirm the artifact itself is sound."
        )


def to_numpy(out: torch.Tensor) -> np.ndarray:
    return out.detach().to("cpu", torch.float64).numpy()
