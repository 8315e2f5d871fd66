"""Shutdown under load, a standard OIP client, worker processes: real servers, real clients."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton

from app.codecs.oip import OUTPUTS
from modelspec.features import CATEGORICAL_COLUMN, EXAMPLE_RECORD, NUMERIC_COLUMNS
from tests.support.grpc import inputs_of
from tests.support.load import ThreadLoad
from tests.support.records import records
from tests.support.server import free_port, sample, serve


class Load(ThreadLoad):
    """Threads posting /predict on keep-alive connections until stopped; counts outcomes."""

    def __init__(self, url: str, threads: int) -> None:
        self.url = url
        self.after_signal: Counter[str] = Counter()
        self.signalled = threading.Event()
        super().__init__(threads, ok="200")

    def counted(self, outcome: str) -> None:
        if self.signalled.is_set():
            self.after_signal[outcome] += 1

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while True:
                try:
                    response = client.post("/predict", json=EXAMPLE_RECORD)
                except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                    # Not accepted: the listener is closed or the idle connection was shut.
                    self.record("not accepted")
                    return
                self.record(str(response.status_code))


def test_sigterm_under_load_drains_every_accepted_request(artifacts: Path) -> None:
    env = {"HOUSING_DEVICE": "cpu", "HOUSING_DRAIN_DELAY_S": "1", "HOUSING_GRACEFUL_TIMEOUT_S": "8"}
    with serve(artifacts, **env) as server:
        server.wait_ready()
        load = Load(server.url, threads=8).start()
        assert load.warm.wait(30), load.outcomes
        assert server.proc is not None
        load.signalled.set()
        signalled_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        # The next readiness answer is already 503: the handler runs before any new request.
        with httpx.Client(base_url=server.url, timeout=5) as probe:
            assert probe.get("/health/ready").status_code == 503
            assert probe.get("/ping").status_code == 503
            assert probe.get("/health/live").status_code == 200
        code = server.wait_exit(timeout=30)
        exited_after = time.monotonic() - signalled_at
        load.join(10)
    assert code == 0
    assert exited_after < 8, f"exit took {exited_after:.1f}s, grace is 8s"
    # Every request the server accepted was answered 200, including those during the drain.
    assert set(load.outcomes) <= {"200", "not accepted"}, load.outcomes
    assert load.after_signal["200"] > 0, load.after_signal
    assert "readiness is now 503" in server.output


def test_logs_are_one_json_object_per_line(artifacts: Path) -> None:
    with serve(artifacts, HOUSING_DEVICE="cpu", HOUSING_ACCESS_LOG="true") as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            client.post("/predict", json=EXAMPLE_RECORD, headers={"x-request-id": "e2e-42"})
        assert server.terminate() == 0
    entries = [json.loads(line) for line in server.lines if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    (access,) = [e for e in entries if e.get("request_id") == "e2e-42"]
    assert access["status"] == 200 and access["route"] == "/predict"


def test_a_standard_oip_client_gets_the_same_answers(
    artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    missing = housing_frame[housing_frame["total_bedrooms"].isna()].head(3)
    frame = pd.concat([housing_frame.head(20), missing])
    with serve(artifacts, HOUSING_DEVICE="cpu") as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            expected = client.post(
                "/predict?coverage=0.8", json={"instances": records(frame)}
            ).json()
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("housing")
        metadata = client.get_model_metadata("housing")
        assert metadata["name"] == "housing"
        assert [o["name"] for o in metadata["outputs"]] == list(OUTPUTS)
        inputs = []
        for name in NUMERIC_COLUMNS:  # binary tensors, tritonclient's default
            tensor = triton.InferInput(name, [len(frame)], "FP32")
            tensor.set_data_from_numpy(frame[name].to_numpy(np.float32))  # NaN: missing
            inputs.append(tensor)
        ocean = triton.InferInput(CATEGORICAL_COLUMN, [len(frame)], "BYTES")
        ocean.set_data_from_numpy(frame[CATEGORICAL_COLUMN].to_numpy(object))
        inputs.append(ocean)
        asked = [triton.InferRequestedOutput(name) for name in OUTPUTS]
        result = client.infer("housing", inputs, outputs=asked, parameters={"coverage": 0.8})
        only = client.infer("housing", inputs, outputs=[triton.InferRequestedOutput("house_value")])
        client.close()
        assert server.terminate() == 0
    got = result.as_numpy("house_value")
    assert got.shape == (len(frame),)
    # float32 inputs on the wire: the same rows to within float32 rounding of the inputs.
    assert got.tolist() == pytest.approx(expected["predictions"], rel=1e-4)
    for name, end in (("house_value_low", "low"), ("house_value_high", "high")):
        want = [r[end] for r in expected["intervals"]]
        assert result.as_numpy(name).tolist() == pytest.approx(want, rel=1e-4), name
    assert only.as_numpy("house_value_low") is None  # asked for the price only
    assert only.as_numpy("house_value").tolist() == got.tolist()


def test_two_workers_share_the_port_and_the_metrics(artifacts: Path) -> None:
    grpc_port = str(free_port())
    env = {"HOUSING_DEVICE": "cpu", "HOUSING_WORKERS": "2", "HOUSING_GRPC_PORT": grpc_port}
    with serve(artifacts, **env) as server:
        server.wait_ready()
        # Both workers must be up before the count below means anything.
        server.wait_for_output("Application startup complete", count=2)
        for _ in range(40):  # new connections: the kernel spreads them between the workers
            with httpx.Client(base_url=server.url, timeout=10) as client:
                assert client.post("/predict", json=EXAMPLE_RECORD).status_code == 200
        for _ in range(10):  # gRPC: each worker listens on the port too (SO_REUSEPORT)
            rpc = triton_grpc.InferenceServerClient(server.grpc_target)
            rpc.infer("housing", inputs_of(pd.DataFrame([EXAMPLE_RECORD])))
            rpc.close()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            metrics = client.get("/metrics").text
            # Batch Transform's concurrency: two per worker, which each worker knows.
            concurrency = client.get("/execution-parameters").json()["MaxConcurrentTransforms"]
        assert concurrency == 4
        assert server.proc is not None
        supervisor = server.proc.pid
        assert server.terminate() == 0
    # Both workers' sum.
    assert sample(metrics, "housing_requests_total", route="/predict", status="200") == 40
    infer = "/inference.GRPCInferenceService/ModelInfer"
    assert sample(metrics, "housing_requests_total", route=infer, status="OK") == 10
    assert server.output.count(f"gRPC listening on 127.0.0.1:{grpc_port}") == 2
    assert (
        sample(metrics, "housing_request_duration_seconds_count", route="/predict", status="200")
        == 40
    )
    pids = {int(m) for m in re.findall(r"worker [01] started \(pid (\d+)", server.output)}
    assert len(pids) == 2 and supervisor not in pids  # two new processes, not the supervisor
    assert server.output.count("Finished server process") == 2  # both drained
