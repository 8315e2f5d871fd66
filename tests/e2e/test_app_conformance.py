"""The service as stock third-party clients see it, against one real server process:
``tritonclient`` over HTTP (JSON and binary tensors) and gRPC, KServe's own clients and the
standard gRPC health client (every price checked against ``/predict``'s for the same rows),
then what operators' tools read: the OpenAPI document (openapi-spec-validator) and
``/metrics`` (Prometheus's own text parser)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from grpc_health.v1 import health_pb2, health_pb2_grpc
from openapi_spec_validator import OpenAPIV31SpecValidator
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from app.codecs.oip import OUTPUTS, unknown_model, unknown_version
from modelspec.features import CATEGORICAL_COLUMN, NUMERIC_COLUMNS, RAW_COLUMNS
from tests.support.grpc import inputs_of
from tests.support.project import ROOT
from tests.support.records import records
from tests.support.server import ServerProcess, free_port, sample, serve

MODEL = "housing"
UNKNOWN = unknown_model("nope")
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def server(artifacts: Path) -> Iterator[ServerProcess]:
    with serve(artifacts, HOUSING_DEVICE="cpu", HOUSING_GRPC_PORT=str(free_port())) as s:
        s.wait_ready()
        yield s
        assert s.terminate() == 0
    assert "Traceback" not in s.output


@pytest.fixture(scope="module")
def frame(housing_frame: pd.DataFrame) -> pd.DataFrame:
    """Six data-set rows, the last two without total_bedrooms (NaN: a missing value)."""
    missing = housing_frame[housing_frame["total_bedrooms"].isna()].head(2)
    return pd.concat([housing_frame.sample(4, random_state=11), missing]).reset_index(drop=True)


@pytest.fixture(scope="module")
def predicted(server: ServerProcess, frame: pd.DataFrame) -> dict[str, Any]:
    """``/predict``'s answer for ``frame`` (nulls for the missing values), and its version."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        answer = http.post("/predict", json={"instances": records(frame)})
    assert answer.status_code == 200, answer.text
    return {**answer.json(), "version": answer.headers["x-model-version"]}


def http_inputs(frame: pd.DataFrame, binary: bool) -> list[triton_http.InferInput]:
    out = []
    for name in NUMERIC_COLUMNS:
        tensor = triton_http.InferInput(name, [len(frame)], "FP32")
        tensor.set_data_from_numpy(frame[name].to_numpy(np.float32), binary_data=binary)
        out.append(tensor)
    ocean = triton_http.InferInput(CATEGORICAL_COLUMN, [len(frame)], "BYTES")
    ocean.set_data_from_numpy(frame[CATEGORICAL_COLUMN].to_numpy(object), binary_data=binary)
    return [*out, ocean]


def http_outputs(binary: bool) -> list[triton_http.InferRequestedOutput]:
    return [triton_http.InferRequestedOutput(name, binary_data=binary) for name in OUTPUTS]


def prices(result: Any) -> dict[str, list[float]]:
    """The three outputs of a tritonclient or kserve result, as lists."""
    return {name: result.as_numpy(name).tolist() for name in OUTPUTS}


def expected(predicted: dict[str, Any]) -> dict[str, Any]:
    """``/predict``'s prices as the outputs; float32 inputs on the wire round them a little."""
    intervals = predicted["intervals"]
    return {
        "house_value": pytest.approx(predicted["predictions"], rel=1e-4),
        "house_value_low": pytest.approx([r["low"] for r in intervals], rel=1e-4),
        "house_value_high": pytest.approx([r["high"] for r in intervals], rel=1e-4),
    }


def error_of(call: Any) -> tuple[str, str]:
    """The (status, message) of the InferenceServerException a tritonclient call raises."""
    with pytest.raises(InferenceServerException) as info:
        call()
    return str(info.value.status()).removeprefix("StatusCode."), info.value.message() or ""


