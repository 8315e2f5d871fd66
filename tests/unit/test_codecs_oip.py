"""The Open Inference Protocol's JSON reader (``app.codecs.oip.loads``): standard JSON through
orjson, and the literals Triton takes (NaN, Infinity) through a bounded fallback."""

from __future__ import annotations

import math

import pytest

from app.codecs.oip import OipError, loads


def test_standard_json_is_read_by_orjson() -> None:
    assert loads(b'{"inputs": [{"data": [1.5, null]}]}') == {"inputs": [{"data": [1.5, None]}]}


def test_nan_and_infinities_are_numbers_as_triton_reads_them() -> None:
    value = loads(b'{"data": [NaN, Infinity, -Infinity, 2], "id": "NaN"}')
    nan, inf, minus, two = value["data"]
    assert math.isnan(nan) and inf == math.inf and minus == -math.inf and two == 2
    assert value["id"] == "NaN"


@pytest.mark.parametrize(
    "body",
    [
        b"{",  # no literal: orjson's refusal, never a second parse
        b"[NaN",
        b"[nan]",  # the literals are case-sensitive, as in Triton
        b"[NaN]" + b"[" * 50_000,
        b"[" * 50_000 + b"NaN" + b"]" * 50_000,  # deeper than either parser goes
        b'["\xff", NaN]',  # not UTF-8
        b'["\\ud800", NaN]',  # a lone surrogate: no answer could carry it
        b"[NaN, 1" + b"0" * 5000 + b"]",  # an integer Python's limit refuses
    ],
)
def test_everything_else_is_refused_with_orjsons_message(body: bytes) -> None:
    with pytest.raises(OipError, match="^the body is not valid JSON: ") as info:
        loads(body)
    assert "line 1 column" in str(info.value)  # orjson's position, not Python's wording
