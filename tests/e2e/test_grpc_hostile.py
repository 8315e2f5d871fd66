"""Hostile and abandoned gRPC calls against a real server (issue 26, findings 6 and 9): bytes
that are not a message are INVALID_ARGUMENT without a traceback and after the API key, and a
call cancelled or expired anywhere -- while its message arrives, while its rows wait -- is
counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.grpc import open_inference_grpc_pb2 as pb
from modelspec.features import CATEGORICAL_COLUMN, EXAMPLE_RECORD, NUMERIC_COLUMNS
from tests.support.grpc import INFER, KEY, gated_device, grpc_server
from tests.support.server import ServerProcess, sample

GARBAGE = b"\xff\xff garbage"
METADATA = "/inference.GRPCInferenceService/ServerMetadata"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def same(data: bytes) -> bytes:
    """The identity (de)serializer: the call's bytes as they are."""
    return data


def failure(call: Callable[[], Any]) -> tuple[str, str]:
    """The (status code name, details) a call failed with."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    error: Any = info.value
    return error.code().name, error.details() or ""


def infer_request(rows: int) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="housing")
    for name in NUMERIC_COLUMNS:
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[rows])
        tensor.contents.fp64_contents.extend([float(EXAMPLE_RECORD[name])] * rows)
    ocean = request.inputs.add(name=CATEGORICAL_COLUMN, datatype="BYTES", shape=[rows])
    ocean.contents.bytes_contents.extend([str(EXAMPLE_RECORD[CATEGORICAL_COLUMN]).encode()] * rows)
    return request


def test_bytes_that_are_not_a_message_are_invalid_argument_and_logged_once(
    artifacts: Path,
) -> None:
    auth = (("authorization", f"Bearer {KEY}"),)
    with grpc_server(artifacts, HOUSING_API_KEY=KEY) as server:
        server.wait_ready()
        with grpc.insecure_channel(server.grpc_target) as channel:
            infer = channel.unary_unary(INFER, request_serializer=same, response_deserializer=same)
            stream = channel.stream_unary(
                INFER, request_serializer=same, response_deserializer=same
            )
            metadata = channel.unary_unary(METADATA, same, same)
            check = channel.unary_unary(HEALTH_CHECK, same, same)
            watch = channel.unary_stream("/grpc.health.v1.Health/Watch", same, same)
            health = health_pb2_grpc.HealthStub(channel)
            seen = {
                "no key": failure(lambda: infer(GARBAGE, timeout=10)),
                "metadata": failure(lambda: metadata(GARBAGE, timeout=10)),
                "health": failure(lambda: check(GARBAGE, timeout=10)),
                "watch": failure(lambda: list(watch(GARBAGE, timeout=10))),
                "no message": failure(lambda: stream(iter(()), metadata=auth, timeout=10)),
                "long name": failure(
                    lambda: health.Check(
                        health_pb2.HealthCheckRequest(service="s" * 10_000), timeout=10
                    )
                ),
            }
            garbage = [
                failure(lambda: infer(GARBAGE, metadata=auth, timeout=10)) for _ in range(20)
            ]
            served = pb.ModelInferResponse.FromString(
                infer(infer_request(1).SerializeToString(), metadata=auth, timeout=30)
            )
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert server.terminate() == 0
    code, details = seen["no key"]  # refused on its metadata: its bytes are never looked at
    assert code == "UNAUTHENTICATED" and "HOUSING_API_KEY" in details
    assert {code for code, _ in garbage} == {"INVALID_ARGUMENT"}
    assert "inference.ModelInferRequest" in garbage[0][1] and "Hint:" in garbage[0][1]
    assert seen["metadata"][0] == "INVALID_ARGUMENT"
    assert "inference.ServerMetadataRequest" in seen["metadata"][1]
    assert seen["health"][0] == "INVALID_ARGUMENT"
    assert "grpc.health.v1.HealthCheckRequest" in seen["health"][1]
    assert seen["watch"][0] == "INVALID_ARGUMENT"
    assert seen["no message"][0] == "INVALID_ARGUMENT"
    assert "exactly one message" in seen["no message"][1]
    code, details = seen["long name"]
    assert code == "NOT_FOUND" and "(10000 characters)" in details and len(details) <= 200
    assert len(served.outputs) > 0 and status == health_pb2.HealthCheckResponse.SERVING
    # No traceback, and one warning line for the whole burst (one a minute at most).
    assert "Traceback" not in server.output
    assert server.output.count("are not a message of type") == 1
    assert sample(metrics, "housing_requests_total", route=INFER, status="INVALID_ARGUMENT") == 21
    assert sample(metrics, "housing_requests_total", route=INFER, status="UNAUTHENTICATED") == 1
    assert sample(metrics, "housing_requests_total", route=METADATA, status="INVALID_ARGUMENT") == 1
    assert sample(metrics, "housing_rejected_requests_total", reason="invalid") == 21


def counted(server: ServerProcess, name: str, at_least: float, **labels: str) -> float:
    """Poll /metrics until ``name{labels}`` reaches ``at_least`` ("not yet" until then)."""
    deadline = time.monotonic() + 30
    value = 0.0
    while time.monotonic() < deadline:
        value = sample(httpx.get(f"{server.url}/metrics", timeout=10).text, name, **labels)
        if value >= at_least:
            return value
        time.sleep(0.05)  # the poll interval
    raise AssertionError(f"{name}{labels} is {value}, not {at_least}:\n{server.output}")


def test_cancelled_and_expired_calls_are_counted_wherever_they_end(
    artifacts: Path, tmp_path: Path
) -> None:
    gate, env = gated_device(tmp_path)
    held = threading.Event()  # released at the end: the clients' request threads stop

    def never_sent() -> Iterator[bytes]:
        """A call's message that never comes: its client sent only the call's metadata."""
        held.wait(60)
        yield from ()

    expired = {"route": INFER, "status": "DEADLINE_EXCEEDED"}
    cancelled = {"route": INFER, "status": "CANCELLED"}
    with grpc_server(artifacts, "tests.fakes.faulty_device", **env) as server:
        server.wait_ready()
        before = httpx.get(f"{server.url}/metrics", timeout=10).text
        channel = grpc.insecure_channel(server.grpc_target)
        try:
            stream = channel.stream_unary(INFER, same, same)
            infer = channel.unary_unary(
                INFER, pb.ModelInferRequest.SerializeToString, pb.ModelInferResponse.FromString
            )
            # While the message arrives: one call expires, then one started before it (so the
            # server has it by then) is cancelled by its client.
            arriving = stream.future(never_sent())
            code = failure(lambda: stream(never_sent(), timeout=1))[0]
            counted(server, "housing_requests_total", 1, **expired)
            arriving.cancel()
            counted(server, "housing_requests_total", 1, **cancelled)
            # While the rows wait: A holds the device; B (2 rows) waits and is cancelled, C
            # (3 rows) waits past its deadline. Both are dropped unrun when A is done.
            a = infer.future(infer_request(1), timeout=60)
            server.wait_for_output("holding a call of 1 rows")
            b = infer.future(infer_request(2), timeout=60)
            queued = failure(lambda: infer(infer_request(3), timeout=1))[0]
            counted(server, "housing_requests_total", 2, **expired)
            b.cancel()
            counted(server, "housing_requests_total", 2, **cancelled)
            with open(gate, "wb") as g:  # A's call may run now
                g.write(b"x")
            answered = a.result(timeout=30)
            counted(server, "housing_dropped_rows_total", 5)
            after = httpx.get(f"{server.url}/metrics", timeout=10).text
        finally:
            held.set()
            channel.close()
        assert server.terminate() == 0
    assert code == queued == "DEADLINE_EXCEEDED"
    assert len(answered.outputs) > 0

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("housing_requests_total", **expired) == 2
    assert moved("housing_requests_total", **cancelled) == 2
    assert moved("housing_requests_total", route=INFER, status="OK") == 1
    assert moved("housing_dropped_rows_total") == 5  # B's and C's rows never ran
    assert "Traceback" not in server.output
