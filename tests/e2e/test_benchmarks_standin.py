"""make bench's NeuronCore stand-in, in a real server (``make bench`` itself is too long for
``make test``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from modelspec.features import EXAMPLE_RECORD
from tests.support.server import ServerProcess, serve


def _three(server: ServerProcess) -> tuple[dict[str, Any], str]:
    """The answer to three records, checked to be the stand-in's own, and /metrics."""
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post("/predict", json={"instances": [EXAMPLE_RECORD] * 3})
        metrics = client.get("/metrics").text
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    assert body["predictions"] == [200000.0] * 3  # the stand-in's, not the model's
    # Its scale (exp(LOG_SCALE) = $40,000) makes ranges like the artifact's.
    low, high = body["intervals"][0]["low"], body["intervals"][0]["high"]
    assert low < 200000.0 < high
    assert high - 200000.0 == pytest.approx(200000.0 - low)
    return body, metrics


def test_the_neuron_stand_in_answers_through_the_device_thread(artifacts: Path) -> None:
    env = {"HOUSING_DEVICE": "cpu", "HOUSING_DEVICE_THREAD": "true", "STANDIN_DEVICE_US": "100"}
    with serve(artifacts, "benchmarks.standin_device", **env) as server:
        _, metrics = _three(server)
    # The device call took the stand-in's wait at least (the histogram's sum, in seconds).
    device_sum = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("housing_device_duration_seconds_sum")
    )
    assert device_sum >= 100e-6


def test_the_free_device_answers_at_once_on_the_event_loop(artifacts: Path) -> None:
    env = {"HOUSING_DEVICE": "cpu", "HOUSING_DEVICE_THREAD": "false", "STANDIN_DEVICE": "free"}
    with serve(artifacts, "benchmarks.standin_device", **env) as server:
        _three(server)
        assert "device calls run inline" in server.output


def test_an_unknown_stand_in_is_refused_with_the_choices(artifacts: Path) -> None:
    with serve(artifacts, "benchmarks.standin_device", STANDIN_DEVICE="tpu") as server:
        assert server.wait_exit() == 2
        assert "use neuron (the default) or free" in server.output
