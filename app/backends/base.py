"""What every device backend provides, and the warm-up every one of them must pass."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

from app.errors import StartupError
from modelspec.intervals import LOG_SCALE_TOLERANCE
from modelspec.manifest import CompiledInfo


class Backend(Protocol):
    """A loaded model on one device. ``predict`` runs on the runtime's single device thread."""

    device: str
    batch_sizes: tuple[int, ...]
    # True when a call may have any number of rows (up to the largest size) and runs at that
    # size; False when every call is padded to one of ``batch_sizes`` (a compiled graph each).
    dynamic_batch: bool

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Encoded float32 ``(n, N_ENCODED)`` -> float64 ``(n,)`` dollars, or ``(n, 2)``:
        dollars and the log of each row's scale in dollars, when the artifact has a scale head
        (``modelspec.intervals``)."""
        ...


def warm_up(backend: Backend, compiled: CompiledInfo) -> None:
    """Run every batch bucket once, then check the device's answers against compile's.

    On XLA each new shape compiles on first use, so running every bucket here is what keeps
    the first requests from paying compilation. The reference check turns a device that loads
    but computes wrong (bad driver, wrong weights) into a startup error instead of bad prices;
    with a scale head, the log-scales are checked too.
    """
    width = len(compiled.reference_inputs[0])
    scaled = bool(compiled.reference_log_scales)
    for size in backend.batch_sizes:
        out = backend.predict(np.zeros((size, width), dtype=np.float32))
        if out.shape != ((size, 2) if scaled else (size,)):
            raise StartupError(
                f"warm-up at batch {size} returned shape {out.shape}. Hint: the artifact and "
                "its manifest disagree on the scale head; copy model_neuron.pt and "
                "manifest.json together from one compile, or re-run `python -m compile`."
            )
    reference = np.asarray(compiled.reference_inputs, dtype=np.float32)
    got = backend.predict(reference)
    if scaled:
        log_worst = float(np.max(np.abs(got[:, 1] - np.asarray(compiled.reference_log_scales))))
        if not math.isfinite(log_worst) or log_worst > LOG_SCALE_TOLERANCE:
            raise StartupError(
                f"the model on {backend.device} answers the manifest's reference rows with "
                f"interval scales off by {log_worst:.2e} in log (tolerance "
                f"{LOG_SCALE_TOLERANCE:g}). Hint: recompile on this machine type, or try "
                "HOUSING_DEVICE=cpu to confirm the artifact itself is sound."
            )
        got = got[:, 0]
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
