"""SageMaker (/ping, /invocations) and the Open Inference Protocol, against /predict's answers."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pandas as pd
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.http.app import prediction_docs
from app.http.openapi import DocumentationOnly
from modelspec.features import EXAMPLE_RECORD, RAW_COLUMNS
from tests.support.answers import refusals
from tests.support.bodies import CSV, JSON, csv_body, tensors
from tests.support.records import records


@pytest.fixture(scope="module")
def rows(housing_frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Twelve data-set rows, two of them without total_bedrooms."""
    missing = housing_frame[housing_frame["total_bedrooms"].isna()].head(2)
    return records(pd.concat([housing_frame.head(10), missing]))


def expected(client: TestClient, rows: list[dict[str, Any]]) -> list[float]:
    answer = client.post("/predict", json={"instances": rows})
    assert answer.status_code == 200
    values: list[float] = answer.json()["predictions"]
    return values


def test_ping_follows_readiness(client: TestClient) -> None:
    assert client.get("/ping").status_code == 200


def test_invocations_json_is_predict(client: TestClient, rows: list[dict[str, Any]]) -> None:
    answer = client.post("/invocations", json={"instances": rows})
    assert answer.json() == client.post("/predict", json={"instances": rows}).json()
    assert answer.json()["predictions"] == expected(client, rows)
    one = client.post("/invocations", json=rows[0])
    assert one.json() == client.post("/predict", json=rows[0]).json()
    assert one.json()["house_value"] == expected(client, rows[:1])[0]


@pytest.mark.parametrize("header", [False, True])
def test_invocations_csv_answers_csv_lines_in_order(
    client: TestClient, rows: list[dict[str, Any]], header: bool
) -> None:
    answer = client.post("/invocations", content=csv_body(rows, header), headers=CSV)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv"
    assert [float(v) for v in answer.text.splitlines()] == expected(client, rows)


def test_invocations_answer_follows_accept(client: TestClient, rows: list[dict[str, Any]]) -> None:
    as_json = client.post(
        "/invocations", content=csv_body(rows), headers={**CSV, "accept": "application/json"}
    )
    assert as_json.json()["predictions"] == expected(client, rows)
    as_csv = client.post("/invocations", json={"instances": rows}, headers={"accept": "text/csv"})
    assert [float(v) for v in as_csv.text.splitlines()] == expected(client, rows)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b"1,2,3\n", "line 1.row", "3 columns, expected 9"),
        (b"-122.2,37.8,41,880,129,322,126,abc,NEAR BAY\n", "line 1.median_income", "not a number"),
        (
            b"-122.2,37.8,41,880,129,322,126,8.3,NEAR BAY\n"
            b"-122.2,95,41,880,129,322,126,8.3,INLAND\n",
            "line 2.latitude",
            "less than or equal to 90",
        ),  # fmt: skip
        (b"-122.2,37.8,41,880,129,322,126,8.3,MOON\n", "line 1.ocean_proximity", "NEAR BAY"),
        (b"\n\n", "line 1.body", "no rows"),
        (b"\xff\xfe,1\n", "line 1.body", "not UTF-8"),
    ],
)
def test_bad_csv_names_the_line_and_field(
    client: TestClient, body: bytes, field: str, message: str
) -> None:
    (error,) = refusals(client.post("/invocations", content=body, headers=CSV))
    assert error["field"] == field
    assert message in error["message"]


def test_oip_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/housing/ready").json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["name"] == "housing-inference"
    meta = client.get("/v2/models/housing").json()
    assert meta["name"] == "housing"
    assert [i["name"] for i in meta["inputs"]] == list(RAW_COLUMNS)
    assert all(i["shape"] == [-1] for i in meta["inputs"])
    assert meta["outputs"][0] == {"name": "house_value", "datatype": "FP64", "shape": [-1]}


def test_oip_infer_json_is_predict(client: TestClient, rows: list[dict[str, Any]]) -> None:
    answer = client.post("/v2/models/housing/infer", json={"id": "r-1", "inputs": tensors(rows)})
    assert answer.status_code == 200
    body = answer.json()
    assert body["id"] == "r-1"
    assert body["model_name"] == "housing"
    out = body["outputs"][0]  # the price; its range follows (test_http_protocol_ranges)
    assert (out["name"], out["datatype"], out["shape"]) == ("house_value", "FP64", [len(rows)])
    assert out["data"] == expected(client, rows)


