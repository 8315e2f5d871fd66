"""Parity and warm-up on a real XLA device (torch-xla's CPU client here, PJRT_DEVICE=CPU)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch_xla.debug.metrics as met
from fastapi.testclient import TestClient

from app.compose import create_app
from app.core.runtime import ModelRuntime
from app.settings import Settings
from modelspec.features import EXAMPLE_RECORD
from tests.support.oracle import eager_dollars
from tests.support.records import records
from tests.support.server import serve
from training.data import split_frame


@pytest.fixture(scope="module")
def validation_rows(housing_frame: pd.DataFrame) -> pd.DataFrame:
    _, val = split_frame(housing_frame)
    return pd.concat([val.head(190), val[val["total_bedrooms"].isna()].head(10)])


@pytest.fixture(scope="module")
def xla_client(artifacts: Path) -> Iterator[tuple[TestClient, ModelRuntime]]:
    settings = Settings(artifacts=artifacts, device="xla", max_instances=300)
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime)) as client:
        yield client, runtime


def _compilations() -> float:
    data = met.metric_data("CompileTime")
    return data[0] if data else 0


def test_served_predictions_on_xla_equal_the_eager_model(
    xla_client: tuple[TestClient, ModelRuntime], artifacts: Path, validation_rows: pd.DataFrame
) -> None:
    client, runtime = xla_client
    assert runtime.device == "xla"
    response = client.post("/predict", json={"instances": records(validation_rows)})
    assert response.status_code == 200
    served = np.array(response.json()["predictions"])
    np.testing.assert_allclose(served, eager_dollars(artifacts, validation_rows), rtol=1e-5)


def test_no_compilation_after_warm_up(xla_client: tuple[TestClient, ModelRuntime]) -> None:
    client, _ = xla_client
    before = _compilations()
    assert before >= 7  # warm-up compiled every bucket: 1, 2, 4, ..., 64
    for n in (1, 3, 5, 17, 33, 64, 65, 100, 300):
        body = {"instances": [{**EXAMPLE_RECORD, "median_income": 1 + i % 9} for i in range(n)]}
        response = client.post("/predict", json=body)
        assert response.status_code == 200
        assert len(response.json()["predictions"]) == n
    assert _compilations() == before


def test_auto_picks_xla_when_torch_xla_is_installed(artifacts: Path) -> None:
    with serve(artifacts, HOUSING_DEVICE="auto", PJRT_DEVICE="CPU") as server:
        server.wait_ready(timeout=120)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/health/ready").json()["device"] == "xla"
            value = client.post("/predict", json=EXAMPLE_RECORD).json()["house_value"]
        assert server.terminate() == 0
    assert value > 0
    assert "device xla (HOUSING_DEVICE=auto)" in server.output
