"""The fast check only ever accepts what the pydantic validator accepts, and encodes alike."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.codecs.fastparse import accept
from app.codecs.schemas import request_adapter
from app.http.predict import RecordsJson
from modelspec.features import (
    EXAMPLE_RECORD,
    NUMERIC_FIELDS,
    OCEAN_CATEGORIES,
    encode,
    encode_records,
)

MAX = 5


def _dumps(body: Any) -> bytes:
    return json.dumps(body).encode()  # the stdlib writes integers of any size, as clients may


ADAPTER = request_adapter(MAX)


def _edges() -> list[float]:
    out: list[float] = []
    for f in NUMERIC_FIELDS:
        for bound in (f.ge, f.gt, f.le):
            if bound is not None:
                out += [bound, math.nextafter(bound, math.inf), math.nextafter(bound, -math.inf)]
    return out


values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-200, max_value=200),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from(_edges()),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.just("1.5"),
    st.lists(st.integers(), max_size=1),
)
category = st.one_of(st.sampled_from(OCEAN_CATEGORIES), st.text(max_size=4), st.integers())


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = dict(EXAMPLE_RECORD)
    for f in NUMERIC_FIELDS:
        if draw(st.booleans()):
            record[f.name] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        record["ocean_proximity"] = draw(category)
    if draw(st.integers(0, 9)) == 0:
        record.pop(draw(st.sampled_from(sorted(record))))
    if draw(st.integers(0, 19)) == 0:
        record[draw(st.text(max_size=5))] = 1.0
    return record


bodies = st.one_of(
    records(),
    st.builds(lambda rs: {"instances": rs}, st.lists(records(), min_size=0, max_size=MAX + 1)),
    st.builds(lambda rs: {"instances": rs, "x": 1}, st.lists(records(), max_size=2)),
    st.lists(records(), max_size=2),
)


def _decide(body: bytes) -> tuple[Any, np.ndarray | None]:
    try:
        parsed = ADAPTER.validate_json(body)
    except ValidationError:
        return None, None
    records_ = parsed.get("instances", [parsed])
    return parsed, encode_records(records_, 435.0)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(bodies)
def test_fast_accept_implies_the_validator_accepts_with_equal_encoding(body: Any) -> None:
    raw = _dumps(body)
    fast = accept(raw, MAX)
    parsed, expected = _decide(raw)
    if fast is None:
        return
    assert parsed is not None, f"fast check accepted what pydantic refuses: {body!r}"
    assert fast.single == ("instances" not in parsed)
    np.testing.assert_array_equal(encode(fast.numeric, fast.ocean, 435.0), expected)


def test_the_common_bodies_take_the_fast_path() -> None:
    no_bedrooms = {k: v for k, v in EXAMPLE_RECORD.items() if k != "total_bedrooms"}
    for body in (
        EXAMPLE_RECORD,
        {**EXAMPLE_RECORD, "total_bedrooms": None, "households": 3},
        {"instances": [EXAMPLE_RECORD, no_bedrooms]},
    ):
        assert accept(_dumps(body), MAX) is not None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'{"longitude": NaN}',
        b'{"instances": []}',
        _dumps({**EXAMPLE_RECORD, "households": 0}),
        _dumps({**EXAMPLE_RECORD, "households": True}),
        _dumps({**EXAMPLE_RECORD, "latitude": 10**400}),
        _dumps({"instances": [EXAMPLE_RECORD] * (MAX + 1)}),
    ],
)
def test_doubtful_bodies_are_left_to_the_validator(raw: bytes) -> None:
    assert accept(raw, MAX) is None


def _errors(body: bytes) -> list[Any] | None:
    try:
        ADAPTER.validate_json(body)
    except ValidationError as exc:
        return exc.errors(include_url=False)
    return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(bodies)
def test_decode_answers_as_the_body_validator_does(body: Any) -> None:
    """The one-record try and the fast check only shortcut: any body gets the validator's
    encoding, or its very errors."""
    raw = _dumps(body)
    parsed, expected = _decide(raw)
    try:
        decoded = RecordsJson(MAX).decode(raw, 435.0)
    except ValidationError as exc:
        assert parsed is None
        assert exc.errors(include_url=False) == _errors(raw)
        return
    assert parsed is not None, f"decode accepted what the validator refuses: {body!r}"
    assert decoded.context == ("instances" not in parsed)
    np.testing.assert_array_equal(decoded.encoded, expected)


def test_a_batch_whose_key_is_escaped_is_still_a_batch() -> None:
    raw = b'{"\\u0069nstances": [' + _dumps(EXAMPLE_RECORD) + b"]}"
    decoded = RecordsJson(MAX).decode(raw, 435.0)
    assert decoded.context is False  # a batch of one, answered as predictions
    assert decoded.encoded.shape == (1, 13)
