"""The Open Inference Protocol over gRPC as users call it: ``tritonclient.grpc`` and the
standard health client against real server processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from app.codecs.oip import OUTPUTS
from modelspec.features import CATEGORICAL_COLUMN, NUMERIC_COLUMNS
from tests.support.grpc import INFER, KEY, gated_device, grpc_server, inputs_of
from tests.support.load import ThreadLoad
from tests.support.records import example, records
from tests.support.server import ServerProcess, free_port, sample, serve


def status_of(call: Any) -> tuple[str, str]:
    """The (status code name, message) a call failed with."""
    with pytest.raises(InferenceServerException) as info:
        call()
    return str(info.value.status()).removeprefix("StatusCode."), info.value.message() or ""


def test_grpc_infer_equals_predict_row_for_row(
    artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    missing = housing_frame[housing_frame["total_bedrooms"].isna()].head(5)
    frame = pd.concat([housing_frame.sample(200, random_state=3), missing])
    with grpc_server(artifacts) as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            expected = http.post("/predict?coverage=0.8", json={"instances": records(frame)})
        client = triton.InferenceServerClient(server.grpc_target)
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("housing")
        assert client.get_server_metadata().name == "housing-inference"
        metadata = client.get_model_metadata("housing")
        assert [o.name for o in metadata.outputs] == list(OUTPUTS)
        assert [i.name for i in metadata.inputs] == [*NUMERIC_COLUMNS, CATEGORICAL_COLUMN]
        asked = [triton.InferRequestedOutput(name) for name in OUTPUTS]
        result = client.infer(
            "housing",
            inputs_of(frame),
            outputs=asked,
            parameters={"coverage": 0.8},
            request_id="r1",
        )
        column = client.infer("housing", inputs_of(frame, column=True))
        only = client.infer(
            "housing", inputs_of(frame), outputs=[triton.InferRequestedOutput("house_value")]
        )
        typed, call = _typed_contents_call(server.grpc_target, frame)
        client.close()
        probes = [_probe(server, grpc_port) for grpc_port in (server.env["HOUSING_GRPC_PORT"], "1")]
        with httpx.Client(base_url=server.url, timeout=10) as http:
            metrics = http.get("/metrics").text
        assert server.terminate() == 0
    want = expected.json()
    got = result.as_numpy("house_value")
    assert got.shape == (len(frame),)
    # float32 inputs on the wire: equal to within their rounding (outputs are FP64).
    assert got.tolist() == pytest.approx(want["predictions"], rel=1e-4)
    for name, end in (("house_value_low", "low"), ("house_value_high", "high")):
        bound = [r[end] for r in want["intervals"]]
        assert result.as_numpy(name).tolist() == pytest.approx(bound, rel=1e-4), name
    answer = result.get_response()
    assert answer.id == "r1" and answer.model_version == expected.headers["x-model-version"]
    assert answer.outputs[1].parameters["coverage"].double_param == 0.8
    # [N, 1] at the default coverage (0.9): the same prices.
    assert column.as_numpy("house_value").tolist() == got.tolist()
    assert only.as_numpy("house_value_low") is None  # asked for the price only
    # Typed contents (no raw_input_contents), as grpcurl or another client may send.
    assert typed == pytest.approx(want["predictions"], rel=1e-4)
    trailing = dict(call.trailing_metadata())
    assert trailing["x-request-id"] == "typed-1"
    assert trailing["x-model-version"] == answer.model_version
    assert sample(metrics, "housing_requests_total", route=INFER, status="OK") == 4
    # The containers' health check: both doors answer; a gRPC port with nothing on it fails.
    assert probes[0].returncode == 0, probes[0].stderr
    assert probes[1].returncode == 1 and "gRPC :1 health: UNAVAILABLE" in probes[1].stderr
    measured = "/inference.GRPCInferenceService/ModelMetadata"
    assert sample(metrics, "housing_requests_total", route=measured, status="OK") == 1


def _probe(server: ServerProcess, grpc_port: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOUSING_PORT": str(server.port), "HOUSING_GRPC_PORT": grpc_port}
    probe = [sys.executable, "-m", "app.probe"]
    return subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60, check=False)


def _typed_contents_call(target: str, frame: pd.DataFrame) -> tuple[list[float], Any]:
    """One ModelInfer with typed ``contents`` through tritonclient's own generated stub."""
    request = service_pb2.ModelInferRequest(model_name="housing")
    for name in NUMERIC_COLUMNS:
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[len(frame)])
        tensor.contents.fp64_contents.extend(frame[name].to_numpy(np.float64).tolist())
    ocean = request.inputs.add(name=CATEGORICAL_COLUMN, datatype="BYTES", shape=[len(frame)])
    ocean.contents.bytes_contents.extend(v.encode() for v in frame[CATEGORICAL_COLUMN])
    with grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        answer, call = stub.ModelInfer.with_call(
            request, metadata=(("x-request-id", "typed-1"),), timeout=30
        )
    values = np.frombuffer(answer.raw_output_contents[0], dtype="<f8").tolist()
    return values, call


