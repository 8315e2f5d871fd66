"""The model runtime: loads the model on its device, answers batches, swaps models.

All device work -- load, warm-up, every forward -- runs on one dedicated thread: the event loop
never blocks on the device, calls stay serial, and device runtimes that care about the thread
that loaded them (Neuron, XLA) always see the same one.

The model in service is a ``Served`` (``app.core.served``): ``model``. ``reload`` loads and checks
a new one from the artifacts folder while the current one keeps serving, then swaps it in
between two device calls; requests already queued finish on the model they were queued for
(``app.core.batching``), and any failure leaves the current model in service.

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
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from app.backends.select import DeviceProbes
from app.core.batching import Batcher, Ticket
from app.core.intervals import Intervals
from app.core.served import BackendWrapper, Served, load_served
from app.errors import NotReadyError, StartupError
from app.observe.capture import Capture, worker_name
from app.observe.metrics import Metrics
from app.observe.tracing import Tracing
from app.settings import Settings
from modelspec.manifest import Manifest

logger = logging.getLogger("housing.runtime")


class Status(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILING = "failing"  # device calls keep failing: readiness 503, requests still taken
    STOPPING = "stopping"


# An absolute path left in a message after the artifacts folder's is named.
_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)")


def without_paths(message: str, folder: Path) -> str:
    """``message`` fit for a client: paths in the artifacts folder named from
    ``$HOUSING_ARTIFACTS/``, any other absolute path cut to its last part (the full message is
    in the log). The resolved folder goes first: the folder as given may be part of it."""
    for shown in dict.fromkeys((str(folder.resolve()), str(folder))):
        # Where a path starts, not inside another one ("a/" of "data/").
        start = re.compile(rf"(?<![\w./-]){re.escape(shown)}/")
        message = start.sub("$HOUSING_ARTIFACTS/", message)
    return _PATH.sub(r".../\1", message)


class ReloadRefused(Exception):
    """A reload that left the current model in service; the message says why, ``status`` is
    the HTTP status of the answer to the trigger."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ReloadBusy(ReloadRefused):
    """Another reload is running (409)."""

    def __init__(self) -> None:
        super().__init__("another reload is running; try again when it is done", 409)


