"""Bulk metrics: the same exposition as prometheus-client's own observe, counted per loop pass."""

from __future__ import annotations

import asyncio
import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from app.observe.metrics import LATENCY_BUCKETS, Metrics, observe_many

ROUTE = "/predict"


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_observe_many_writes_what_observe_writes() -> None:
    rng = random.Random(7)
    values = [rng.choice([0.0, 1e-6, 3.0, 11.0, *LATENCY_BUCKETS]) for _ in range(50)]
    values += [rng.uniform(0, 12) for _ in range(200)]  # between bounds and past the last one
    text = {}
    for way in ("one by one", "bulk"):
        registry = CollectorRegistry()
        h = Histogram("h", "h", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
        child = h.labels(ROUTE)
        if way == "bulk":
            observe_many(child, values[:120])
            observe_many(child, values[120:])
            observe_many(child, [])
        else:
            for v in values:
                child.observe(v)
        text[way] = [
            line
            for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line and "_sum" not in line
        ]
        sums = registry.get_sample_value("h_sum", {"route": ROUTE})
        assert sums == pytest.approx(sum(values))
    assert text["bulk"] == text["one by one"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_answers_noted_in_a_loop_pass_are_counted_at_its_end() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.002, 0.3):
        metrics.observe_request(ROUTE, 200, seconds)
    metrics.observe_request(ROUTE, 422, 0.0005)
    assert value(metrics, "housing_requests_total", route=ROUTE, status="200") is None
    await asyncio.sleep(0)  # the end of this pass
    assert value(metrics, "housing_requests_total", route=ROUTE, status="200") == 3
    assert value(metrics, "housing_requests_total", route=ROUTE, status="422") == 1
    count = value(metrics, "housing_request_duration_seconds_count", route=ROUTE, status="200")
    assert count == 3
    quick = value(
        metrics, "housing_request_duration_seconds_bucket", route=ROUTE, status="200", le="0.0025"
    )
    assert quick == 2
    total = value(metrics, "housing_request_duration_seconds_sum", route=ROUTE, status="200")
    assert total == pytest.approx(0.303)


@pytest.mark.anyio
async def test_render_counts_what_is_noted_first() -> None:
    metrics = Metrics()
    metrics.observe_request(ROUTE, 200, 0.001)
    body, _ = metrics.render()
    assert 'housing_requests_total{route="/predict",status="200"} 1.0' in body.decode()
    await asyncio.sleep(0)  # the pass's own count finds nothing left: no double count
    assert value(metrics, "housing_requests_total", route=ROUTE, status="200") == 1


def test_outside_an_event_loop_an_answer_is_counted_at_once() -> None:
    metrics = Metrics()
    metrics.observe_request(ROUTE, 200, 0.001)
    assert value(metrics, "housing_requests_total", route=ROUTE, status="200") == 1


def test_a_batch_s_queue_waits_land_in_their_buckets() -> None:
    metrics = Metrics()
    metrics.observe_batch(3, 0.0002, [0.00005, 0.0004, 2.0], queued_rows=5)
    bucket = "housing_queue_duration_seconds_bucket"
    assert value(metrics, bucket, le="0.0001") == 1
    assert value(metrics, bucket, le="0.0005") == 2
    assert value(metrics, bucket, le="+Inf") == 3
    assert value(metrics, "housing_queue_rows") == 5