def test_tritonclient_http_health_and_metadata(
    server: ServerProcess, predicted: dict[str, Any]
) -> None:
    version = predicted["version"]
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        ready = {
            "served": client.is_model_ready(MODEL),
            "this version": client.is_model_ready(MODEL, version),
            "another version": client.is_model_ready(MODEL, "0000"),
            "another model": client.is_model_ready("nope"),
        }
        about = client.get_server_metadata()
        metadata = client.get_model_metadata(MODEL)
        versioned = client.get_model_metadata(MODEL, version)
        unknown = error_of(lambda: client.get_model_metadata("nope"))
        other = error_of(lambda: client.get_model_metadata(MODEL, "0000"))
    finally:
        client.close()
    assert ready == {
        "served": True,
        "this version": True,
        "another version": False,
        "another model": False,
    }
    assert about["name"] == "housing-inference"
    assert about["extensions"] == ["binary_tensor_data"]
    assert metadata["versions"] == [version]
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
        *((n, "FP32") for n in NUMERIC_COLUMNS),
        (CATEGORICAL_COLUMN, "BYTES"),
    ]
    assert [o["name"] for o in metadata["outputs"]] == list(OUTPUTS)
    assert versioned == metadata
    # The server's own text, not tritonclient's "an exception occurred ... while decoding".
    assert unknown == ("404", UNKNOWN)
    assert other == ("404", unknown_version("0000", version))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_http_infer_answers_as_predict(
    server: ServerProcess, frame: pd.DataFrame, predicted: dict[str, Any], binary: bool
) -> None:
    inputs = http_inputs(frame, binary)
    body, _ = triton_http.InferenceServerClient.generate_request_body(inputs, http_outputs(binary))
    # In JSON mode the client writes a missing FP32 value as Python's json does: a bare NaN.
    assert (b"NaN" in body) is not binary
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        result = client.infer(MODEL, inputs, outputs=http_outputs(binary), request_id="conf-1")
        versioned = client.infer(MODEL, inputs, model_version=predicted["version"])
        other = error_of(lambda: client.infer(MODEL, inputs, model_version="0000"))
        unknown = error_of(lambda: client.infer("nope", inputs))
    finally:
        client.close()
    assert prices(result) == expected(predicted)
    answer = result.get_response()
    assert answer["id"] == "conf-1" and answer["model_version"] == predicted["version"]
    assert prices(versioned) == prices(result)
    assert other == ("404", unknown_version("0000", predicted["version"]))
    assert unknown == ("404", UNKNOWN)


def test_tritonclient_http_refusals_name_the_row_and_input(
    server: ServerProcess, frame: pd.DataFrame
) -> None:
    """NaN where a value may not be missing: refused by the validator, as a null would be."""
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        seen = {
            binary: error_of(
                lambda binary=binary: client.infer(
                    MODEL, http_inputs(frame.assign(latitude=np.nan), binary)
                )
            )
            for binary in (False, True)
        }
    finally:
        client.close()
    for status, message in seen.values():
        assert status == "400" and "row 0.latitude" in message and "finite" in message


def test_tritonclient_grpc_health_metadata_and_infer(
    server: ServerProcess, frame: pd.DataFrame, predicted: dict[str, Any]
) -> None:
    version = predicted["version"]
    client = triton_grpc.InferenceServerClient(server.grpc_target)
    try:
        assert client.is_server_live() and client.is_server_ready()
        ready = [client.is_model_ready(MODEL), client.is_model_ready(MODEL, version)]
        metadata = client.get_model_metadata(MODEL, as_json=True)
        versioned = client.get_model_metadata(MODEL, version, as_json=True)
        about = client.get_server_metadata(as_json=True)
        asked = [triton_grpc.InferRequestedOutput(name) for name in OUTPUTS]
        result = client.infer(MODEL, inputs_of(frame), outputs=asked, request_id="conf-2")
        on_version = client.infer(MODEL, inputs_of(frame), model_version=version)
        other = error_of(lambda: client.infer(MODEL, inputs_of(frame), model_version="0000"))
        unknown = error_of(lambda: client.infer("nope", inputs_of(frame)))
        no_metadata = error_of(lambda: client.get_model_metadata("nope"))
    finally:
        client.close()
    assert ready == [True, True]
    assert about["name"] == "housing-inference" and about["extensions"] == ["binary_tensor_data"]
    assert metadata["versions"] == [version] and versioned == metadata
    assert [o["name"] for o in metadata["outputs"]] == list(OUTPUTS)
    answer = result.get_response()
    # Binary outputs: raw little-endian FP64, one buffer per output, in the order asked.
    assert [len(raw) for raw in answer.raw_output_contents] == [8 * len(frame)] * 3
    assert prices(result) == expected(predicted)
    assert answer.id == "conf-2" and answer.model_version == version
    assert prices(on_version) == prices(result)
    assert other == ("NOT_FOUND", unknown_version("0000", version))
    assert unknown == ("NOT_FOUND", UNKNOWN)
    assert no_metadata == ("NOT_FOUND", UNKNOWN)


