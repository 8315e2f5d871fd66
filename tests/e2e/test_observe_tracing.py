"""OpenTelemetry tracing against a real OTLP/HTTP receiver: parents, links and attributes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import tritonclient.grpc as triton
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from modelspec.features import EXAMPLE_RECORD
from tests.support.grpc import inputs_of
from tests.support.otlp import OtlpReceiver
from tests.support.server import free_port, serve

HTTP_TRACE, HTTP_PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
RPC_TRACE, RPC_PARENT = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
INFER = "inference.GRPCInferenceService/ModelInfer"


def attributes(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind) if kind else None
    return out


def named(spans: list[Span], name: str) -> list[Span]:
    return [s for s in spans if s.name == name]


def test_a_traced_request_has_its_parent_its_queue_wait_and_a_linked_device_call(
    artifacts: Path,
) -> None:
    with OtlpReceiver() as receiver:
        env = {
            "HOUSING_DEVICE": "cpu",
            "HOUSING_ACCESS_LOG": "true",
            "HOUSING_GRPC_PORT": str(free_port()),
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_SERVICE_NAME": "housing-ci",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci",
        }
        with serve(artifacts, **env) as server:
            server.wait_ready()
            with httpx.Client(base_url=server.url, timeout=10) as http:
                answer = http.post(
                    "/predict",
                    json={"instances": [EXAMPLE_RECORD] * 3},
                    headers={
                        "traceparent": f"00-{HTTP_TRACE}-{HTTP_PARENT}-01",
                        "tracestate": "vendor=1",
                        "x-request-id": "traced-1",
                    },
                )
                assert http.get("/health/ready").status_code == 200
                assert http.get("/metrics").status_code == 200
            client = triton.InferenceServerClient(server.grpc_target)
            client.infer(
                "housing",
                inputs_of(pd.DataFrame([EXAMPLE_RECORD])),
                headers={"traceparent": f"00-{RPC_TRACE}-{RPC_PARENT}-01"},
            )
            client.close()

            def complete(spans: list[Span]) -> bool:
                names = [s.name for s in spans]
                return (
                    names.count("device call") >= 2
                    and names.count("queue") >= 2
                    and ("POST /predict" in names and INFER in names)
                )

            arrived = receiver.wait_for(complete)
            assert server.terminate() == 0
        spans, resource = list(receiver.spans), receiver.resources[0]
    assert arrived, [s.name for s in spans]
    assert {s.name for s in spans} == {"POST /predict", INFER, "queue", "device call"}
    assert resource["service.name"] == "housing-ci"
    assert resource["deployment.environment"] == "ci"

    (request,) = named(spans, "POST /predict")
    assert request.trace_id.hex() == HTTP_TRACE and request.parent_span_id.hex() == HTTP_PARENT
    assert request.kind == Span.SPAN_KIND_SERVER
    assert request.trace_state == "vendor=1"
    version = answer.headers["x-model-version"]
    assert attributes(request) == {
        "http.request.method": "POST",
        "http.route": "/predict",
        "url.path": "/predict",
        # OpenTelemetry's HTTP server attributes, from the connection.
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "server.port": server.port,
        "client.address": "127.0.0.1",
        "network.protocol.version": "1.1",
        "http.response.status_code": 200,
        "housing.request_id": "traced-1",
        "housing.rows": 3,
        "housing.model.version": version,
    }
    (queue,) = [s for s in named(spans, "queue") if s.trace_id.hex() == HTTP_TRACE]
    assert queue.parent_span_id == request.span_id
    assert request.start_time_unix_nano <= queue.start_time_unix_nano <= queue.end_time_unix_nano
    (device,) = [s for s in named(spans, "device call") if s.trace_id.hex() == HTTP_TRACE]
    # Which batch the request joined: its queue span links to the device call, and the call
    # links to every request it served.
    assert [(link.trace_id, link.span_id) for link in queue.links] == [
        (device.trace_id, device.span_id)
    ]
    assert (request.trace_id, request.span_id) in [(k.trace_id, k.span_id) for k in device.links]
    call = attributes(device)
    assert call["housing.batch.rows"] == 3 and call["housing.batch.padded_rows"] == 4
    assert call["housing.device"] == "cpu" and call["housing.model.version"] == version
    assert call["housing.batch.requests"] == 1
    assert queue.end_time_unix_nano <= device.start_time_unix_nano + 1

    (rpc,) = named(spans, INFER)
    assert rpc.trace_id.hex() == RPC_TRACE and rpc.parent_span_id.hex() == RPC_PARENT
    assert attributes(rpc)["rpc.grpc.status_code"] == 0
    assert attributes(rpc)["rpc.system"] == "grpc" and attributes(rpc)["housing.rows"] == 1
    (rpc_device,) = [s for s in named(spans, "device call") if s.trace_id.hex() == RPC_TRACE]
    assert (rpc.trace_id, rpc.span_id) in [(k.trace_id, k.span_id) for k in rpc_device.links]

    lines = [json.loads(line) for line in server.lines if line.startswith("{")]
    (access,) = [e for e in lines if e.get("request_id") == "traced-1"]
    assert access["trace_id"] == HTTP_TRACE and access["span_id"] == request.span_id.hex()
    assert any("tracing on: otlp" in e["message"] for e in lines)


def test_nothing_is_exported_when_tracing_is_off(artifacts: Path) -> None:
    with OtlpReceiver() as receiver:
        env = {
            "HOUSING_DEVICE": "cpu",
            "OTEL_TRACES_EXPORTER": "none",  # wins over the endpoint below
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        }
        with serve(artifacts, **env) as server:
            server.wait_ready()
            with httpx.Client(base_url=server.url, timeout=10) as http:
                traceparent = f"00-{HTTP_TRACE}-{HTTP_PARENT}-01"
                answer = http.post(
                    "/predict", json=EXAMPLE_RECORD, headers={"traceparent": traceparent}
                )
            # Tracing exports what is left at shutdown: after a clean exit nothing is pending.
            assert server.terminate() == 0
    assert answer.status_code == 200
    assert receiver.exports == 0
    assert "tracing on" not in server.output and "trace_id" not in server.output