def test_oip_without_total_bedrooms_imputes_it(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    inputs = [t for t in tensors(rows) if t["name"] != "total_bedrooms"]
    answer = client.post("/v2/models/housing/infer", json={"inputs": inputs})
    imputed = [{**r, "total_bedrooms": None} for r in rows]
    assert answer.json()["outputs"][0]["data"] == expected(client, imputed)


def _with(inputs: list[dict[str, Any]], name: str, **change: Any) -> list[dict[str, Any]]:
    return [{**t, **change} if t["name"] == name else t for t in inputs]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t[:-1], "missing input(s): ocean_proximity"),
        (
            lambda t: [*t, {"name": "rooms", "shape": [1], "datatype": "FP32", "data": [1]}],
            "unknown input 'rooms'",
        ),  # fmt: skip
        (lambda t: _with(t, "latitude", shape=[3]), "has 3 rows, the others 12"),
        (lambda t: _with(t, "latitude", data=[1.0]), "shape says 12 values, data has 1"),
        (lambda t: _with(t, "latitude", datatype="BYTES"), "expected a numeric type"),
        (lambda t: _with(t, "latitude", shape=[2, 2]), "shape must be [N] or [N, 1]"),
        (lambda t: _with(t, "latitude", data=[95.0] * 12), "row 0.latitude"),
        (lambda t: _with(t, "ocean_proximity", data=["MOON"] * 12), "ocean_proximity"),
    ],
)
def test_oip_errors_are_400_with_a_reason(
    client: TestClient, rows: list[dict[str, Any]], mutate: Any, message: str
) -> None:
    answer = client.post("/v2/models/housing/infer", json={"inputs": mutate(tensors(rows))})
    assert answer.status_code == 400
    assert set(answer.json()) == {"error"}
    assert message in answer.json()["error"]


def test_oip_refuses_unknown_outputs_and_bad_json(client: TestClient) -> None:
    wrong = client.post(
        "/v2/models/housing/infer", json={"inputs": [], "outputs": [{"name": "price"}]}
    )
    assert wrong.status_code == 400
    assert "house_value" in wrong.json()["error"]
    broken = client.post("/v2/models/housing/infer", content=b"{", headers=JSON)
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]