def test_kserve_clients_over_rest_and_grpc(
    server: ServerProcess, frame: pd.DataFrame, predicted: dict[str, Any]
) -> None:
    """``kserve.InferenceRESTClient`` (v2) and ``InferenceGRPCClient``, run in a process of
    their own (``tests.support.kserve_calls`` says why)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.kserve_calls", server.url, server.grpc_target],
        input=json.dumps(records(frame)),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    rest, rpc = seen["rest"], seen["grpc"]
    version = predicted["version"]
    flags = ("live", "ready", "model ready", "other model ready")
    assert [rest[k] for k in flags] == [True, True, True, False]
    for answer in (rest["json"], rest["binary"], rpc["infer"]):
        assert answer["outputs"] == expected(predicted)
        assert answer["id"] == "kserve-1"
    # kserve 0.21's REST client drops the answer's model_version (InferResponse.from_bytes);
    # its gRPC client keeps it.
    assert rpc["infer"]["model_version"] == version
    status, text = rest["unknown"]
    # The client quotes the body's "error": the server's own text.
    assert status == 404 and text.startswith(f"{UNKNOWN}, '404 Not Found'")
    assert [rpc[k] for k in flags[:3]] == [True, True, True]
    assert rpc["metadata"] == {
        "name": MODEL,
        "versions": [version],
        "inputs": [*([n, "FP32"] for n in NUMERIC_COLUMNS), [CATEGORICAL_COLUMN, "BYTES"]],
        "outputs": list(OUTPUTS),
    }
    assert rpc["unknown"] == ["NOT_FOUND", UNKNOWN]


def test_grpc_health_check_and_watch(server: ServerProcess) -> None:
    check = health_pb2.HealthCheckRequest
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        statuses = {
            name: health.Check(check(service=name), timeout=30).status
            for name in ("", "inference.GRPCInferenceService", MODEL)
        }
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(check(service="nope"), timeout=30)
        overall = health.Watch(check(service=""), timeout=30)
        first = next(overall).status
        overall.cancel()
        # An unknown service: SERVICE_UNKNOWN, and the stream stays open (the service may yet
        # be registered): it ends when the client cancels it, not before (tests/unit/
        # test_grpc_health.py holds it open until the server stops, without a clock).
        watched = health.Watch(check(service="nope"), timeout=30)
        unknown_first = next(watched).status
        watched.cancel()
        with pytest.raises(grpc.RpcError) as ended:
            next(watched)
    assert statuses == dict.fromkeys(("", "inference.GRPCInferenceService", MODEL), SERVING)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert first == SERVING
    assert unknown_first == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    assert ended.value.code() == grpc.StatusCode.CANCELLED


def test_openapi_document_validates_as_the_version_it_declares(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        spec = http.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1.")
    assert list(OpenAPIV31SpecValidator(spec).iter_errors()) == []
    documented = {
        "/v2/models/housing/versions/{version}": "get",
        "/v2/models/housing/versions/{version}/ready": "get",
        "/v2/models/housing/versions/{version}/infer": "post",
    }
    for path, method in documented.items():
        assert "404" in spec["paths"][path][method]["responses"], path


# The samples a family of each type may have, besides its own name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": (),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
}


def test_prometheus_parses_all_of_metrics_and_docs_routes_are_labelled(
    server: ServerProcess, frame: pd.DataFrame
) -> None:
    header = ",".join(RAW_COLUMNS) + "\n"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/predict", json={"instances": records(frame)}).status_code == 200
        csv = http.post("/invocations", content=header, headers={"content-type": "text/csv"})
        assert (csv.status_code, csv.text) == (200, "")
        assert http.get("/v2/models/nope").status_code == 404
        before = http.get("/metrics").text
        for path in ("/openapi.json", "/docs", "/redoc", "/docs-assets/swagger-ui.css"):
            assert http.get(path).status_code == 200, path
        after = http.get("/metrics").text
    families = list(text_string_to_metric_families(after))
    lines = [line for line in after.splitlines() if line and not line.startswith("#")]
    assert sum(len(f.samples) for f in families) == len(lines)  # every line parsed
    for family in families:
        assert family.type in SUFFIXES and family.documentation, family.name
        names = {family.name, *(family.name + end for end in SUFFIXES[family.type])}
        assert {s.name for s in family.samples} <= names, family.name

    def delta(route: str) -> float:
        labels = {"route": route, "status": "200"}
        name = "housing_requests_total"
        return sample(after, name, **labels) - sample(before, name, **labels)

    routes = ("/openapi.json", "/docs", "/redoc", "/docs-assets", "unmatched")
    assert {r: delta(r) for r in routes} == dict.fromkeys(routes[:-1], 1) | {"unmatched": 0}
    assert sample(after, "housing_requests_total", route="/invocations", status="200") >= 1
    assert sample(after, "housing_requests_total", route="unmatched", status="404") >= 1
