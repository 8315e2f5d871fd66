"""``python -m reliability.fuzz`` in small: a few hundred cases generated from the server's own
OpenAPI schema, against a real server; and proof that the harness fails on an answer the
schema does not document, or a body that does not match it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("schemathesis", reason="schemathesis 4 needs Python 3.11+ (the dev extra)")

import schemathesis  # noqa: E402

from modelspec.features import EXAMPLE_RECORD  # noqa: E402
from reliability.derived import DEEP, INFER, INVOCATIONS, PREDICT, tensors  # noqa: E402
from reliability.fuzz import Fuzzer, Target, fuzz  # noqa: E402
from reliability.server import serve  # noqa: E402

# 13 GET operations x 20 + 3 prediction routes x (20 positive + 20 negative + ~20 derived)
# + the versioned infer x (20 positive + 20 negative).
EXAMPLES = 20
SEED = 20261127  # fixed: the same cases on every run, so a failure here is reproducible
API_KEY = "fuzz-test-key"
VERSIONED_INFER = "/v2/models/housing/versions/{version}/infer"


@pytest.fixture(scope="module")
def target(artifacts: Path) -> Iterator[Target]:
    opened = {"HOUSING_CONTROL_OPEN": "true"}  # the load route is fuzzed too
    with serve(artifacts, HOUSING_DEVICE="cpu", HOUSING_API_KEY=API_KEY, **opened) as server:
        server.wait_ready()
        yield Target(server.url, API_KEY)
        assert server.terminate() == 0


def test_every_answer_is_documented_and_conforms(target: Target) -> None:
    report = fuzz(target, EXAMPLES, SEED)
    print("\n" + "\n".join(report.lines()))
    assert report.failures == 0, "\n".join(report.lines())
    assert len(report.operations) == 19
    assert all(op.cases["positive"] > 0 for op in report.operations)
    assert 460 <= report.cases <= 560
    # The fuzzer's versions are never the one in service: each is the documented 404.
    for route in ("", "/ready"):
        versioned = report.operation(f"GET /v2/models/housing/versions/{{version}}{route}")
        assert set(versioned.statuses) == {404}
    assert set(report.operation(f"POST {VERSIONED_INFER}").statuses) == {404}
    # Every documented kind of answer of the prediction routes was reached and checked.
    refusals = {401, 405, 413, 415}
    assert set(report.operation(f"POST {PREDICT}").statuses) >= {200, 422} | refusals
    assert set(report.operation(f"POST {INVOCATIONS}").statuses) >= {200, 422} | refusals
    assert set(report.operation(f"POST {INFER}").statuses) >= {200, 400} | refusals
    # Reloads of the same artifact, each answered as documented, while the routes above ran.
    assert report.operation("POST /v2/repository/models/housing/load").statuses[200] > 0


def schema_with(target: Target, change: Any) -> schemathesis.BaseSchema:
    raw = httpx.get(f"{target.url}/openapi.json").json()
    change(raw)
    return schemathesis.openapi.from_dict(raw)


def fuzz_predict(target: Target, schema: schemathesis.BaseSchema) -> dict[str, int]:
    report = Fuzzer(schema, target, SEED).fuzz_operation(schema[PREDICT]["POST"], EXAMPLES)
    return dict(report.failures)


def test_an_undocumented_status_fails(target: Target) -> None:
    def forget_422(raw: dict[str, Any]) -> None:
        operation = raw["paths"][PREDICT]["post"]
        del operation["responses"]["422"]
        # Without the query parameter, every negative case breaks the body (a 422): with it,
        # some only add unknown query parameters, which the service ignores, as HTTP APIs do.
        operation["parameters"] = [p for p in operation["parameters"] if p["in"] != "query"]

    failures = fuzz_predict(target, schema_with(target, forget_422))
    assert set(failures) == {"Undocumented status code"}
    assert failures["Undocumented status code"] >= EXAMPLES  # every negative case


def test_a_body_that_does_not_match_its_schema_fails(target: Target) -> None:
    def require_input_echo(raw: dict[str, Any]) -> None:
        field_error = raw["components"]["schemas"]["FieldError"]
        field_error["properties"]["input"] = {"type": "string"}
        field_error["required"].append("input")

    failures = fuzz_predict(target, schema_with(target, require_input_echo))
    assert set(failures) == {"Response violates schema"}


def hostile(**change: Any) -> bytes:
    """A valid OIP request with one top-level field, or (``tensor_*``) a field of its first
    tensor, replaced; ``DEEP`` stands for a list nested a thousand deep."""
    request = tensors([EXAMPLE_RECORD])
    for key, value in change.items():
        where = request["inputs"][0] if key.startswith("tensor_") else request
        where[key.removeprefix("tensor_")] = value
    return json.dumps(request).replace(json.dumps(DEEP), "[" * 1000 + "1" + "]" * 1000).encode()


# The bodies that were 500s before app.http.oip.check_envelope (found fuzzing): now 400s.
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (hostile(outputs=5), '"outputs" must be a list'),
        (hostile(tensor_parameters=5), "parameters must be an object"),
        (hostile(tensor_datatype=["FP32"]), "datatype must be a string"),
        (hostile(tensor_data=DEEP), "nested deeper than [N, 1]"),
        (hostile(tensor_shape=DEEP), "shape must be a list of integers"),
        (hostile(id=DEEP), '"id" must be a string'),
        (hostile(id=7), '"id" must be a string'),
    ],
    ids=["outputs", "parameters", "datatype", "deep data", "deep shape", "deep id", "int id"],
)
def test_oip_bodies_found_fuzzing_are_400s(target: Target, body: bytes, reason: str) -> None:
    headers = {"content-type": "application/json", "x-api-key": API_KEY}
    answer = httpx.post(f"{target.url}{INFER}", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["error"]
