"""``/invocations`` as SageMaker Batch Transform calls it: one record a line (CSV or JSON Lines),
more lines than ``HOUSING_MAX_INSTANCES``, and the answer's format negotiated from ``Accept``."""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from modelspec.features import EXAMPLE_RECORD, RAW_COLUMNS
from tests.support.answers import refusals
from tests.support.bodies import CSV, JSONL, csv_body
from tests.support.records import records


@pytest.fixture(scope="module")
def many(housing_frame: pd.DataFrame) -> list[dict[str, Any]]:
    """1,000 data-set rows (the client's HOUSING_MAX_INSTANCES is 300), some without
    total_bedrooms, one far above the training range of median_income (a warning)."""
    frame = housing_frame.sample(1000, random_state=3).reset_index(drop=True)
    frame.loc[7, "median_income"] = 40.0
    return records(frame)


def predict(client: TestClient, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``/predict``'s answer for each row alone (its value, interval and warnings), 300 rows
    a request."""
    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), 300):
        answer = client.post("/predict", json={"instances": rows[start : start + 300]}).json()
        for i, value in enumerate(answer["predictions"]):
            one: dict[str, Any] = {"house_value": value, "interval": answer["intervals"][i]}
            notes = [
                {k: w[k] for k in ("field", "code", "message")}
                for w in answer.get("warnings", [])
                if w["row"] == i
            ]
            if notes:
                one["warnings"] = notes
            out.append(one)
    return out


def jsonl_body(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def test_more_csv_lines_than_max_instances_are_answered_line_for_line(
    client: TestClient, many: list[dict[str, Any]]
) -> None:
    answer = client.post("/invocations", content=csv_body(many, header=True), headers=CSV)
    assert answer.status_code == 200, answer.text
    lines = answer.text.splitlines()
    assert len(lines) == len(many)
    assert [float(v) for v in lines] == [a["house_value"] for a in predict(client, many)]
    three = client.post(
        "/invocations",
        content=csv_body(many),
        headers={**CSV, "accept": "text/csv;columns=3"},
    )
    bounds = [[float(c) for c in line.split(",")] for line in three.text.splitlines()]
    assert bounds == [
        [a["house_value"], a["interval"]["low"], a["interval"]["high"]]
        for a in predict(client, many)
    ]


def test_json_lines_in_and_out_one_object_a_line(
    client: TestClient, many: list[dict[str, Any]]
) -> None:
    answer = client.post("/invocations", content=jsonl_body(many), headers=JSONL)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/jsonlines"
    assert answer.text.endswith("\n")
    lines = [orjson.loads(line) for line in answer.text.splitlines()]
    assert lines == predict(client, many)
    assert "warnings" in lines[7]  # the row far above the training range
    as_csv = client.post(
        "/invocations", content=jsonl_body(many[:5]), headers={**JSONL, "accept": "text/csv"}
    )
    assert [float(v) for v in as_csv.text.splitlines()] == [a["house_value"] for a in lines[:5]]
    from_csv = client.post(
        "/invocations",
        content=csv_body(many[:5]),
        headers={**CSV, "accept": "application/jsonlines"},
    )
    assert [orjson.loads(line) for line in from_csv.text.splitlines()] == lines[:5]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b'{"longitude": -122.2}\nnot json\n', "line 1.latitude", "Field required"),
        (b"not json\n" + orjson.dumps(EXAMPLE_RECORD) + b"\n", "line 1.row", "not JSON"),
        (b"[1, 2]\n", "line 1.row", "a JSON object is expected, not list"),
        (b"\n\n", "line 1.body", "no rows"),
    ],
)
def test_a_bad_json_line_is_named_by_its_line(
    client: TestClient, body: bytes, field: str, message: str
) -> None:
    answer = client.post("/invocations", content=body, headers=JSONL)
    detail = refusals(answer)[0]  # the first error by line
    assert detail["field"] == field and message in detail["message"]


def test_an_invalid_field_on_a_json_line_is_named_by_its_line(
    client: TestClient, many: list[dict[str, Any]]
) -> None:
    bad = [dict(r) for r in many[:400]]
    bad[350]["latitude"] = 95
    answer = client.post("/invocations", content=b"\n" + jsonl_body(bad), headers=JSONL)
    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["detail"]] == ["line 352.latitude"]


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("application/jsonlines", "application/jsonlines"),
        ("application/jsonl", "application/jsonlines"),
        ("text/csv;q=0.5, application/json", "application/json"),
        ("application/json;q=0.2, text/csv;q=0.9", "text/csv"),
        ("application/xml, text/csv", "text/csv"),
        ("*/*", "text/csv"),
        ("application/*", "application/json"),
        ("text/html;q=1, */*;q=0.1", "text/csv"),
    ],
)
def test_the_answer_is_the_first_producible_format_of_accept(
    client: TestClient, many: list[dict[str, Any]], accept: str, kind: str
) -> None:
    answer = client.post(
        "/invocations", content=csv_body(many[:3]), headers={**CSV, "accept": accept}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == kind


@pytest.mark.parametrize("accept", ["application/xml", "text/html, image/png", "text/csv;q=0"])
def test_an_accept_that_cannot_be_produced_is_a_406(
    client: TestClient, many: list[dict[str, Any]], accept: str
) -> None:
    answer = client.post(
        "/invocations", content=csv_body(many[:3]), headers={**CSV, "accept": accept}
    )
    assert answer.status_code == 406
    message = answer.json()["detail"]
    assert "application/jsonlines" in message and "text/csv" in message


def test_json_instances_stay_bounded_by_max_instances(
    client: TestClient, many: list[dict[str, Any]]
) -> None:
    answer = client.post("/invocations", json={"instances": many[:301]})
    assert answer.status_code == 422


def test_execution_parameters_give_batch_transform_its_defaults(client: TestClient) -> None:
    answer = client.get("/execution-parameters")
    assert answer.status_code == 200
    assert answer.json() == {
        "MaxConcurrentTransforms": 2,  # one process: one mini-batch parsed, one on the device
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


HEADER = ",".join(RAW_COLUMNS) + "\n"


@pytest.mark.parametrize(
    ("body", "accept", "answer", "kind"),
    [
        (HEADER, None, "", "text/csv"),
        (HEADER + "\n\n", None, "", "text/csv"),  # blank lines are skipped, as ever
        ("\ufeff" + HEADER, "text/csv;columns=3", "", "text/csv"),
        (HEADER, "application/json", '{"predictions":[],"intervals":[]}', "application/json"),
        (HEADER, "application/jsonlines", "", "application/jsonlines"),
    ],
)
def test_a_header_only_csv_is_answered_with_no_rows(
    client: TestClient, body: str, accept: str | None, answer: str, kind: str
) -> None:
    """A header-only object in a Batch Transform job: its output is empty, as its input."""
    headers = {**CSV, **({"accept": accept} if accept else {})}
    got = client.post("/invocations", content=body.encode(), headers=headers)
    assert (got.status_code, got.text, got.headers["content-type"]) == (200, answer, kind)


def test_a_header_only_csv_without_ranges_answers_predictions_alone(client: TestClient) -> None:
    got = client.post(
        "/invocations?coverage=0",
        content=HEADER.encode(),
        headers={**CSV, "accept": "application/json"},
    )
    assert (got.status_code, got.json()) == (200, {"predictions": []})
    # Three columns need a range, rows or no rows.
    three = client.post(
        "/invocations?coverage=0",
        content=HEADER.encode(),
        headers={**CSV, "accept": "text/csv;columns=3"},
    )
    assert three.status_code == 406


@pytest.mark.parametrize("body", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_a_csv_body_with_no_line_at_all_is_still_refused(client: TestClient, body: bytes) -> None:
    got = client.post("/invocations", content=body, headers=CSV)
    assert got.status_code == 422
    assert got.json()["detail"][0]["field"] == "line 1.body"