def test_grpc_errors_are_status_codes_with_reasons(artifacts: Path) -> None:
    with grpc_server(artifacts, HOUSING_API_KEY=KEY, HOUSING_MAX_BODY_BYTES="4096") as server:
        server.wait_ready()
        client = triton.InferenceServerClient(server.grpc_target)
        auth = {"authorization": f"Bearer {KEY}"}

        def infer(frame: pd.DataFrame, **kw: Any) -> Any:
            kw.setdefault("headers", auth)
            return client.infer(kw.pop("model", "housing"), inputs_of(frame), **kw)

        seen = {
            "no key": status_of(lambda: infer(example(), headers={})),
            "wrong key": status_of(lambda: infer(example(), headers={"x-api-key": "nope"})),
            "bad row": status_of(lambda: infer(example(latitude=100.0))),
            "bad ocean": status_of(lambda: infer(example(ocean_proximity="MARS"))),
            "coverage": status_of(lambda: infer(example(), parameters={"coverage": 0.42})),
            "model": status_of(lambda: infer(example(), model="nope")),
            "version": status_of(lambda: infer(example(), model_version="0000")),
            "too large": status_of(lambda: infer(example(200))),
        }
        answered = infer(example())  # and the server is as well as before
        client.close()
        assert server.terminate() == 0
    assert seen["no key"][0] == seen["wrong key"][0] == "UNAUTHENTICATED"
    assert "HOUSING_API_KEY" in seen["no key"][1]
    assert seen["bad row"][0] == "INVALID_ARGUMENT" and "row 0.latitude" in seen["bad row"][1]
    assert seen["bad ocean"][0] == "INVALID_ARGUMENT" and "ocean_proximity" in seen["bad ocean"][1]
    assert seen["coverage"][0] == "INVALID_ARGUMENT" and "0.9" in seen["coverage"][1]
    assert seen["model"] == ("NOT_FOUND", "unknown model 'nope': this server serves 'housing'")
    assert seen["version"][0] == "NOT_FOUND" and "'0000'" in seen["version"][1]
    assert seen["too large"][0] == "RESOURCE_EXHAUSTED"
    assert answered.as_numpy("house_value").shape == (1,)
    assert "Traceback" not in server.output


def test_grpc_queue_full_is_unavailable_and_a_passed_deadline_drops_its_rows(
    artifacts: Path, tmp_path: Path
) -> None:
    gate, env = gated_device(tmp_path, HOUSING_MAX_INSTANCES="4", HOUSING_QUEUE_ROWS="5")
    results: dict[str, Any] = {}
    done = {name: threading.Event() for name in "ABCD"}
    first_of_b_and_c = threading.Event()

    def callback(name: str) -> Any:
        def record(result: Any, error: Any) -> None:
            results[name] = error if error is not None else result
            done[name].set()
            if name in "BC":
                first_of_b_and_c.set()

        return record

    def release(call: int) -> None:
        """Let the ``call``-th device call run, once it waits at the gate."""
        server.wait_for_output("faulty-device: holding a call", count=call)
        with open(gate, "wb") as g:  # the call opens the gate to read, if not already
            g.write(b"x")

    with grpc_server(artifacts, "tests.fakes.faulty_device", **env) as server:
        server.wait_ready()
        client = triton.InferenceServerClient(server.grpc_target)
        client.async_infer("housing", inputs_of(example()), callback("A"))
        server.wait_for_output("holding a call of 1 rows")
        # Four rows queued fit (4 <= 5); four more do not: whichever comes second is refused.
        client.async_infer("housing", inputs_of(example(4)), callback("B"))
        client.async_infer("housing", inputs_of(example(4)), callback("C"))
        assert first_of_b_and_c.wait(30)
        client.async_infer("housing", inputs_of(example()), callback("D"), client_timeout=0.5)
        assert done["D"].wait(30)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            expired = {"route": INFER, "status": "DEADLINE_EXCEEDED"}
            deadline = time.monotonic() + 60
            while not sample(http.get("/metrics").text, "housing_requests_total", **expired):
                assert time.monotonic() < deadline, "the server never counted D's deadline"
                time.sleep(0.05)  # the poll interval: not counted yet means "not yet"
            release(1)  # A's call
            release(2)  # the queued 4 rows' call; D's row was dropped before it
            assert all(done[n].wait(30) for n in "ABC")
            metrics = http.get("/metrics").text
        client.close()
        assert server.terminate() == 0
    refused = [n for n in "BC" if isinstance(results[n], InferenceServerException)]
    assert len(refused) == 1, results
    error = results[refused[0]]
    assert str(error.status()) == "StatusCode.UNAVAILABLE" and "queued" in error.message()
    assert str(results["D"].status()) == "StatusCode.DEADLINE_EXCEEDED"
    served = [n for n in "ABC" if n not in refused]
    assert all(results[n].as_numpy("house_value").shape[0] in (1, 4) for n in served)
    assert sample(metrics, "housing_requests_total", route=INFER, status="DEADLINE_EXCEEDED") == 1
    assert sample(metrics, "housing_dropped_rows_total") == 1  # D's row never ran
    assert sample(metrics, "housing_rejected_requests_total", reason="overloaded") == 1


