"""Requests derived from schema-valid records, for ``reliability.fuzz``.

The OpenAPI schema can describe a CSV body only as a string and cannot say that OIP inputs share
one row count, so records the schema allows are re-sent in each prediction route's own formats
(CSV rows, Open Inference Protocol JSON and binary tensors) and must be answered with one value
per record; mutated ones (a broken cell, a tensor field replaced by any JSON value), another
method, another content type, no API key and an oversized body must get their 4xx.
"""

from __future__ import annotations

import csv
import io
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import CheckFunction

from modelspec.features import CATEGORICAL_COLUMN, IMPUTED_COLUMN, RAW_COLUMNS

JSON, CSV, BINARY = "application/json", "text/csv", "application/octet-stream"
PREDICT, INVOCATIONS, INFER = "/predict", "/invocations", "/v2/models/housing/infer"
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# A value the JSON generator would never reach: nesting deeper than recursion limits.
DEEP = "\x00deep\x00"

Records = list[dict[str, Any]]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
OTHER_METHODS: tuple[Method, ...] = ("GET", "PUT", "PATCH", "DELETE")


def check(name: str) -> CheckFunction:
    # schemathesis.checks resolves a registered check by its name.
    found: CheckFunction = getattr(schemathesis.checks, name)
    return found


@dataclass(frozen=True)
class Derived:
    """A request made from records the schema allows, and the status it must get (None: any
    documented answer but a 5xx); a 200 must carry one value per record."""

    body: bytes
    media_type: str
    expect: int | None = None
    rows: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    method: Method = "POST"
    keyless: bool = False  # sent without the API key


Variant = Callable[[Records, st.DataObject], Derived]


def records_of(case: Case) -> Records:
    """The records of a schema-valid ``/predict`` body (one record, or ``{"instances": []}``),
    each made to keep the rule across fields that a JSON schema cannot say (bedrooms are
    rooms: ``app.codecs.schemas``), so that derived requests of them must be accepted."""
    body: Any = case.body
    assert isinstance(body, dict), body
    records: Records = [
        {**r, IMPUTED_COLUMN: r["total_rooms"]}
        if isinstance(r.get(IMPUTED_COLUMN), int | float) and r[IMPUTED_COLUMN] > r["total_rooms"]
        else r
        for r in body.get("instances", [body])
    ]
    return records


def json_body(records: Records) -> bytes:
    return json.dumps({"instances": records}).encode()


def cells(record: dict[str, Any]) -> list[str]:
    """A record as CSV cells in column order; a missing or null total_bedrooms is empty."""
    return ["" if record.get(c) is None else str(record[c]) for c in RAW_COLUMNS]


def write_csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def csv_rows(records: Records, data: st.DataObject) -> Derived:
    rows = [cells(r) for r in records]
    if data.draw(st.booleans(), "header line"):
        rows.insert(0, list(RAW_COLUMNS))
    accept = data.draw(st.sampled_from(["", CSV, JSON]), "Accept")
    headers = {"Accept": accept} if accept else {}
    return Derived(write_csv(rows), CSV, 200, len(records), headers)


def csv_mutated(records: Records, data: st.DataObject) -> Derived:
    """One cell replaced by any text, dropped, or one more cell."""
    rows = [cells(r) for r in records]
    row = rows[data.draw(st.integers(0, len(rows) - 1), "row")]
    column = data.draw(st.integers(0, len(row) - 1), "column")
    how = data.draw(st.sampled_from(["replace", "drop", "add"]), "how")
    if how == "drop":
        del row[column]
    else:
        text = data.draw(st.text(st.characters(codec="utf-8"), max_size=12), "cell")
        row[column : column + (how == "replace")] = [text]
    return Derived(write_csv(rows), CSV)


def tensors(records: Records, column: bool = False) -> dict[str, Any]:
    """The OIP request of ``records``: one JSON tensor per raw feature, shape ``[N]`` or
    ``[N, 1]``; a total_bedrooms without any value is left out, as clients may."""
    shape = [len(records), 1] if column else [len(records)]
    inputs = []
    for name in RAW_COLUMNS:
        values = [r.get(name) for r in records]
        if name == IMPUTED_COLUMN and all(v is None for v in values):
            continue
        datatype = "BYTES" if name == CATEGORICAL_COLUMN else "FP64"
        data = [[v] for v in values] if column else values
        inputs.append({"name": name, "shape": shape, "datatype": datatype, "data": data})
    return {"inputs": inputs}


def oip_json(records: Records, data: st.DataObject) -> Derived:
    request = tensors(records, column=data.draw(st.booleans(), "[N, 1]"))
    if data.draw(st.booleans(), "with id"):
        request["id"] = data.draw(st.text(max_size=8), "id")
    return Derived(json.dumps(request).encode(), JSON, 200, len(records))


def binary_tensor(name: str, values: list[Any]) -> bytes:
    """Little-endian FP64 (NaN: missing), or BYTES as 4-byte length + UTF-8."""
    if name == CATEGORICAL_COLUMN:
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    return np.array([np.nan if v is None else v for v in values], "<f8").tobytes()