def test_the_documentation_routes_are_never_dispatched(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    infer = {"json": {"inputs": tensors(rows[:2])}}
    bodies = {
        "/predict": {"json": rows[0]},
        "/invocations": {"content": csv_body(rows[:2]), "headers": CSV},
        "/v2/models/housing/infer": infer,
        "/v2/models/housing/versions/{version}/infer": infer,
    }
    version = client.get("/v2/models/housing").json()["versions"][0]
    routes = [r for r in prediction_docs(300).routes if isinstance(r, APIRoute)]
    assert sorted(r.path for r in routes) == sorted(bodies)
    for route in routes:
        # What dispatching one would do: a 500, which none of the requests below gets.
        with pytest.raises(DocumentationOnly):
            asyncio.run(route.endpoint())
        path = route.path.format(version=version)
        answer = client.post(path, **bodies[route.path])
        assert answer.status_code == 200, answer.text
        # The bare endpoint's 405 (FastAPI's would say "Method Not Allowed" without Allow).
        wrong = client.get(path)
        assert (wrong.status_code, wrong.headers.get("allow")) == (405, "POST")
        assert "use POST" in wrong.text


def served_version(client: TestClient) -> str:
    version: str = client.get("/v2/models/housing").json()["versions"][0]
    return version


def test_the_served_version_answers_as_the_unversioned_routes(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    version = served_version(client)
    base = f"/v2/models/housing/versions/{version}"
    assert client.get(base).json() == client.get("/v2/models/housing").json()
    ready = client.get(f"{base}/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    body = {"id": "v-1", "inputs": tensors(rows)}
    answer = client.post(f"{base}/infer", json=body, headers={"x-request-id": "v-1"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == client.post("/v2/models/housing/infer", json=body).json()
    assert answer.headers["x-model-version"] == version
    assert answer.headers["x-request-id"] == "v-1"


def test_another_version_is_a_404_in_the_protocols_format(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    version = served_version(client)
    text = (
        f"model 'housing' has no version '0000'; version {version} is served "
        "(leave model_version empty for the one in service)"
    )
    base = "/v2/models/housing/versions/0000"
    answers = [
        client.get(base),
        client.get(f"{base}/ready"),
        client.post(f"{base}/infer", json={"inputs": tensors(rows)}, headers={"x-request-id": "n"}),
    ]
    for answer in answers:
        assert (answer.status_code, answer.json()) == (404, {"error": text}), answer.request.url
    assert answers[2].headers["x-request-id"] == "n"
    metrics = client.get("/metrics").text
    route = 'route="/v2/models/housing/infer",status="404"'
    assert f"housing_requests_total{{{route}}} 1.0" in metrics
    assert 'housing_rejected_requests_total{reason="not_found"} 1.0' in metrics
    # The route's own checks come first, as on the unversioned path: method, then type.
    assert client.get(f"{base}/infer").status_code == 405
    typed = client.post(f"{base}/infer", content=b"x", headers=CSV)
    assert typed.status_code == 415


def test_a_long_version_or_name_is_quoted_only_in_part(client: TestClient) -> None:
    answers = [
        client.get(f"/v2/models/housing/versions/{'v' * 5000}"),
        client.post(f"/v2/models/housing/versions/{'v' * 5000}/infer", json={"inputs": []}),
        client.get(f"/v2/models/{'m' * 5000}"),
    ]
    for answer in answers:
        assert answer.status_code == 404 and "(5000 characters)" in answer.json()["error"]
        assert len(answer.content) < 400


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/v2/models/nope", 404, "unknown model 'nope': this server serves 'housing'"),
        ("GET", "/v2/models/nope/ready", 404, "unknown model 'nope'"),
        ("GET", "/v2/models/nope/versions/1", 404, "unknown model 'nope'"),
        ("POST", "/v2/models/nope/infer", 404, "unknown model 'nope'"),
        ("POST", "/v2/models/nope/versions/1/infer", 404, "unknown model 'nope'"),
        ("GET", "/v2/nothing", 404, "no route for GET /v2/nothing"),
        ("POST", "/v2/models/housing/versions/1/2/infer", 404, "no route for POST"),
        ("POST", "/v2/models/housing/versions//infer", 404, "no route for POST"),
        ("POST", "/v2/health/live", 405, "Method Not Allowed"),
    ],
)
def test_oip_http_errors_are_the_protocols_body(
    client: TestClient, method: str, path: str, status: int, error: str
) -> None:
    answer = client.request(method, path, json={"inputs": []})
    assert answer.status_code == status
    assert set(answer.json()) == {"error"} and answer.json()["error"].startswith(error)
    if status == 405:
        assert answer.headers["allow"] == "GET"


def test_other_paths_keep_fastapis_detail(client: TestClient) -> None:
    assert client.get("/nothing").json() == {"detail": "Not Found"}
    assert client.get("/v2x").json() == {"detail": "Not Found"}
    assert client.post("/health/live").json() == {"detail": "Method Not Allowed"}


def test_a_404_repeats_at_most_the_start_of_the_path(client: TestClient) -> None:
    long = client.get("/v2/" + "x" * 5000).json()["error"]
    assert long.startswith("no route for GET /v2/xxx") and "x..." in long and len(long) < 300


def _infer_json(client: TestClient, tensors_text: str) -> Any:
    """An infer request whose body is JSON text, as clients that allow NaN write it."""
    body = '{"inputs": ' + tensors_text + "}"
    return client.post("/v2/models/housing/infer", content=body, headers=JSON)


def _tensors_text(rows: list[dict[str, Any]], **literal: str) -> str:
    """``tensors(rows)`` as JSON text, with each named input's first value replaced by the
    given literal (``NaN``, ``Infinity``...)."""
    out = []
    for t in tensors(rows):
        text = orjson.dumps(t).decode()
        if t["name"] in literal:
            data = [literal[t["name"]], *(orjson.dumps(v).decode() for v in t["data"][1:])]
            text = text.replace(orjson.dumps(t["data"]).decode(), "[" + ",".join(data) + "]")
        out.append(text)
    return "[" + ",".join(out) + "]"


def test_a_nan_literal_is_a_missing_value_as_triton_reads_it(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    answer = _infer_json(client, _tensors_text(rows, total_bedrooms="NaN"))
    assert answer.status_code == 200, answer.text
    imputed = [{**rows[0], "total_bedrooms": None}, *rows[1:]]
    assert answer.json()["outputs"][0]["data"] == expected(client, imputed)


@pytest.mark.parametrize(
    ("literal", "name", "message"),
    [
        ("NaN", "latitude", "row 0.latitude: Input should be a finite number"),
        ("Infinity", "median_income", "row 0.median_income: Input should be a finite number"),
        ("-Infinity", "total_bedrooms", "row 0.total_bedrooms: Input should be a finite number"),
    ],
)
def test_nan_or_infinity_where_a_value_is_needed_is_refused_naming_it(
    client: TestClient, rows: list[dict[str, Any]], literal: str, name: str, message: str
) -> None:
    answer = _infer_json(client, _tensors_text(rows, **{name: literal}))
    assert answer.status_code == 400
    assert message in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[NaN" + b"[" * 100_000, "not valid JSON"),  # too deep for either parser
        (b'{"inputs": [], "id": "\\ud800", "x": NaN}', "not valid JSON"),  # a lone surrogate
        (b'{"inputs": [NaN], "id": "\xff"}', "not valid JSON"),  # not UTF-8
        (b'{"inputs": [NaN]', "not valid JSON"),
    ],
)
def test_the_nan_fallback_is_bounded_as_json_is(
    client: TestClient, body: bytes, message: str
) -> None:
    answer = client.post("/v2/models/housing/infer", content=body, headers=JSON)
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_predict_still_refuses_nan(client: TestClient) -> None:
    body = orjson.dumps({**EXAMPLE_RECORD, "total_bedrooms": 0})
    body = body.replace(b'"total_bedrooms":0', b'"total_bedrooms":NaN')
    assert b'"total_bedrooms":NaN' in body
    assert client.post("/predict", content=body, headers=JSON).status_code == 422
