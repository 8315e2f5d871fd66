"""Faults: a failing device, bad artifacts, a killed process -- each against a real server.

Device failures come from ``tests/fakes/faulty_device.py`` (a named test seam: no real
NeuronCore failed here); everything else is the real ``python -m app``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from modelspec.manifest import ARTIFACT_FILE, MANIFEST_FILE
from tests.support.records import records
from tests.support.server import serve

FAULTY = "tests.fakes.faulty_device"
POISON = 7.7777  # a median_income no real block group has
FAILED_CALL = re.compile(r"faulty-device: failed a call of (\d+) rows")


def _post(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/predict", json=body)


def test_a_failing_device_call_fails_exactly_its_batch(
    artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    rows = records(housing_frame.sample(240, random_state=5))
    bodies: list[dict[str, Any]] = [{"instances": rows[i : i + 2]} for i in range(0, 240, 2)]
    poisoned = set(range(3, len(bodies), 15))  # 8 of 120 requests carry a poisoned row
    for i in poisoned:
        bodies[i] = {"instances": [{**bodies[i]["instances"][0], "median_income": POISON}]}
    env = {
        "HOUSING_DEVICE": "cpu",
        "FAULTY_DEVICE_POISON": str(POISON),
        "HOUSING_MAX_DELAY_MS": "30",  # wide batches: poisoned rows take neighbours down too
        "HOUSING_MAX_CONSECUTIVE_FAILURES": "0",
    }
    with serve(artifacts, FAULTY, **env) as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda b: _post(client, b), bodies))
            # The same requests one at a time, each alone in its call: the right answers.
            clean = [None if i in poisoned else _post(client, b) for i, b in enumerate(bodies)]
            assert client.get("/health/ready").status_code == 200
        output = server.output

    failed_rows = sum(int(n) for n in FAILED_CALL.findall(output))
    logged_errors = {e.get("request_id") for e in _log_records(output) if e["level"] == "error"}
    error_rows = 0
    for i, answer in enumerate(answers):
        if i in poisoned:
            assert answer.status_code == 500
        if answer.status_code == 500:
            error_rows += len(bodies[i]["instances"])
            error_id = answer.json()["error_id"]
            assert answer.headers["x-request-id"] == error_id
            assert error_id in logged_errors  # the log line with the stack carries it
            assert "Traceback" not in answer.text
        else:
            reference = clean[i]
            assert answer.status_code == 200 and reference is not None
            assert answer.json()["predictions"] == pytest.approx(
                reference.json()["predictions"], rel=1e-5
            )
    # Every 500 row was in a failed call and every failed call's rows got a 500: nothing else.
    assert error_rows == failed_rows
    assert len(poisoned) <= error_rows < 2 * len(bodies)


def _log_records(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _readiness(client: httpx.Client) -> tuple[int, dict[str, Any]]:
    answer = client.get("/health/ready")
    return answer.status_code, answer.json()


def test_readiness_turns_503_after_consecutive_failures_and_recovers(
    artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    body = records(housing_frame.head(1))[0]
    env = {
        "HOUSING_DEVICE": "cpu",
        "FAULTY_DEVICE_FAIL_CALLS": "5",  # 3 requests, then 2 rechecks fail; the 3rd passes
        "HOUSING_MAX_CONSECUTIVE_FAILURES": "3",
        "HOUSING_RECHECK_INTERVAL_S": "0.2",
    }
    with serve(artifacts, FAULTY, **env) as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for n in range(1, 4):
                assert client.post("/predict", json=body).status_code == 500
                status, ready = _readiness(client)
                if n < 3:
                    assert status == 200
            assert status == 503
            assert ready["status"] == "failing"
            assert ready["consecutive_failures"] == 3
            assert client.get("/ping").status_code == 503
            assert client.get("/health/live").status_code == 200
            # Nobody sends predictions now; the server's own rechecks find the device well.
            deadline = time.monotonic() + 20
            while _readiness(client)[0] != 200:
                assert time.monotonic() < deadline, server.output
            assert client.post("/predict", json=body).status_code == 200
        output = server.output
    assert "3 device calls failed in a row" in output
    assert "the device answers again" in output
    assert len(FAILED_CALL.findall(output)) == 5


def _remove(folder: Path) -> None:
    (folder / ARTIFACT_FILE).unlink()


def _truncate(folder: Path) -> None:
    with (folder / ARTIFACT_FILE).open("r+b") as fh:
        fh.truncate(4096)


def _tamper(folder: Path) -> None:
    data = bytearray((folder / ARTIFACT_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    (folder / ARTIFACT_FILE).write_bytes(bytes(data))


def _other_feature_set(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["feature_hash"] = "f" * 64
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


def _no_manifest(folder: Path) -> None:
    (folder / MANIFEST_FILE).unlink()


@pytest.mark.parametrize(
    ("damage", "names", "hint"),
    [
        (_remove, ARTIFACT_FILE, "Hint: run `python -m compile` again"),
        (_truncate, ARTIFACT_FILE, "Hint: copy model_neuron.pt and manifest.json together"),
        (_tamper, ARTIFACT_FILE, "Hint: copy model_neuron.pt and manifest.json together"),
        (_other_feature_set, MANIFEST_FILE, "Hint: retrain and recompile"),
        (_no_manifest, MANIFEST_FILE, "Hint: train and compile first"),
    ],
    ids=["missing", "truncated", "tampered", "other-feature-set", "no-manifest"],
)
def test_a_bad_artifact_stops_startup_naming_the_file_and_the_fix(
    artifacts: Path, tmp_path: Path, damage: Callable[[Path], None], names: str, hint: str
) -> None:
    folder = tmp_path / "artifacts"
    shutil.copytree(artifacts, folder)
    damage(folder)
    with serve(folder, HOUSING_DEVICE="cpu") as server:
        code = server.wait_exit()
    assert code != 0
    assert names in server.output
    assert hint in server.output
    assert "Traceback" not in server.output
    assert server.port is None  # it never listened, so readiness was never 200


def test_a_killed_server_is_ready_again_within_seconds(artifacts: Path) -> None:
    with serve(artifacts, HOUSING_DEVICE="cpu") as first:
        first.wait_ready()
        assert first.proc is not None
        os.killpg(first.proc.pid, signal.SIGKILL)
        assert first.wait_exit() == -signal.SIGKILL
    started = time.monotonic()
    with serve(artifacts, HOUSING_DEVICE="cpu") as second:
        second.wait_ready()
        elapsed = time.monotonic() - started
        assert second.terminate() == 0
    print(f"\nready {elapsed:.2f}s after a restart following SIGKILL")


def test_a_killed_worker_is_started_again_by_the_supervisor(artifacts: Path) -> None:
    with serve(artifacts, HOUSING_DEVICE="cpu", HOUSING_WORKERS="2") as server:
        server.wait_ready()
        # The supervisor's own word that worker 0 started: killed before it, the worker
        # failed to start, which stops the supervisor (the next test).
        server.wait_for_output("worker 0 serving")
        worker = int(re.findall(r"worker 0 started \(pid (\d+)", server.output)[0])
        killed = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        server.wait_for_output("worker 0 exited (-9); starting it again")
        server.wait_for_output("worker 0 serving", count=2)
        elapsed = time.monotonic() - killed
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(10):  # new connections reach both workers
                assert client.get("/health/ready").status_code == 200
        assert server.terminate() == 0
    assert server.output.count("Finished server process") == 2  # the new worker drained too
    print(f"\nworker serving again {elapsed:.2f}s after SIGKILL")


def test_workers_that_cannot_start_stop_the_supervisor(artifacts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "artifacts"
    shutil.copytree(artifacts, folder)
    _truncate(folder)
    with serve(folder, HOUSING_DEVICE="cpu", HOUSING_WORKERS="2") as server:
        code = server.wait_exit()
    assert code != 0
    assert "failed to start" in server.output
    assert "starting it again" not in server.output  # not a restart loop
    assert "Hint: copy model_neuron.pt and manifest.json together" in server.output
