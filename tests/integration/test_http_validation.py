"""Bad input gets a 422 naming the field and the reason: never a 500, never a stack trace."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelspec.features import EXAMPLE_RECORD
from tests.support.answers import refusals
from tests.support.bodies import JSON

GOOD: dict[str, Any] = dict(EXAMPLE_RECORD)


def _detail(field: str, message: str, type_: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": type_}


CASES: list[tuple[str, Any, list[dict[str, str]]]] = [
    (
        "negative count",
        {**GOOD, "population": -1},
        [_detail("population", "Input should be greater than or equal to 0", "greater_than_equal")],
    ),
    (
        "zero households",
        {**GOOD, "households": 0},
        [_detail("households", "Input should be greater than 0", "greater_than")],
    ),
    (
        "unknown category",
        {**GOOD, "ocean_proximity": "LAKE"},
        [
            _detail(
                "ocean_proximity",
                "Input should be '<1H OCEAN', 'INLAND', 'ISLAND', 'NEAR BAY' or 'NEAR OCEAN'",
                "literal_error",
            )
        ],
    ),
    (
        "unknown field",
        {**GOOD, "pool": True},
        [_detail("pool", "Extra inputs are not permitted", "extra_forbidden")],
    ),
    (
        "missing field",
        {k: v for k, v in GOOD.items() if k != "latitude"},
        [_detail("latitude", "Field required", "missing")],
    ),
    (
        "number as a string",
        {**GOOD, "median_income": "8.3"},
        [_detail("median_income", "Input should be a valid number", "float_type")],
    ),
    (
        "boolean for a number",
        {**GOOD, "total_rooms": True},
        [_detail("total_rooms", "Input should be a valid number", "float_type")],
    ),
    (
        "null where not allowed",
        {**GOOD, "households": None},
        [_detail("households", "Input should be a valid number", "float_type")],
    ),
    (
        "latitude out of range",
        {**GOOD, "latitude": 91},
        [_detail("latitude", "Input should be less than or equal to 90", "less_than_equal")],
    ),
    (
        "a bad record inside instances",
        {"instances": [GOOD, {**GOOD, "households": -3}]},
        [_detail("instances.1.households", "Input should be greater than 0", "greater_than")],
    ),
    (
        "empty instances",
        {"instances": []},
        [
            _detail(
                "instances",
                "List should have at least 1 item after validation, not 0",
                "too_short",
            )
        ],
    ),
    (
        "too many instances",
        {"instances": [GOOD] * 301},
        [
            _detail(
                "instances",
                "List should have at most 300 items after validation, not 301",
                "too_long",
            )
        ],
    ),
    (
        "a JSON array",
        [GOOD],
        [
            _detail(
                "body",
                'the body must be a JSON object: one record, or {"instances": [record, ...]}',
                "invalid_body",
            )
        ],
    ),
]


@pytest.mark.parametrize(("body", "detail"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_bodies_get_422_with_field_and_reason(
    client: TestClient, body: Any, detail: list[dict[str, str]]
) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json() == {"detail": detail}


@pytest.mark.parametrize(
    ("raw", "field", "type_"),
    [
        (b'{"longitude": NaN}', "longitude", "finite_number"),
        (b'{"longitude": Infinity}', "longitude", "finite_number"),
        (b'{"longitude": 1e400}', "longitude", "finite_number"),
        (b"", "body", "json_invalid"),
        (b"{not json", "body", "json_invalid"),
    ],
)
def test_non_finite_numbers_and_broken_json_are_refused(
    client: TestClient, raw: bytes, field: str, type_: str
) -> None:
    response = client.post("/predict", content=raw, headers=JSON)
    first = refusals(response)[0]
    assert (first["field"], first["type"]) == (field, type_)
    assert "Traceback" not in response.text


def test_the_server_still_answers_after_bad_input(client: TestClient) -> None:
    for _, body, _ in CASES:
        client.post("/predict", json=body)
    assert client.get("/health/ready").status_code == 200
    assert client.post("/predict", json=GOOD).status_code == 200
