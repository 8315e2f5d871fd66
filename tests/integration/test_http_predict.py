"""``POST /predict`` through the real factory, the real artifacts and the CPU device."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.compose import create_app
from app.core.runtime import ModelRuntime
from app.errors import StartupError
from app.settings import Settings
from modelspec.features import EXAMPLE_RECORD
from modelspec.manifest import ARTIFACT_FILE, Manifest
from tests.support.oracle import eager_dollars
from tests.support.records import records
from training.data import split_frame


@pytest.fixture(scope="module")
def validation_rows(housing_frame: pd.DataFrame) -> pd.DataFrame:
    """200 validation rows: the first 190, and 10 whose total_bedrooms is missing."""
    _, val = split_frame(housing_frame)
    missing = val[val["total_bedrooms"].isna()]
    return pd.concat([val.head(190), missing.head(10)])


def test_served_predictions_equal_the_eager_model(
    client: TestClient, artifacts: Path, validation_rows: pd.DataFrame
) -> None:
    assert validation_rows["total_bedrooms"].isna().sum() >= 10
    response = client.post("/predict", json={"instances": records(validation_rows)})
    assert response.status_code == 200
    served = np.array(response.json()["predictions"])
    np.testing.assert_allclose(served, eager_dollars(artifacts, validation_rows), rtol=1e-5)


def test_one_record_gets_one_house_value(
    client: TestClient, artifacts: Path, validation_rows: pd.DataFrame
) -> None:
    row = validation_rows.head(1)
    response = client.post("/predict", json=records(row)[0])
    assert response.status_code == 200
    assert list(response.json()) == ["house_value", "interval"]
    assert response.json()["house_value"] == pytest.approx(eager_dollars(artifacts, row)[0], 1e-5)


def test_absent_and_null_bedrooms_are_imputed_alike(client: TestClient) -> None:
    absent = {k: v for k, v in EXAMPLE_RECORD.items() if k != "total_bedrooms"}
    null = {**EXAMPLE_RECORD, "total_bedrooms": None}
    values = [client.post("/predict", json=body).json()["house_value"] for body in (absent, null)]
    assert values[0] == values[1]
    assert values[0] != client.post("/predict", json=EXAMPLE_RECORD).json()["house_value"]


def test_instances_come_back_in_order(client: TestClient) -> None:
    incomes = [1.0, 8.0, 3.0, 12.0]
    batch = [{**EXAMPLE_RECORD, "median_income": m} for m in incomes]
    together = client.post("/predict", json={"instances": batch}).json()["predictions"]
    alone = [client.post("/predict", json=b).json()["house_value"] for b in batch]
    assert together == pytest.approx(alone, rel=1e-6)
    assert len(set(together)) == 4


def test_readiness_reports_device_and_model_version(client: TestClient, artifacts: Path) -> None:
    response = client.get("/health/ready")
    manifest = Manifest.load(artifacts)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "device": "cpu",
        "model_version": manifest.model_version,
        "target": "cpu",
        "batch_sizes": [1, 2, 4, 8, 16, 32, 64],
    }
    assert client.get("/health/live").json() == {"status": "alive"}


def test_stopping_turns_readiness_503_while_requests_still_drain(artifacts: Path) -> None:
    settings = Settings(artifacts=artifacts, device="cpu")
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime)) as client:
        assert client.get("/health/ready").status_code == 200
        runtime.begin_stopping()
        for probe in ("/health/ready", "/ping", "/v2/health/ready", "/v2/models/housing/ready"):
            assert client.get(probe).status_code == 503, probe
        assert client.get("/health/ready").json()["status"] == "stopping"
        assert client.get("/health/live").status_code == 200
        # Requests already on their way (a load balancer has not seen the 503 yet) are answered.
        assert client.post("/predict", json=EXAMPLE_RECORD).status_code == 200
        assert client.portal is not None
        client.portal.call(_stop_batcher, runtime)  # the lifespan shutdown's first step
        refused = client.post("/predict", json=EXAMPLE_RECORD)
        assert refused.status_code == 503
        assert refused.json() == {"detail": "the batcher is not running"}
        assert refused.headers["retry-after"] == "1"


async def _stop_batcher(runtime: ModelRuntime) -> None:
    assert runtime.batcher is not None
    await runtime.batcher.stop()


def test_a_bad_artifact_stops_startup_with_a_hint(artifacts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "artifacts"
    shutil.copytree(artifacts, folder)
    (folder / ARTIFACT_FILE).write_bytes(b"not a model")
    app = create_app(Settings(artifacts=folder, device="cpu"))
    with pytest.raises(StartupError, match="sha256.*\nHint:"), TestClient(app):
        pass


def test_docs_show_request_examples(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"one record", "instances"}
    assert spec["components"]["schemas"]["House"]["required"] == [
        "longitude",
        "latitude",
        "housing_median_age",
        "total_rooms",
        "population",
        "households",
        "median_income",
        "ocean_proximity",
    ]
    assert spec["components"]["schemas"]["Instances"]["properties"]["instances"]["maxItems"] == 300
