"""Price ranges on ``/predict`` and ``/invocations``: the eager model's own, at the coverage
asked for, through the real factory, artifacts and CPU device."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.compose import create_app
from app.errors import StartupError
from app.settings import Settings
from modelspec.features import EXAMPLE_RECORD
from modelspec.intervals import COVERAGES
from tests.support.oracle import eager_bounds
from tests.support.records import records
from training.data import split_frame


@pytest.fixture(scope="module")
def validation_rows(housing_frame: pd.DataFrame) -> pd.DataFrame:
    _, val = split_frame(housing_frame)
    return val.head(150)


def _bounds(answer: dict[str, object], key: str = "intervals") -> np.ndarray:
    ranges = answer[key]
    assert isinstance(ranges, list)
    return np.array([[r["low"], r["high"]] for r in ranges])


@pytest.mark.parametrize("coverage", [0.8, 0.95])
def test_served_ranges_are_the_eager_models(
    client: TestClient, artifacts: Path, validation_rows: pd.DataFrame, coverage: float
) -> None:
    answer = client.post(
        f"/predict?coverage={coverage}", json={"instances": records(validation_rows)}
    ).json()
    assert len(answer["intervals"]) == len(answer["predictions"]) == len(validation_rows)
    assert {r["coverage"] for r in answer["intervals"]} == {coverage}
    want = eager_bounds(artifacts, validation_rows, coverage)
    # The point within compile's $1; the scale within 0.01% (compile's log tolerance).
    np.testing.assert_allclose(_bounds(answer), want, rtol=1e-4, atol=1.5)


def test_the_default_range_holds_the_point_and_widens_with_coverage(client: TestClient) -> None:
    answer = client.post("/predict", json=EXAMPLE_RECORD).json()
    assert list(answer) == ["house_value", "interval"]
    assert answer["interval"]["coverage"] == 0.9  # HOUSING_INTERVAL_COVERAGE's default
    previous = (answer["house_value"], answer["house_value"])
    for coverage in COVERAGES:
        r = client.post(f"/predict?coverage={coverage}", json=EXAMPLE_RECORD).json()["interval"]
        assert 0 <= r["low"] < answer["house_value"] < r["high"]
        assert r["low"] <= previous[0] and r["high"] >= previous[1], coverage  # nested
        previous = (r["low"], r["high"])


def test_coverage_zero_leaves_ranges_out(client: TestClient) -> None:
    assert list(client.post("/predict?coverage=0", json=EXAMPLE_RECORD).json()) == ["house_value"]
    batch = client.post("/predict?coverage=0", json={"instances": [EXAMPLE_RECORD] * 2}).json()
    assert list(batch) == ["predictions"]


@pytest.mark.parametrize("query", ["coverage=0.42", "coverage=ninety", "coverage=1"])
def test_an_uncalibrated_coverage_is_a_422_naming_the_calibrated_ones(
    client: TestClient, query: str
) -> None:
    answer = client.post(f"/predict?{query}", json=EXAMPLE_RECORD)
    assert answer.status_code == 422
    (detail,) = answer.json()["detail"]
    assert detail["field"] == "coverage"
    assert detail["message"] == (
        "must be one of 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, or 0 for no intervals"
    )


def test_invocations_json_carries_the_range_and_csv_stays_one_value_a_line(
    client: TestClient,
) -> None:
    answer = client.post("/invocations?coverage=0.8", json=EXAMPLE_RECORD).json()
    assert answer["interval"]["coverage"] == 0.8
    assert answer["interval"]["low"] < answer["house_value"] < answer["interval"]["high"]
    line = ",".join(str(EXAMPLE_RECORD[k]) for k in EXAMPLE_RECORD)
    csv = client.post("/invocations", content=line, headers={"Content-Type": "text/csv"})
    assert csv.status_code == 200
    assert csv.text == f"{answer['house_value']}\n"


def test_the_default_coverage_is_a_setting(artifacts: Path) -> None:
    app = create_app(Settings(artifacts=artifacts, device="cpu", interval_coverage=0.8))
    with TestClient(app) as client:
        assert client.post("/predict", json=EXAMPLE_RECORD).json()["interval"]["coverage"] == 0.8


def test_an_uncalibrated_default_coverage_stops_startup_with_the_choices(artifacts: Path) -> None:
    app = create_app(Settings(artifacts=artifacts, device="cpu", interval_coverage=0.42))
    refused = r"has 0\.5, 0\.6, .*0\.99 \(or 0 for no ranges\)"
    with pytest.raises(StartupError, match=refused), TestClient(app):
        pass


def test_ranges_are_never_below_zero(client: TestClient) -> None:
    cheap = {**EXAMPLE_RECORD, "median_income": 0.5, "longitude": -118.0, "latitude": 34.0}
    r = client.post("/predict?coverage=0.99", json=cheap).json()["interval"]
    assert r["low"] >= 0 and math.isfinite(r["high"])


def test_a_row_far_outside_the_data_gets_a_finite_range(client: TestClient) -> None:
    # The scale head extrapolates without bound out there; its scale is clamped to the
    # calibration rows' (found by the schema fuzzer: an infinite bound answered as null).
    far = {
        **EXAMPLE_RECORD,
        "total_rooms": 8e8,
        "population": 6e8,
        "households": 9e8,
        "median_income": 900.0,
        "latitude": -90.0,
    }
    answer = client.post("/predict", json={"instances": [far, EXAMPLE_RECORD]})
    assert answer.status_code == 200
    for r in answer.json()["intervals"]:
        assert 0 <= r["low"] <= r["high"] and math.isfinite(r["high"])


def test_the_model_summary_lists_the_coverages_a_request_may_ask_for(client: TestClient) -> None:
    info = client.get("/v1/models/housing").json()["intervals"]
    assert info["coverages"] == list(COVERAGES)
    assert info["default_coverage"] == 0.9
    assert info["method"].startswith("split conformal")


def test_the_schema_documents_the_coverage_query_and_the_ranges(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for route in ("/predict", "/invocations"):
        params = schema["paths"][route]["post"]["parameters"]
        assert ("coverage", "query") in [(p["name"], p["in"]) for p in params], route
    shapes = schema["components"]["schemas"]
    assert set(shapes["PriceRange"]["properties"]) == {"low", "high", "coverage"}
    assert "interval" in shapes["HouseValue"]["properties"]
    assert shapes["HouseValue"]["examples"][0]["interval"]["coverage"] == 0.9
    assert "intervals" in shapes["Predictions"]["properties"]
