"""SIGHUP under load: a real server swaps models back and forth while 16 clients send mixed
``/predict``, CSV and OIP requests. Every request is answered 200, and every answer equals,
for all of its rows, the eager model that its ``X-Model-Version`` names."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pandas as pd

from reliability.rollout import Load, check, install, mixed_requests, version
from tests.support.oracle import eager_dollars
from tests.support.server import serve

CLIENTS = 16


def test_sighup_swaps_models_under_load_without_a_failed_or_mixed_answer(
    tmp_path: Path, artifacts: Path, other_artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    frame = housing_frame.sample(2000, random_state=0).reset_index(drop=True)
    expected = {version(a): eager_dollars(a, frame) for a in (artifacts, other_artifacts)}
    first, second = version(artifacts), version(other_artifacts)
    install(artifacts, tmp_path)
    with serve(tmp_path, HOUSING_DEVICE="cpu") as server:
        server.wait_ready()
        assert server.proc is not None
        load = Load(server.url, mixed_requests(frame, 300), CLIENTS)
        load.thread.start()
        try:
            for n, (source, new) in enumerate(
                [(other_artifacts, second), (artifacts, first), (other_artifacts, second)], 1
            ):
                load.wait_for(200 * n)
                install(source, tmp_path)
                server.proc.send_signal(signal.SIGHUP)
                server.wait_for_output(f"model {new} replaces", count=(n + 1) // 2)
            load.wait_for(200 * 4)
        finally:
            load.stop.set()
            load.thread.join(30)
        assert server.terminate() == 0
    assert {a.status for a in load.answers} == {200}
    assert {a.version for a in load.answers} == {first, second}
    assert check(load.answers, expected) == []  # each equals the eager model it names
    assert "reload refused" not in server.output


def test_the_supervisor_relays_sighup_to_one_worker_at_a_time(
    tmp_path: Path, artifacts: Path, other_artifacts: Path
) -> None:
    install(artifacts, tmp_path)
    new = version(other_artifacts)
    with serve(tmp_path, HOUSING_DEVICE="cpu", HOUSING_WORKERS="2") as server:
        server.wait_ready()
        server.wait_for_output("worker 1 serving")
        server.wait_for_output("worker 0 serving")
        assert server.proc is not None
        install(other_artifacts, tmp_path)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output("SIGHUP: reloading 2 worker(s), one at a time")
        server.wait_for_output("worker 1: reload done")
        lines = server.output.splitlines()
        # One at a time: worker 1 swapped only after worker 0 said it was done.
        swaps = [i for i, line in enumerate(lines) if f"model {new} replaces" in line]
        done = [i for i, line in enumerate(lines) if "worker 0: reload done" in line]
        assert len(swaps) == 2 and len(done) == 1
        assert swaps[0] < done[0] < swaps[1]
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(10):  # new connections reach both workers
                answer = client.get("/health/ready")
                assert answer.headers["x-model-version"] == new
        assert server.terminate() == 0
