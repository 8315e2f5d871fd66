"""The model runtime: verifies the artifacts, loads the model on its device, answers batches.

All device work -- load, warm-up, every forward -- runs on one dedicated thread: the event loop
never blocks on the device, calls stay serial, and device runtimes that care about the thread
that loaded them (Neuron, XLA) always see the same one.

The runtime also watches the device: after ``HOUSING_MAX_CONSECUTIVE_FAILURES`` failed calls
in a row it turns readiness to 503 (status ``failing``) so the load balancer routes elsewhere,
and re-runs the manifest's reference rows every ``HOUSING_RECHECK_INTERVAL_S`` -- nobody else
may be sending traffic by then -- until one call succeeds and it is ready again.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from app.backends.base import Backend, warm_up
from app.backends.select import DeviceProbes, load_backend, resolve_device
from app.batching import Batcher
from app.errors import NotReadyError, StartupError
from app.flags import Flagger
from app.intervals import Intervals, log_scale_range, prices
from app.observe.metrics import Metrics
from app.settings import Settings
from modelspec.manifest import ARTIFACT_FILE, MANIFEST_FILE, ArtifactError, Manifest, sha256_file

logger = logging.getLogger("housing.runtime")


class Status(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILING = "failing"  # device calls keep failing: readiness 503, requests still taken
    STOPPING = "stopping"


# Test seam: wraps the loaded backend after warm-up, so tests can make device calls fail
# (``tests/fakes/faulty_device.py``). Production code never passes one.
BackendWrapper = Callable[[Backend], Backend]


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
    return manifest, device, backend


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


class ModelRuntime:
    def __init__(
        self,
        settings: Settings,
        probes: DeviceProbes | None = None,
        wrap_backend: BackendWrapper | None = None,
    ) -> None:
        self.settings = settings
        self.status = Status.STARTING
        self.device: str | None = None
        self.manifest: Manifest | None = None
        self._probes = probes
        self._wrap_backend = wrap_backend
        self.consecutive_failures = 0
        self._recheck: asyncio.Task[None] | None = None
        self._backend: Backend | None = None
        self._bedrooms_median = 0.0
        # Each row's log-scale is clamped to the calibration rows' (``app.intervals.prices``).
        self._log_scale_range = log_scale_range(None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")
        self.batcher: Batcher | None = None
        self.flagger = Flagger({})  # replaced by the manifest's ranges at load
        self.intervals = Intervals(None, 0)  # replaced by the manifest's table at load
        self.metrics = Metrics()

    @property
    def ready(self) -> bool:
        return self.status is Status.READY

    def _load(self) -> None:
        started = time.perf_counter()
        manifest, device, backend = load_model(self.settings, self._probes)
        if self._wrap_backend is not None:
            backend = self._wrap_backend(backend)
        self.manifest, self.device, self._backend = manifest, device, backend
        compiled = manifest.compiled
        assert compiled is not None
        self.metrics.model_info.labels(
            manifest.model_version, compiled.sha256, device, compiled.target, manifest.feature_hash
        ).set(1)
        self._bedrooms_median = manifest.preprocessing.total_bedrooms_median
        self.flagger = Flagger(manifest.preprocessing.input_ranges, self.metrics.observe_flag)
        self.intervals = serving_intervals(manifest, self.settings.interval_coverage)
        self._log_scale_range = log_scale_range(manifest.intervals)
        logger.info(
            "model %s ready on %s in %.2fs (batch sizes %s)",
            manifest.model_version,
            device,
            time.perf_counter() - started,
            list(backend.batch_sizes),
        )

    async def start(self) -> None:
        """Verify, load and warm up; raises StartupError (with a hint) on any failure."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
        # Again on this thread, which makes the device calls when they run inline (cpu):
        # OpenMP keeps its thread count per calling thread, and on 2 threads a 64-row call
        # waits ~38 ms at their barrier whenever the other core is busy (0.3 ms on 1 thread).
        torch.set_num_threads(self.settings.torch_threads)
        assert self._backend is not None
        largest = max(self._backend.batch_sizes)
        threaded = self.settings.device_thread
        if threaded is None:
            threaded = self.device != "cpu"
        logger.info("device calls run %s", "on the device thread" if threaded else "inline")
        self.batcher = Batcher(
            self._dollars,
            self._executor if threaded else None,
            max_batch_size=self.settings.max_batch_size or largest,
            max_delay_s=self.settings.max_delay_ms / 1000,
            queue_rows=self.settings.queue_rows,
            max_chunk=largest,
            observer=self,
            screen=self.flagger.screen,
        )
        self.batcher.start()
        # Everything loaded so far (torch, the model, the app) lives as long as the process.
        # Freezing it keeps the cyclic GC from rescanning ~200k objects in every full
        # collection: unfrozen, those pauses were the whole p99 under load (~100 ms).
        gc.collect()
        gc.freeze()
        self.status = Status.READY

    def begin_stopping(self) -> None:
        """Readiness turns 503 from here on; requests already accepted still finish."""
        self.status = Status.STOPPING

    async def close(self) -> None:
        self.begin_stopping()
        if self._recheck is not None:
            self._recheck.cancel()
            await asyncio.gather(self._recheck, return_exceptions=True)
        if self.batcher is not None:
            await self.batcher.stop()
            stats = self.batcher.stats
            logger.info(
                "served %d rows in %d device calls (%d failed, %d rows dropped unrun)",
                stats.rows,
                stats.device_calls,
                stats.failed_calls,
                stats.dropped_rows,
            )
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _dollars(self, encoded: np.ndarray) -> np.ndarray:
        """The batcher's device call: the model's answers, to the cent (one rounding a batch);
        with a scale head, ``(n, 2)``: the answers and each row's scale in dollars."""
        assert self._backend is not None
        return prices(self._backend.predict(encoded), self._log_scale_range)

    @property
    def bedrooms_median(self) -> float:
        return self._bedrooms_median

    def accepting_batcher(self) -> Batcher:
        """The batcher, while requests are taken: ready, or draining after SIGTERM (requests
        already on their way still get answers); NotReadyError (503) otherwise."""
        batcher = self.batcher
        if batcher is None or self.status is Status.STARTING:
            raise NotReadyError("the model is not ready")
        return batcher

    # The batcher reports every device call here (``app.batching.BatchObserver``).

    def observe_batch(
        self, rows: int, device_seconds: float, waits: list[float], queued_rows: int
    ) -> None:
        self.metrics.observe_batch(rows, device_seconds, waits, queued_rows)
        self.consecutive_failures = 0
        if self.status is Status.FAILING:
            self.status = Status.READY
            logger.warning("the device answers again: readiness is 200 again")

    def observe_dropped(self, rows: int) -> None:
        self.metrics.observe_dropped(rows)

    def observe_failure(self, exc: Exception) -> None:
        self.metrics.observe_failure(exc)
        self.consecutive_failures += 1
        limit = self.settings.max_consecutive_failures
        if limit and self.consecutive_failures >= limit and self.status is Status.READY:
            self.status = Status.FAILING
            logger.error(
                "%d device calls failed in a row (last: %s: %s); readiness is 503 until a "
                "call succeeds, retried every %.1fs",
                self.consecutive_failures,
                type(exc).__name__,
                exc,
                self.settings.recheck_interval_s,
            )
            self._recheck = asyncio.get_running_loop().create_task(
                self._recheck_device(), name="recheck-device"
            )

    async def _recheck_device(self) -> None:
        """Run the reference rows until a call succeeds (``observe_batch`` then sets READY).

        Without this, a server that the load balancer has stopped sending requests to would
        never see the success that makes it ready again.
        """
        assert self.manifest is not None and self.manifest.compiled is not None
        reference = np.asarray(self.manifest.compiled.reference_inputs, dtype=np.float32)
        while self.status is Status.FAILING and self.batcher is not None:
            # A timer, not a synchronisation: the retry period is the point.
            await asyncio.sleep(self.settings.recheck_interval_s)
            if self.status is not Status.FAILING:
                break
            try:
                await self.batcher.submit(reference, self.settings.request_timeout_s).result()
            except Exception:  # noqa: BLE001 - counted by observe_failure; try again later
                logger.debug("recheck: the device still fails", exc_info=True)
