"""``make loadcheck`` in small: 2,000 mixed requests at concurrency 64 against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from reliability.loadcheck import LoadcheckReport, check_answer, loadcheck
from reliability.server import free_port, serve
from reliability.workload import Request, read_many


def test_every_concurrent_client_gets_its_own_right_answer(
    artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    with serve(artifacts, HOUSING_DEVICE="cpu", HOUSING_GRPC_PORT=str(free_port())) as server:
        server.wait_ready()
        report, rpc = loadcheck(
            artifacts,
            housing_frame,
            server.url,
            2000,
            64,
            grpc_target=server.grpc_target,
            grpc_count=500,
        )
        assert server.terminate() == 0
    print("\n" + "\n".join(report.lines() + rpc.lines()))
    assert report.passed, report.lines()
    # gRPC: every call answered OK and equal to the offline model, ranges included.
    assert rpc.passed, rpc.lines()
    assert rpc.statuses == {"OK": 500} and rpc.ranges == rpc.rows > 500
    assert report.statuses == {200: 2000}
    # All three protocols took part, with single and multi-row requests.
    assert set(report.by_route) == {"/predict", "/invocations", "/v2/models/housing/infer"}
    assert report.rows > 2000
    assert 0 < report.worst_relative_error <= 1e-5
    # Every row carried its range but those of one-value-a-line CSV answers.
    assert 0.8 * report.rows < report.ranges < report.rows


def test_the_check_catches_swapped_rows_and_wrong_statuses() -> None:
    request = Request("/predict", b"", "application/json", np.array([[100.0], [200.0]]), read_many)
    report = LoadcheckReport(requests=3)
    check_answer(request, 200, b'{"predictions": [100.0, 200.0]}', report, 0)
    assert not report.wrong
    check_answer(request, 200, b'{"predictions": [200.0, 100.0]}', report, 1)
    check_answer(request, 503, b'{"detail": "overloaded"}', report, 2)
    assert len(report.wrong) == 2 and not report.passed


def test_the_check_catches_a_range_from_another_row_and_a_missing_one() -> None:
    want = np.array([[100.0, 80.0, 120.0], [200.0, 150.0, 250.0]])
    request = Request("/predict", b"", "application/json", want, read_many)
    report = LoadcheckReport(requests=3)

    def answer(ranges: list[tuple[float, float]] | None) -> bytes:
        body: dict[str, object] = {"predictions": [100.0, 200.0]}
        if ranges is not None:
            body["intervals"] = [{"low": lo, "high": hi, "coverage": 0.9} for lo, hi in ranges]
        return json.dumps(body).encode()

    check_answer(request, 200, answer([(80.0, 120.0), (150.0, 250.0)]), report, 0)
    assert not report.wrong and report.ranges == 2
    check_answer(request, 200, answer([(150.0, 250.0), (80.0, 120.0)]), report, 1)
    assert "row 0's range off by $130.00" in report.wrong[-1]
    check_answer(request, 200, answer(None), report, 2)
    assert "2 rows x 1 for 2 x 3" in report.wrong[-1]
