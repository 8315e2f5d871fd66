"""``make loadcheck`` in small: 2,000 mixed requests at concurrency 64 against a real server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reliability.loadcheck import LoadcheckReport, _check, loadcheck
from reliability.server import serve
from reliability.workload import Request, _read_many


def test_every_concurrent_client_gets_its_own_right_answer(
    artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    with serve(artifacts, HOUSING_DEVICE="cpu") as server:
        server.wait_ready()
        report = loadcheck(artifacts, housing_frame, server.url, count=2000, concurrency=64)
        assert server.terminate() == 0
    print("\n" + "\n".join(report.lines()))
    assert report.passed, report.lines()
    assert report.statuses == {200: 2000}
    # All three protocols took part, with single and multi-row requests.
    assert set(report.by_route) == {"/predict", "/invocations", "/v2/models/housing/infer"}
    assert report.rows > 2000
    assert 0 < report.worst_relative_error <= 1e-5


def test_the_check_catches_swapped_rows_and_wrong_statuses() -> None:
    request = Request("/predict", b"", "application/json", np.array([100.0, 200.0]), _read_many)
    report = LoadcheckReport(requests=3)
    _check(request, 200, b'{"predictions": [100.0, 200.0]}', report, 0)
    assert not report.wrong
    _check(request, 200, b'{"predictions": [200.0, 100.0]}', report, 1)
    _check(request, 503, b'{"detail": "overloaded"}', report, 2)
    assert len(report.wrong) == 2 and not report.passed