class GrpcLoad(ThreadLoad):
    """Threads calling ModelInfer until the server stops taking calls; counts status codes."""

    def __init__(self, target: str, threads: int) -> None:
        self.target = target
        super().__init__(threads, ok="OK")

    def run(self) -> None:
        client = triton.InferenceServerClient(self.target)
        inputs = inputs_of(example())
        while True:
            try:
                client.infer("housing", inputs, client_timeout=30)
                outcome = "OK"
            except InferenceServerException as exc:
                outcome = str(exc.status()).removeprefix("StatusCode.")
            self.record(outcome)
            if outcome != "OK":
                client.close()
                return


def test_sigterm_turns_grpc_health_not_serving_and_drains_calls_in_flight(
    artifacts: Path,
) -> None:
    with grpc_server(artifacts, HOUSING_DRAIN_DELAY_S="1") as server:
        server.wait_ready()
        channel = grpc.insecure_channel(server.grpc_target)
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest
        serving = health.Check(check(service=""), timeout=10).status
        model = health.Check(check(service="housing"), timeout=10).status
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(check(service="nope"), timeout=10)
        watched: list[int] = []
        watch = health.Watch(check(service="inference.GRPCInferenceService"), timeout=60)
        watcher = threading.Thread(target=lambda: watched.extend(r.status for r in watch))
        watcher.start()
        load = GrpcLoad(server.grpc_target, threads=4).start()
        assert load.warm.wait(60), load.outcomes
        assert server.proc is not None
        server.proc.terminate()
        watcher.join(30)  # the stream ends once the server is stopping
        code = server.proc.wait(30)
        load.join(30)
        channel.close()
    assert serving == model == health_pb2.HealthCheckResponse.SERVING
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert watched == [serving, health_pb2.HealthCheckResponse.NOT_SERVING]
    assert code == 0, server.output
    # Calls were answered through the drain. A call that reaches the port as it closes is
    # refused by gRPC before any handler sees it (UNAVAILABLE, or CANCELLED when it was read
    # but not started): every call the server started was answered, none dropped half-way.
    assert set(load.outcomes) <= {"OK", "UNAVAILABLE", "CANCELLED"}, load.outcomes
    served = re.search(
        r"served (\d+) rows in \d+ device calls \(0 failed, 0 rows dropped", server.output
    )
    assert served is not None, server.output
    assert int(served.group(1)) == load.outcomes["OK"] >= 50
    assert "Finished server process" in server.output


def test_a_grpc_port_in_use_stops_startup_naming_the_setting(artifacts: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        with serve(artifacts, HOUSING_DEVICE="cpu", HOUSING_GRPC_PORT=port) as server:
            code = server.wait_exit(60)
    assert code == 1
    assert "HOUSING_GRPC_PORT to a free port" in server.output
    assert "Traceback" not in server.output


def test_grpc_health_says_serving_only_once_http_accepts(artifacts: Path) -> None:
    """gRPC is bound before the model loads and HTTP after it: the first SERVING a watcher
    hears must find the HTTP port accepting already (probes of either door agree)."""
    http_port = free_port()
    with grpc_server(artifacts, HOUSING_PORT=str(http_port)) as server:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)  # type: ignore[attr-defined]
            watch = stub.Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=120, wait_for_ready=True
            )
            for answer in watch:
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            # At once, no retry: a refused connection here is the bug.
            with socket.create_connection(("127.0.0.1", http_port), timeout=10):
                pass
            watch.cancel()
        assert server.terminate() == 0
