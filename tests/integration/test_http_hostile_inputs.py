"""Hostile inputs that the service once let through (issue 26): unbounded error answers, prices
below zero, lenient numbers, paths in answers. Each test failed on c68630d."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from app.codecs.oip import flag_summary
from app.compose import create_app
from app.core.flags import VALUE_FLOOR
from app.settings import Settings
from modelspec.features import EXAMPLE_RECORD, RAW_COLUMNS
from tests.support.bodies import CSV, JSONL, tensors

RANGES = {**CSV, "accept": "text/csv;columns=3"}
INFER = "/v2/models/housing/infer"


@pytest.fixture(scope="module")
def client(artifacts: Path) -> Iterator[TestClient]:
    settings = Settings(artifacts=artifacts, device="cpu", max_error_details=7)
    with TestClient(create_app(settings)) as c:
        yield c


def csv_line(record: dict[str, Any]) -> str:
    return ",".join("" if record.get(c) is None else str(record[c]) for c in RAW_COLUMNS)


# Finding 2: an answer's size does not grow with the body's.


def test_a_body_of_bad_json_lines_gets_the_first_errors_and_the_count(
    client: TestClient,
) -> None:
    answer = client.post("/invocations", content=b"{}\n" * 200_000, headers=JSONL)
    assert answer.status_code == 422
    body = answer.json()
    assert len(body["detail"]) == 7
    assert body["detail"][0]["field"] == "line 1.longitude"
    # Reading stopped once the list was full: the count covers the lines read (a slice).
    assert (body["error_count"], body["checked_lines"]) == (2048 * 8, 2048)
    assert len(answer.content) < 4096


def test_a_body_of_bad_csv_rows_gets_the_first_errors_in_line_order(client: TestClient) -> None:
    good = csv_line(EXAMPLE_RECORD)
    bad_number = good.replace("880.0", "many")
    out_of_range = good.replace("37.88", "99")
    lines = [good, bad_number, out_of_range] * 20_000
    answer = client.post("/invocations", content="\n".join(lines), headers=CSV)
    assert answer.status_code == 422
    body = answer.json()
    fields = [d["field"] for d in body["detail"]]
    assert fields == [
        "line 2.total_rooms",
        "line 3.latitude",
        "line 5.total_rooms",
        "line 6.latitude",
        "line 8.total_rooms",
        "line 9.latitude",
        "line 11.total_rooms",
    ]
    assert (body["error_count"], body["checked_lines"]) == (13, 20)  # lines 1-20 read
    assert len(answer.content) < 4096


def test_a_json_batch_of_bad_records_lists_a_few(client: TestClient) -> None:
    answer = client.post("/predict", json={"instances": [{}] * 300})
    assert answer.status_code == 422
    assert len(answer.json()["detail"]) == 7 and answer.json()["error_count"] == 300 * 8
    assert "checked_lines" not in answer.json()  # a JSON body is checked whole
    oip = client.post(INFER, json={"inputs": tensors([{**EXAMPLE_RECORD, "latitude": 99}] * 300)})
    assert oip.status_code == 400
    assert oip.json()["error"].endswith("; and 293 more errors")


# Finding 3: a price is never negative, and always inside its own range.


@pytest.mark.parametrize("rooms", [0, 1e-400, 0.0])
def test_a_block_group_without_rooms_is_refused(client: TestClient, rooms: float) -> None:
    body = f'{{"longitude": -122.23, "latitude": 37.88, "housing_median_age": 41, "total_rooms": {rooms}, "total_bedrooms": 0, "population": 322, "households": 126, "median_income": 8.3252, "ocean_proximity": "NEAR BAY"}}'  # noqa: E501
    answer = client.post("/predict", content=body)
    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["detail"]] == ["total_rooms"]


def test_more_bedrooms_than_rooms_is_refused_naming_the_field(client: TestClient) -> None:
    record = {**EXAMPLE_RECORD, "total_bedrooms": 881.0}
    assert client.post("/predict", json=record).json()["detail"][0]["field"] == "total_bedrooms"
    batch = client.post("/predict", json={"instances": [EXAMPLE_RECORD] * 9 + [record]})
    assert batch.json()["detail"][0]["field"] == "instances.9.total_bedrooms"  # fast check too
    lines = client.post("/invocations", content=csv_line(record), headers=CSV)
    assert lines.json()["detail"][0]["field"] == "line 1.total_bedrooms"


def corners() -> list[dict[str, Any]]:
    """Accepted records at the corners of the bounds: each count at its smallest and largest,
    income at its bounds (bedrooms never above rooms)."""
    out = []
    extremes = {
        "total_rooms": (1e-3, 1e9),
        "total_bedrooms": (0.0, 1e9),
        "population": (0.0, 1e9),
        "households": (1e-3, 1e9),
        "median_income": (0.0, 1000.0),
    }
    for values in itertools.product(*extremes.values()):
        record = {**EXAMPLE_RECORD, **dict(zip(extremes, values, strict=True))}
        if record["total_bedrooms"] <= record["total_rooms"]:
            out.append(record)
    return out


def test_no_accepted_record_gets_a_price_below_the_floor_or_outside_its_range(
    client: TestClient,
) -> None:
    records = corners()
    answer = client.post("/predict", json={"instances": records})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    for value, interval in zip(body["predictions"], body["intervals"], strict=True):
        assert value >= VALUE_FLOOR
        assert interval["low"] <= value <= interval["high"]
    floored = {w["row"] for w in body["warnings"] if w["code"] == "below_floor"}
    assert floored == {i for i, v in enumerate(body["predictions"]) if v == VALUE_FLOOR}
    assert floored, "no corner reaches the floor: the test no longer tests it"

    # The same warning on the routes without a place for a list.
    text = "\n".join(csv_line(r) for r in records)
    csv = client.post("/invocations", content=text, headers=RANGES)
    assert csv.status_code == 200
    assert f"warnings={len(body['warnings'])}" in csv.headers["x-amzn-sagemaker-custom-attributes"]
    assert csv.headers["x-housing-warnings"] == flag_summary(body["warnings"])
    for line, value in zip(csv.text.splitlines(), body["predictions"], strict=True):
        low, high = map(float, line.split(",")[1:])
        assert float(line.split(",")[0]) == value and low <= value <= high
    oip = client.post(INFER, json={"inputs": tensors(records)}).json()
    assert oip["parameters"] == {
        "warning_count": len(body["warnings"]),
        "warnings": flag_summary(body["warnings"]),
    }
    assert oip["outputs"][0]["data"] == body["predictions"]


# Finding 8: strict ASCII numbers; a BOM is read.


@pytest.mark.parametrize("cell", ["1_000", "８８０", "٣", "0x10", "1e", "\u2003880"])
def test_csv_numbers_are_plain_ascii(client: TestClient, cell: str) -> None:
    line = csv_line(EXAMPLE_RECORD).replace("880.0", cell)
    answer = client.post("/invocations", content=line.encode(), headers=CSV)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "line 1.total_rooms"


@pytest.mark.parametrize("coverage", ["0_9", "０.９", "٠.٩"])
def test_the_coverage_query_is_a_plain_number(client: TestClient, coverage: str) -> None:
    answer = client.post("/predict", params={"coverage": coverage}, json=EXAMPLE_RECORD)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "coverage"


def test_a_leading_byte_order_mark_is_read(client: TestClient) -> None:
    header = ",".join(RAW_COLUMNS)
    csv = client.post(
        "/invocations",
        content=f"\ufeff{header}\n{csv_line(EXAMPLE_RECORD)}\n".encode(),
        headers=CSV,
    )
    assert csv.status_code == 200, csv.text
    lines = client.post(
        "/invocations", content=b"\xef\xbb\xbf" + _json_line(EXAMPLE_RECORD), headers=JSONL
    )
    assert lines.status_code == 200, lines.text


def _json_line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


# Finding 9: no path of the host in an answer.


def test_the_model_page_names_the_training_data_without_its_folder(
    client: TestClient, housing_csv: Path
) -> None:
    data = client.get("/v1/models/housing").json()["training"]["data"]
    assert data == housing_csv.name  # housing.csv.gz, the embedded copy, unless HOUSING_DATA


# Finding 11: one record, one price.


def test_one_record_gets_one_price_alone_in_a_batch_and_on_every_route(
    client: TestClient,
) -> None:
    alone = client.post("/predict", json=EXAMPLE_RECORD).json()
    second = {**EXAMPLE_RECORD, "median_income": 3.5}
    for size in (2, 3, 5, 64):
        batch = client.post(
            "/predict", json={"instances": [EXAMPLE_RECORD] + [second] * (size - 1)}
        )
        assert batch.json()["predictions"][0] == alone["house_value"]
        assert batch.json()["intervals"][0] == alone["interval"]
    csv = client.post("/invocations", content=csv_line(EXAMPLE_RECORD), headers=RANGES).text
    assert csv == f"{alone['house_value']},{alone['interval']['low']},{alone['interval']['high']}\n"
    oip = client.post(INFER, json={"inputs": tensors([EXAMPLE_RECORD, second])}).json()
    assert [o["data"][0] for o in oip["outputs"]] == [
        alone["house_value"],
        alone["interval"]["low"],
        alone["interval"]["high"],
    ]
