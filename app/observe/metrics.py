"""Prometheus metrics: requests, queue time and device time apart, batch sizes, refusals.

Each app has its own registry (tests build many apps in one process). With several worker
processes (``HOUSING_WORKERS`` > 1) the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before
any worker starts, prometheus-client then keeps values in files there, and ``/metrics`` on any
worker answers for all of them. Names follow Triton's split: queue time
(``nv_inference_queue_duration_us``) is not compute time.

Per-request observations are applied in bulk: ``observe_request`` only notes the answer, and
the answers noted during one event-loop pass are counted together at the end of that pass (at
c64 a pass answers a whole batch), as are a batch's queue waits. One update per histogram
bucket instead of one per observation took about 7% of the server's CPU per request off at
c64. Nothing is late by more than that one pass, and ``render`` counts what is noted first;
outside an event loop an answer is counted at once. Every caller runs on the event loop's
thread (the batcher reports after its device call returns), so nothing here takes a lock.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: from tens of microseconds (a CPU batch-1 call) to the 10 s request deadline.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# Routes whose own traffic would drown the signal (probes every few seconds, scrapes).
UNMEASURED_PATHS = frozenset(
    {"/health/live", "/health/ready", "/ping", "/metrics", "/v2/health/live", "/v2/health/ready"}
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value, with one update per bucket touched.

    prometheus-client has no bulk observe, so this writes what ``Histogram.observe`` writes --
    its ``_sum`` and ``_buckets`` values, by ``_upper_bounds`` -- through the same value
    objects (the files of multiprocess mode included). The version is pinned in
    pyproject.toml, and tests/unit/test_observe_metrics.py checks the exposition against
    ``observe``.
    """
    if not values:
        return
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for v in values:
        counts[bisect_left(bounds, v)] += 1  # the first bound >= v, as observe's ``<=``
    histogram._sum.inc(sum(values))
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


class Metrics:
    """The service's metrics, in one registry; ``render()`` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "housing_requests",
            "HTTP requests answered, by route and status (probes and /metrics excluded)",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "housing_request_duration_seconds",
            "Time from the request's arrival to its answer, by route and status",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "housing_queue_duration_seconds",
            "Time rows waited in the batch queue before their device call",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.device_time = Histogram(
            "housing_device_duration_seconds",
            "Time of one device call (a whole batch)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "housing_batch_rows",
            "Rows in one device call, before padding to a compiled batch size",
            buckets=ROW_BUCKETS,
            registry=r,
        )
        self.queued_rows = Gauge(
            "housing_queue_rows",
            "Rows waiting for the device, sampled as each batch is taken",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "housing_rejected_requests",
            "Requests refused before any device work, by reason",
            ["reason"],
            registry=r,
        )
        self.dropped_rows = Counter(
            "housing_dropped_rows",
            "Queued rows dropped unrun: their deadline passed or their client went away",
            registry=r,
        )
        self.failed_calls = Counter(
            "housing_failed_device_calls", "Device calls that raised", registry=r
        )
        self.input_warnings = Counter(
            "housing_input_warnings",
            "Warnings on served rows (app/core/flags.py), by field and code: drift shows here",
            ["field", "code"],
            registry=r,
        )
        self.model_info = Gauge(
            "housing_model_info",
            "The model being served (always 1; the labels carry the facts)",
            ["version", "sha256", "device", "target", "feature_hash"],
            registry=r,
            multiprocess_mode="max",
        )
        self.reloads = Counter(
            "housing_model_reloads",
            "Model reloads (app/core/reload.py) by result: ok, unchanged (the same artifact), "
            "refused (its checks failed: the current model serves on), busy (another reload "
            "was running)",
            ["result"],
            registry=r,
        )
        self.captured = Counter(
            "housing_captured",
            "Predictions written by data capture (HOUSING_CAPTURE_DIR)",
            registry=r,
        )
        self.capture_dropped = Counter(
            "housing_capture_dropped",
            "Sampled predictions data capture dropped: its queue was full or a write failed",
            registry=r,
        )
        # Label lookups cost a dict hit and a lock each; the hot routes cache their children.
        self._children: dict[tuple[str, int | str], tuple[Any, Any]] = {}
        self._flag_children: dict[tuple[str, str], Any] = {}
        # Answers noted in this loop pass, not counted yet: (route, status, seconds).
        self._noted: list[tuple[str, int | str, float]] = []

    def observe_request(self, route: str, status: int | str, seconds: float) -> None:
        """Note an answer; it is counted at the end of this event-loop pass (see the module)."""
        self._noted.append((route, status, seconds))
        if len(self._noted) == 1:  # the first of this pass: count them all at its end
            try:
                asyncio.get_running_loop().call_soon(self.count_noted)
            except RuntimeError:  # no event loop: nothing would count it later
                self.count_noted()

    def count_noted(self) -> None:
        """Count the answers noted so far: one update per series and bucket."""
        noted, self._noted = self._noted, []
        by_key: dict[tuple[str, int | str], list[float]] = {}
        for route, status, seconds in noted:
            by_key.setdefault((route, status), []).append(seconds)
        for key, seconds_list in by_key.items():
            children = self._children.get(key)
            if children is None:
                route, status = key
                label = str(status)
                children = (self.requests.labels(route, label), self.latency.labels(route, label))
                self._children[key] = children
            children[0].inc(len(seconds_list))
            observe_many(children[1], seconds_list)

    def observe_batch(
        self, rows: int, device_seconds: float, waits: list[float], queued_rows: int
    ) -> None:
        self.batch_rows.observe(rows)
        self.device_time.observe(device_seconds)
        observe_many(self.queue_time, waits)
        self.queued_rows.set(queued_rows)

    def observe_dropped(self, rows: int) -> None:
        self.dropped_rows.inc(rows)

    def observe_failure(self, exc: Exception) -> None:
        self.failed_calls.inc()

    def observe_flag(self, field: str, code: str) -> None:
        child = self._flag_children.get((field, code))
        if child is None:
            child = self._flag_children[field, code] = self.input_warnings.labels(field, code)
        child.inc()

    def observe_refusal(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def render(self) -> tuple[bytes, str]:
        self.count_noted()
        if multiprocess_dir() is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged), CONTENT_TYPE_LATEST
