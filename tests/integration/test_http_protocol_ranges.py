"""Price ranges on the Open Inference Protocol (outputs ``house_value_low``/``_high``, the
request's ``outputs`` and ``parameters.coverage``) and on ``/invocations`` CSV (``Accept:
text/csv;columns=3``, SageMaker's custom attributes), against the eager model's own bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.compose import create_app
from app.settings import Settings
from tests.support.bodies import CSV, csv_body, tensors
from tests.support.oracle import eager_bounds
from tests.support.records import records
from training.data import split_frame

INFER = "/v2/models/housing/infer"
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
RANGE_NAMES = ["house_value", "house_value_low", "house_value_high"]


@pytest.fixture(scope="module")
def rows(housing_frame: pd.DataFrame) -> pd.DataFrame:
    _, val = split_frame(housing_frame)
    return val.head(40)


def infer(client: TestClient, rows: pd.DataFrame, **request: Any) -> Any:
    answer = client.post(INFER, json={"inputs": tensors(records(rows)), **request})
    assert answer.status_code == 200, answer.text
    return answer.json()


def outputs(answer: dict[str, Any]) -> dict[str, list[float]]:
    return {o["name"]: o["data"] for o in answer["outputs"]}


def test_oip_answers_the_range_beside_the_price_at_the_default_coverage(
    client: TestClient, artifacts: Path, rows: pd.DataFrame
) -> None:
    answer = infer(client, rows)
    assert [o["name"] for o in answer["outputs"]] == RANGE_NAMES
    low, high = answer["outputs"][1:]
    assert low["parameters"] == high["parameters"] == {"coverage": 0.9}
    assert (low["datatype"], low["shape"]) == ("FP64", [len(rows)])
    got = outputs(answer)
    predicted = client.post("/predict", json={"instances": records(rows)}).json()
    assert got["house_value"] == predicted["predictions"]
    assert np.column_stack((got["house_value_low"], got["house_value_high"])).tolist() == [
        [r["low"], r["high"]] for r in predicted["intervals"]
    ]
    want = eager_bounds(artifacts, rows, 0.9)
    np.testing.assert_allclose(
        np.column_stack((got["house_value_low"], got["house_value_high"])),
        want,
        rtol=1e-4,
        atol=1.5,
    )


def test_oip_answers_the_outputs_asked_for_in_their_order_at_the_coverage_asked(
    client: TestClient, rows: pd.DataFrame
) -> None:
    asked = [{"name": "house_value_high"}, {"name": "house_value"}]
    answer = infer(client, rows, outputs=asked, parameters={"coverage": 0.5})
    assert [o["name"] for o in answer["outputs"]] == ["house_value_high", "house_value"]
    got = outputs(answer)
    at_half = client.post("/predict?coverage=0.5", json={"instances": records(rows)}).json()
    assert got["house_value_high"] == [r["high"] for r in at_half["intervals"]]
    assert got["house_value"] == at_half["predictions"]


def test_oip_asking_for_the_price_only_gets_only_the_price(
    client: TestClient, rows: pd.DataFrame
) -> None:
    only = infer(client, rows, outputs=[{"name": "house_value", "parameters": {"binary_data": 0}}])
    assert [o["name"] for o in only["outputs"]] == ["house_value"]
    assert "parameters" not in only["outputs"][0]
    none = infer(client, rows, parameters={"coverage": 0})
    assert [o["name"] for o in none["outputs"]] == ["house_value"]
    assert outputs(none)["house_value"] == outputs(only)["house_value"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"parameters": {"coverage": 0.42}}, "parameters.coverage: must be one of 0.5, 0.6"),
        ({"parameters": {"coverage": "0.9"}}, "parameters.coverage: must be one of"),
        ({"parameters": {"coverage": True}}, "parameters.coverage: must be one of"),
        ({"parameters": 5}, '"parameters" must be an object'),
        (
            {"outputs": [{"name": "house_value_low"}], "parameters": {"coverage": 0}},
            "a price range, and parameters.coverage is 0: ask with parameters.coverage, one of",
        ),
        ({"outputs": [{"name": "price"}]}, "each output is one of house_value, house_value_low"),
        ({"outputs": [{"name": "house_value"}] * 2}, "output 'house_value' asked twice"),
        (
            {"outputs": [{"name": "house_value", "parameters": 1}]},
            "output 'house_value': parameters must be an object",
        ),
    ],
    ids=["uncalibrated", "string", "bool", "parameters", "range at 0", "unknown", "twice", "op"],
)
def test_oip_refuses_a_coverage_or_outputs_it_cannot_answer_with_a_400(
    client: TestClient, rows: pd.DataFrame, request_: dict[str, Any], message: str
) -> None:
    answer = client.post(INFER, json={"inputs": tensors(records(rows.head(2))), **request_})
    assert answer.status_code == 400
    assert set(answer.json()) == {"error"}
    assert message in answer.json()["error"]


def test_oip_metadata_lists_the_range_outputs(client: TestClient) -> None:
    meta = client.get("/v2/models/housing").json()
    assert meta["outputs"] == [
        {"name": name, "datatype": "FP64", "shape": [-1]} for name in RANGE_NAMES
    ]


def test_with_ranges_off_by_default_oip_needs_a_coverage_for_them(
    artifacts: Path, rows: pd.DataFrame
) -> None:
    app = create_app(Settings(artifacts=artifacts, device="cpu", interval_coverage=0))
    with TestClient(app) as client:
        assert [o["name"] for o in infer(client, rows)["outputs"]] == ["house_value"]
        asked = infer(client, rows, parameters={"coverage": 0.8})
        assert [o["name"] for o in asked["outputs"]] == RANGE_NAMES
        refused = client.post(
            INFER,
            json={"inputs": tensors(records(rows)), "outputs": [{"name": "house_value_low"}]},
        )
        assert refused.status_code == 400
        assert "default coverage (HOUSING_INTERVAL_COVERAGE) is 0" in refused.json()["error"]


def test_invocations_csv_stays_one_value_a_line_unless_accept_asks_for_three_columns(
    client: TestClient, artifacts: Path, rows: pd.DataFrame
) -> None:
    body = csv_body(records(rows))
    plain = client.post("/invocations", content=body, headers=CSV)
    assert "coverage" not in plain.headers.get(ATTRIBUTES, "")  # warnings=N when flagged
    values = [float(v) for v in plain.text.splitlines()]
    three = client.post(
        "/invocations", content=body, headers={**CSV, "accept": "text/csv;columns=3"}
    )
    assert three.status_code == 200
    assert three.headers["content-type"] == "text/csv"
    assert three.headers[ATTRIBUTES].split(",")[0] == "coverage=0.9"
    table = np.array([[float(v) for v in line.split(",")] for line in three.text.splitlines()])
    assert table[:, 0].tolist() == values
    np.testing.assert_allclose(
        table[:, 1:], eager_bounds(artifacts, rows, 0.9), rtol=1e-4, atol=1.5
    )


def test_invocations_coverage_comes_from_the_query_else_the_custom_attributes(
    client: TestClient, rows: pd.DataFrame
) -> None:
    body = csv_body(records(rows.head(3)))
    wanted = {**CSV, "accept": "application/json", ATTRIBUTES: "trace-id=7; coverage=0.5"}
    by_attributes = client.post("/invocations", content=body, headers=wanted).json()
    assert {r["coverage"] for r in by_attributes["intervals"]} == {0.5}
    by_query = client.post("/invocations?coverage=0.8", content=body, headers=wanted).json()
    assert {r["coverage"] for r in by_query["intervals"]} == {0.8}
    csv = {**CSV, "accept": "text/csv;columns=3", ATTRIBUTES: "coverage=0.5"}
    three = client.post("/invocations", content=body, headers=csv)
    assert three.headers[ATTRIBUTES] == "coverage=0.5"
    lows = [float(line.split(",")[1]) for line in three.text.splitlines()]
    assert lows == [r["low"] for r in by_attributes["intervals"]]
    off = {**CSV, "accept": "application/json", ATTRIBUTES: "coverage=0"}
    assert list(client.post("/invocations", content=body, headers=off).json()) == ["predictions"]


def test_invocations_refuses_a_bad_coverage_attribute_and_unanswerable_csv_columns(
    client: TestClient, rows: pd.DataFrame
) -> None:
    body = csv_body(records(rows.head(2)))
    bad = client.post("/invocations", content=body, headers={**CSV, ATTRIBUTES: "coverage=0.3"})
    assert bad.status_code == 422
    (detail,) = bad.json()["detail"]
    assert detail["field"] == f"{ATTRIBUTES}.coverage"
    assert "must be one of 0.5" in detail["message"]
    two = client.post("/invocations", content=body, headers={**CSV, "accept": "text/csv;columns=2"})
    assert two.status_code == 406
    assert "columns is 1 (the value) or 3 (value,low,high)" in two.json()["detail"]
    no_range = client.post(
        "/invocations?coverage=0", content=body, headers={**CSV, "accept": "text/csv;columns=3"}
    )
    assert no_range.status_code == 406
    assert "needs a price range, and the coverage asked for is 0" in no_range.json()["detail"]


def test_the_schema_documents_the_range_outputs_and_csv_columns(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    shapes = schema["components"]["schemas"]
    assert "coverage" in shapes["InferRequestParameters"]["properties"]
    example = shapes["InferResponse"]["examples"][0]
    assert [o["name"] for o in example["outputs"]] == RANGE_NAMES
    invocations = schema["paths"]["/invocations"]["post"]
    assert "406" in invocations["responses"]
    assert (ATTRIBUTES, "header") in [(p["name"], p["in"]) for p in invocations["parameters"]]
    assert (
        "columns=3"
        in invocations["responses"]["200"]["content"]["text/csv"]["schema"]["description"]
    )
