"""SageMaker Batch Transform's largest default request on a real server: a 6 MiB ``MultiRecord``
CSV body (``SplitType=Line``), answered one line per line, in order (``AssembleWith=Line``)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from app.settings import Settings
from modelspec.features import RAW_COLUMNS
from tests.support.oracle import eager_dollars
from tests.support.server import serve

MAX_PAYLOAD = 6 * 1024 * 1024  # MaxPayloadInMB's default


def csv_lines(frame: pd.DataFrame) -> list[bytes]:
    cells = frame[list(RAW_COLUMNS)].astype(object).where(frame[list(RAW_COLUMNS)].notna(), "")
    return [",".join(map(str, row)).encode() + b"\n" for row in cells.itertuples(index=False)]


def six_mib_body(frame: pd.DataFrame) -> tuple[bytes, list[int]]:
    """As many whole lines of the data set, shuffled anew each pass, as fit in 6 MiB; and
    each line's row in ``frame``."""
    lines = csv_lines(frame)
    rng = np.random.default_rng(17)
    body, rows, size = [], [], 0
    while True:
        for i in rng.permutation(len(lines)):
            if size + len(lines[i]) > MAX_PAYLOAD:
                return b"".join(body), rows
            body.append(lines[i])
            rows.append(int(i))
            size += len(lines[i])


def test_a_six_mib_csv_is_answered_line_for_line_in_order(
    artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    assert Settings.model_fields["max_body_bytes"].default == MAX_PAYLOAD
    body, rows = six_mib_body(housing_frame)
    assert len(body) > MAX_PAYLOAD - 200 and len(rows) > 100_000
    expected = eager_dollars(artifacts, housing_frame)
    small: list[int] = []
    with serve(artifacts, HOUSING_DEVICE="cpu") as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=120) as client:
            record = housing_frame[list(RAW_COLUMNS)].head(1).to_dict(orient="records")[0]
            record = {k: (None if v != v else v) for k, v in record.items()}  # NaN -> null

            def online() -> None:  # requests of other users, served between its windows
                with httpx.Client(base_url=server.url, timeout=60) as other:
                    for _ in range(20):
                        small.append(other.post("/predict", json=record).status_code)

            beside = threading.Thread(target=online)
            beside.start()
            answer = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
            beside.join()
            too_big = client.post(
                "/invocations", content=body + b"x\n", headers={"content-type": "text/csv"}
            )
    assert answer.status_code == 200, answer.text[:500]
    lines = answer.text.splitlines()
    assert len(lines) == len(rows)
    values = np.array([float(v) for v in lines])
    np.testing.assert_allclose(values, expected[rows], rtol=1e-5)
    assert small == [200] * 20
    assert too_big.status_code == 413
    assert "HOUSING_MAX_BODY_BYTES" in too_big.json()["detail"]