class ModelRuntime:
    def __init__(
        self,
        settings: Settings,
        probes: DeviceProbes | None = None,
        wrap_backend: BackendWrapper | None = None,
    ) -> None:
        self.settings = settings
        self._status = Status.STARTING
        self._status_changed = asyncio.Event()
        # Readiness waits for open_doors() once hold_readiness() is called (the server's HTTP
        # socket is bound after the model loads: gRPC must not say SERVING before it accepts).
        self._doors_open = True
        self._warm = False
        self.model: Served | None = None
        self._probes = probes
        self._wrap_backend = wrap_backend
        self.consecutive_failures = 0
        self._recheck: asyncio.Task[None] | None = None
        self._reloading = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")
        self.batcher: Batcher[Served] | None = None
        self.metrics = Metrics()
        self.capture: Capture | None = None  # data capture, when configured
        self.tracing: Tracing | None = None  # OpenTelemetry, when the OTEL_* variables say so

    @property
    def status(self) -> Status:
        return self._status

    @status.setter
    def status(self, value: Status) -> None:
        if value is not self._status:
            self._status = value
            changed, self._status_changed = self._status_changed, asyncio.Event()
            changed.set()

    async def status_change(self) -> None:
        """Return at the next change of ``status`` (gRPC health's ``Watch``)."""
        await self._status_changed.wait()

    @property
    def ready(self) -> bool:
        return self._status is Status.READY

    # The model in service's parts, for the routes that describe it (None before it loads).

    @property
    def manifest(self) -> Manifest | None:
        return None if self.model is None else self.model.manifest

    @property
    def device(self) -> str | None:
        return None if self.model is None else self.model.device

    @property
    def intervals(self) -> Intervals:
        return Intervals(None, 0) if self.model is None else self.model.intervals

    def _load(self) -> Served:
        started = time.perf_counter()
        served = load_served(
            self.settings, self.metrics.observe_flag, self._probes, self._wrap_backend
        )
        logger.info(
            "model %s ready on %s in %.2fs (batch sizes %s)",
            served.version,
            served.device,
            time.perf_counter() - started,
            list(served.backend.batch_sizes),
        )
        return served

    def _show(self, served: Served, previous: Served | None) -> None:
        """``housing_model_info`` is 1 for ``served`` and 0 for ``previous`` (0, not removed:
        with several workers, each writes its own value and the maximum is shown)."""
        for model, value in ((previous, 0), (served, 1)):
            if model is not None:
                compiled = model.manifest.compiled
                assert compiled is not None
                labels = (model.version, compiled.sha256, model.device, compiled.target)
                self.metrics.model_info.labels(*labels, model.manifest.feature_hash).set(value)

    async def reload(self) -> tuple[Served, Served]:
        """Load the artifacts folder's model on the device thread while the current one keeps
        serving, check it as at startup, and swap it in: ``(previous, current)``. Requests
        already queued finish on the model they were queued for. ReloadRefused, with the
        reason, when another reload is running or the new model fails a check; the current
        model serves on either way."""
        previous = self.model
        if previous is None or self.batcher is None:
            logger.error("reload refused: the server has not finished starting")
            raise ReloadRefused("the server has not finished starting", 503)
        if self._reloading.locked():
            self.metrics.reloads.labels("busy").inc()
            logger.error("reload refused; model %s serves on: another is running", previous.version)
            raise ReloadBusy()
        async with self._reloading:
            started = time.perf_counter()
            try:
                loop = asyncio.get_running_loop()
                served = await loop.run_in_executor(self._executor, self._load)
                _check_fits(served, previous)
            except (StartupError, ReloadRefused) as exc:
                self.metrics.reloads.labels("refused").inc()
                logger.error("reload refused; model %s serves on: %s", previous.version, exc)
                raise ReloadRefused(without_paths(str(exc), self.settings.artifacts)) from None
            if served.version == previous.version:
                self.metrics.reloads.labels("unchanged").inc()
                logger.info("reload: model %s is already serving", served.version)
                return previous, previous
            self.model = served  # between two device calls: the loop runs one thing at a time
            self._show(served, previous)
            self.metrics.reloads.labels("ok").inc()
            logger.info(
                "model %s replaces %s (%.2fs to load and check)",
                served.version,
                previous.version,
                time.perf_counter() - started,
            )
            return previous, served

    async def start(self) -> None:
        """Verify, load and warm up; raises StartupError (with a hint) on any failure."""
        self.tracing = Tracing.from_environment()
        served = await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
        self.model = served
        self._show(served, None)
        # Again on this thread, which makes the device calls when they run inline (cpu):
        # OpenMP keeps its thread count per calling thread, and on 2 threads a 64-row call
        # waits at their barrier whenever the other core is busy (docs/performance.md).
        torch.set_num_threads(self.settings.torch_threads)
        largest = max(served.backend.batch_sizes)
        threaded = self.settings.device_thread
        if threaded is None:
            threaded = served.device != "cpu"
        logger.info("device calls run %s", "on the device thread" if threaded else "inline")
        self.batcher = Batcher(
            _dollars,
            self._executor if threaded else None,
            max_batch_size=self.settings.max_batch_size or largest,
            max_delay_s=self.settings.max_delay_ms / 1000,
            queue_rows=self.settings.queue_rows,
            max_chunk=largest,
            observer=self,
            screen=_screen,
            tracer=None if self.tracing is None else self._trace_device_call,
        )
        self.batcher.start()
        folder, percent = self.settings.capture_dir, self.settings.capture_percent
        if folder is not None and percent > 0:
            metrics = self.metrics
            self.capture = Capture(
                folder,
                percent,
                worker_name(self.settings.worker_index),
                metrics.captured.inc,
                metrics.capture_dropped.inc,
                queue_bytes=self.settings.capture_queue_bytes,
            )
        # Everything loaded so far (torch, the model, the app) lives as long as the process.
        # Freezing it keeps the cyclic GC from rescanning all of it in every full collection:
        # unfrozen, those pauses made the p99 under load.
        gc.collect()
        gc.freeze()
        if self.tracing is not None:
            self.tracing.start()
        self._warm = True
        if self._doors_open:
            self.status = Status.READY

    def hold_readiness(self) -> None:
        """Stay STARTING after the model is warm, until ``open_doors()``."""
        self._doors_open = False

    def open_doors(self) -> None:
        """Every door accepts now: ready, if the model is warm and nothing else happened."""
        self._doors_open = True
        if self._warm and self.status is Status.STARTING:
            self.status = Status.READY

    def _trace_device_call(
        self,
        tickets: list[Ticket],
        rows: int,
        started_ns: int,
        ended_ns: int,
        model: Served | None,
        error: BaseException | None,
    ) -> None:
        """The batcher's tracer: one span per device call (``app.observe.tracing``)."""
        assert model is not None and self.tracing is not None
        sizes = model.backend.batch_sizes
        padded = min((s for s in sizes if s >= rows), default=rows)
        self.tracing.device_call(
            tickets, rows, padded, started_ns, ended_ns, model.device, model.version, error
        )

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
        if self.capture is not None:
            self.capture.close()
        if self.tracing is not None:
            self.tracing.close()

    def serving(self) -> Served:
        """The model in service, while requests are taken: ready, or draining after SIGTERM
        (requests already on their way still get answers); NotReadyError (503) otherwise."""
        model = self.model
        if model is None or self.batcher is None or self.status is Status.STARTING:
            raise NotReadyError("the model is not ready")
        return model

    def accepting_batcher(self) -> Batcher[Served]:
        """The batcher, while requests are taken: ready, or draining after SIGTERM (requests
        already on their way still get answers); NotReadyError (503) otherwise."""
        batcher = self.batcher
        if batcher is None or self.status is Status.STARTING:
            raise NotReadyError("the model is not ready")
        return batcher

    # The batcher reports every device call here (``app.core.batching.BatchObserver``).

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
        while self.status is Status.FAILING and self.batcher is not None:
            # A timer, not a synchronisation: the retry period is the point.
            await asyncio.sleep(self.settings.recheck_interval_s)
            model = self.model
            if self.status is not Status.FAILING or model is None:
                break
            compiled = model.manifest.compiled
            assert compiled is not None
            reference = np.asarray(compiled.reference_inputs, dtype=np.float32)
            try:
                timeout = self.settings.request_timeout_s
                await self.batcher.submit(reference, timeout, model).result()
            except Exception:  # noqa: BLE001 - counted by observe_failure; try again later
                logger.debug("recheck: the device still fails", exc_info=True)


def _dollars(encoded: np.ndarray, model: Served | None) -> np.ndarray:
    """The batcher's device call: a batch's rows on the model they were queued for."""
    assert model is not None
    return model.dollars(encoded)


def _screen(encoded: np.ndarray, dollars: np.ndarray, model: Served | None) -> list[int]:
    assert model is not None
    return model.flagger.screen(encoded, dollars)


def _check_fits(served: Served, previous: Served) -> None:
    """ReloadRefused for a model this running server cannot swap in: one on another device
    (the batcher's thread and settings were chosen for the running one's)."""
    if served.device != previous.device:
        raise ReloadRefused(
            f"the new model loaded on {served.device}, the running one on {previous.device}; "
            "restart the server to change devices"
        )