def oip_binary(records: Records, data: st.DataObject) -> Derived:
    """The binary tensor extension, as tritonclient sends by default."""
    inputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name in RAW_COLUMNS:
        raw = binary_tensor(name, [r.get(name) for r in records])
        datatype = "BYTES" if name == CATEGORICAL_COLUMN else "FP64"
        parameters = {"binary_data_size": len(raw)}
        inputs.append(
            {"name": name, "shape": [len(records)], "datatype": datatype, "parameters": parameters}
        )
        chunks.append(raw)
    header = json.dumps({"inputs": inputs}).encode()
    length = {"Inference-Header-Content-Length": str(len(header))}
    return Derived(header + b"".join(chunks), BINARY, 200, len(records), length)


def any_json() -> st.SearchStrategy[Any]:
    """Any JSON value, small, or (rarely) one nested a thousand deep."""
    floats = st.floats(allow_nan=False, allow_infinity=False)  # json.dumps would write NaN
    scalars = st.none() | st.booleans() | st.integers() | floats | st.text()
    nested = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=6,
    )
    return nested | st.just(DEEP)


def oip_mutated(records: Records, data: st.DataObject) -> Derived:
    """One field of the request, or of one tensor, replaced by any JSON value."""
    request = tensors(records)
    where = data.draw(st.sampled_from([request, *request["inputs"]]), "where")
    keys = ["id", "inputs", "outputs"] if where is request else list(where)
    where[data.draw(st.sampled_from([*keys, "parameters"]), "field")] = data.draw(any_json())
    # Nesting a thousand deep: written by hand, json.dumps would hit the recursion limit too.
    deep = "[" * 1000 + "1" + "]" * 1000
    return Derived(json.dumps(request).replace(json.dumps(DEEP), deep).encode(), JSON)


def refusals(
    body: Callable[[Records], bytes], accepted: frozenset[str], max_body_bytes: int
) -> list[Variant]:
    """The requests every prediction route must refuse before reading the records: another
    method (405), a media type it does not take (415), no or a wrong key (401), too large a
    body (413)."""
    others = sorted({"text/plain", "application/xml", "multipart/form-data", CSV} - accepted)

    def method(records: Records, data: st.DataObject) -> Derived:
        verb = data.draw(st.sampled_from(OTHER_METHODS), "method")
        return Derived(body(records), JSON, 405, method=verb)

    def media_type(records: Records, data: st.DataObject) -> Derived:
        kind = data.draw(st.sampled_from(others), "media type")
        return Derived(body(records), JSON, 415, headers={"Content-Type": kind})

    def no_key(records: Records, data: st.DataObject) -> Derived:
        key = data.draw(st.sampled_from([None, "wrong"]), "key")
        headers = {} if key is None else {"X-API-Key": key}
        return Derived(body(records), JSON, 401, headers=headers, keyless=True)

    def too_large(records: Records, data: st.DataObject) -> Derived:
        padded = body(records).ljust(max_body_bytes + 1)  # JSON with trailing spaces
        return Derived(padded, JSON, 413)

    return [method, media_type, no_key, too_large]


def variants(route: str, max_body_bytes: int) -> list[Variant]:
    if route == PREDICT:
        return refusals(json_body, frozenset({JSON}), max_body_bytes)
    if route == INVOCATIONS:
        return [csv_rows, csv_mutated, *refusals(json_body, frozenset({JSON, CSV}), max_body_bytes)]
    oip = refusals(lambda r: json.dumps(tensors(r)).encode(), frozenset({JSON}), max_body_bytes)
    return [oip_json, oip_binary, oip_mutated, *oip]


# ---- Checks of our own, beside schemathesis' -------------------------------------------------


def request_id_echoed(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A plain-token ``X-Request-ID`` comes back as it was sent (any other is replaced, and the
    schema's pattern checks the replacement)."""
    sent = response.request.headers.get("X-Request-ID")
    if isinstance(sent, str) and SAFE_REQUEST_ID.fullmatch(sent):
        got = response.headers.get("x-request-id", [])
        assert got == [sent], f"sent X-Request-ID {sent!r}, got {got!r}"
    return None


def values_in(response: Response) -> int:
    """How many values a 200 of a prediction route carries, in any of its formats."""
    if response.headers.get("content-type", [""])[0].startswith(CSV):
        return len(response.content.splitlines())
    body = json.loads(response.content)
    if "outputs" in body:
        return len(body["outputs"][0]["data"])
    return len(body["predictions"]) if "predictions" in body else 1


def answered_as_expected(derived: Derived) -> CheckFunction:
    def answered_as_expected(ctx: CheckContext, response: Response, case: Case) -> bool | None:
        """The status the request must get; a 200 has one value per record."""
        if derived.expect is not None:
            status = response.status_code
            assert status == derived.expect, f"expected {derived.expect}, got {status}"
        if response.status_code == 200 and derived.rows:
            got = values_in(response)
            assert got == derived.rows, f"{derived.rows} records, {got} values"
        return None

    return answered_as_expected
