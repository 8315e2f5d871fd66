"""Undecodable gRPC messages: a refusal with a hint, a warning throttled to one line a minute,
and a health check's unknown service name echoed within a bound."""

from __future__ import annotations

import logging

import pytest
from grpc_health.v1 import health_pb2

from app.errors import ECHO_CHARS, Refusal, RequestRefused, shown
from app.grpc import open_inference_grpc_pb2 as pb
from app.grpc.calls import Throttled, decode


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_gets_one_line_and_the_next_line_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    throttled = Throttled(every_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="housing.grpc"):
        for _ in range(1000):
            throttled.warn("bad bytes")
        clock.now = 59.9
        throttled.warn("bad bytes")
        assert [r.getMessage() for r in caplog.records] == ["bad bytes"]
        clock.now = 60.0
        throttled.warn("bad bytes")
        clock.now = 200.0
        throttled.warn("bad bytes")
    assert [r.getMessage() for r in caplog.records] == [
        "bad bytes",
        "bad bytes (1000 more since the previous such line)",
        "bad bytes",
    ]


def test_bytes_that_are_not_the_message_are_refused_with_a_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttled = Throttled(clock=Clock())
    with caplog.at_level(logging.WARNING, logger="housing.grpc"):
        with pytest.raises(RequestRefused) as info:
            decode(b"\xff\xff garbage", pb.ModelInferRequest, throttled)
        with pytest.raises(RequestRefused):
            decode(b"\xff\xff garbage", health_pb2.HealthCheckRequest, throttled)
    assert info.value.kind is Refusal.INVALID
    assert "10 bytes are not a message of type inference.ModelInferRequest" in str(info.value)
    assert "Hint:" in str(info.value)
    assert len(caplog.records) == 1 and throttled.suppressed == 1
    assert not caplog.records[0].exc_info  # a line, not a traceback
    good = pb.ModelInferRequest(model_name="housing").SerializeToString()
    assert decode(good, pb.ModelInferRequest, throttled).model_name == "housing"


def test_an_unknown_service_name_is_echoed_within_a_bound() -> None:
    assert shown("nope") == "'nope'"
    long = shown("s" * 10_000)
    assert long.startswith("'" + "s" * ECHO_CHARS + "'...") and long.endswith("(10000 characters)")
    assert len(long) < ECHO_CHARS + 40
