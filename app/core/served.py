"""One loaded model and everything that serves it, verified before it serves a row.

``load_served`` checks the artifacts (the manifest's feature hash, the artifact's sha256),
loads the model on the device, warms up every batch size on the manifest's reference rows,
finds the batch size from which a row's answer no longer depends on its batch
(``app.backends.consistent``) and
builds what the request path needs from its manifest: the input ranges that raise warnings
(``app.core.flags``), the interval table (``app.core.intervals``) and the ``total_bedrooms``
median that
fills a missing value. A ``Served`` never changes; the runtime swaps a whole one for another
(``app.core.reload``), and every request keeps the one it started with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from app.backends.base import Backend, warm_up
from app.backends.consistent import consistent
from app.backends.select import DeviceProbes, load_backend, resolve_device
from app.core.flags import Flagger
from app.core.intervals import Intervals, log_scale_range, prices
from app.errors import StartupError
from app.settings import Settings
from modelspec.manifest import ARTIFACT_FILE, MANIFEST_FILE, ArtifactError, Manifest, sha256_file

logger = logging.getLogger("housing.runtime")

# Test seam: wraps the loaded backend after warm-up, so tests can make device calls fail
# (``tests/fakes/faulty_device.py``). Production code never passes one.
BackendWrapper = Callable[[Backend], Backend]


class Served:
    """A loaded, warmed model and its manifest's serving rules."""

    __slots__ = (
        "backend",
        "bedrooms_median",
        "device",
        "flagger",
        "intervals",
        "log_scales",
        "manifest",
        "version",
    )

    def __init__(
        self,
        manifest: Manifest,
        device: str,
        backend: Backend,
        flagger: Flagger,
        intervals: Intervals,
    ) -> None:
        self.manifest = manifest
        self.device = device
        self.backend = backend
        self.flagger = flagger
        self.intervals = intervals
        self.version = manifest.model_version
        self.bedrooms_median = manifest.preprocessing.total_bedrooms_median
        # Each row's log-scale is clamped to the calibration rows' (``app.core.intervals.prices``).
        self.log_scales = log_scale_range(manifest.intervals)

    def dollars(self, encoded: np.ndarray) -> np.ndarray:
        """A device call: the model's answers, to the cent (one rounding a batch); with a
        scale head, ``(n, 2)``: the answers and each row's scale in dollars."""
        return prices(self.backend.predict(encoded), self.log_scales)


def verify_artifacts(folder: Path) -> tuple[Manifest, Path]:
    """The manifest and the compiled artifact it vouches for, or an ArtifactError with a fix."""
    manifest = Manifest.load(folder)
    manifest.check_feature_hash(folder / MANIFEST_FILE)
    compiled = manifest.compiled
    if compiled is None:
        raise ArtifactError(
            f"{folder / MANIFEST_FILE} has no compiled artifact",
            f"run `python -m compile` (it writes {ARTIFACT_FILE} and records it in the manifest).",
        )
    artifact = folder / compiled.artifact
    if not artifact.is_file():
        raise ArtifactError(
            f"the manifest names {artifact}, which does not exist",
            "run `python -m compile` again, or copy the whole artifacts folder, not only "
            "manifest.json.",
        )
    digest = sha256_file(artifact)
    if digest != compiled.sha256:
        raise ArtifactError(
            f"{artifact} has sha256 {digest[:12]}..., the manifest expects "
            f"{compiled.sha256[:12]}... (the file is corrupted or from another compile)",
            "copy model_neuron.pt and manifest.json together from one compile, or re-run "
            "`python -m compile`.",
        )
    return manifest, artifact


def load_model(
    settings: Settings, probes: DeviceProbes | None = None
) -> tuple[Manifest, str, Backend]:
    """Verify the artifacts, load the model on its device and warm it up (on the calling
    thread, which then owns the device); StartupError with a hint on any failure. Shared by
    the server and ``python -m app.score``."""
    try:
        manifest, artifact = verify_artifacts(settings.artifacts)
    except ArtifactError as exc:
        raise StartupError(str(exc)) from None
    compiled = manifest.compiled
    assert compiled is not None
    if compiled.torch_version != torch.__version__:
        logger.warning(
            "artifact compiled with torch %s, serving with torch %s",
            compiled.torch_version,
            torch.__version__,
        )
    device = resolve_device(settings.device, probes)
    logger.info("device %s (HOUSING_DEVICE=%s)", device, settings.device)
    torch.set_num_threads(settings.torch_threads)
    backend = load_backend(device, artifact, manifest)
    warm_up(backend, compiled)
    # One record, one price, in any batch (app.backends.consistent).
    reference = np.asarray(compiled.reference_inputs, dtype=np.float32)
    return manifest, device, consistent(backend, reference)


def serving_intervals(manifest: Manifest, default: float) -> Intervals:
    """The manifest's interval table, if its artifact returns the scales it needs; StartupError
    for a default coverage the table does not hold. A model without a table serves points
    only, and the log says so once."""
    compiled = manifest.compiled
    assert compiled is not None
    table = manifest.intervals
    if table is not None and not compiled.reference_log_scales:
        raise StartupError(
            f"{MANIFEST_FILE} has an interval calibration but {compiled.artifact} returns no "
            "scales: it was compiled before prediction intervals. Hint: re-run "
            "`python -m compile`."
        )
    if table is None and default:
        logger.warning(
            "the model has no calibrated intervals (trained before them): answers carry no "
            "price range. Retrain with `python -m training` to serve them."
        )
    try:
        return Intervals(table, default)
    except ValueError as exc:
        raise StartupError(f"{exc}. Hint: set HOUSING_INTERVAL_COVERAGE to one of them.") from None


def load_served(
    settings: Settings,
    observe_flag: Callable[[str, str], None],
    probes: DeviceProbes | None = None,
    wrap_backend: BackendWrapper | None = None,
) -> Served:
    """``load_model`` and the manifest's serving rules (on the calling thread, which then
    owns the device); StartupError with a hint on any failure."""
    manifest, device, backend = load_model(settings, probes)
    if wrap_backend is not None:
        backend = wrap_backend(backend)
    flagger = Flagger(manifest.preprocessing.input_ranges, observe_flag)
    intervals = serving_intervals(manifest, settings.interval_coverage)
    return Served(manifest, device, backend, flagger, intervals)
