"""Hand-made hostile bodies against a real server: each gets its status and reason, none a 5xx,
and the server is still ready after all of them (issue 5's table)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelspec.features import EXAMPLE_RECORD
from tests.support.bodies import JSON
from tests.support.server import ServerProcess, serve

RECORD = json.dumps(EXAMPLE_RECORD)


def with_field(value: str) -> bytes:
    """The example record with median_income's value replaced by raw JSON text."""
    return RECORD.replace('"median_income": 8.3252', f'"median_income": {value}').encode()


# (name, body, headers, status, a piece of the answer)
CASES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("empty body", b"", JSON, 422, "json_invalid"),
    ("not JSON", b"hello", JSON, 422, "json_invalid"),
    ("invalid UTF-8", b'{"ocean_proximity": "\xff\xfe"}', JSON, 422, "json_invalid"),
    ("top-level array", b"[1, 2]", JSON, 422, "body"),
    ("top-level string", b'"house"', JSON, 422, "body"),
    ("NaN literal", with_field("NaN"), JSON, 422, "finite number"),
    ("Infinity literal", with_field("Infinity"), JSON, 422, "finite number"),
    ("1e400", with_field("1e400"), JSON, 422, "median_income"),
    ("number as string", with_field('"8.3"'), JSON, 422, "median_income"),
    ("boolean", with_field("true"), JSON, 422, "median_income"),
    ("null where not allowed", with_field("null"), JSON, 422, "median_income"),
    # Duplicate keys: the last one wins, as in every mainstream JSON parser; still validated.
    ("duplicate keys", RECORD.replace("{", '{"median_income": 1, ', 1).encode(), JSON, 200, ""),
    ("unknown field", RECORD.replace("{", '{"rooms": 3, ', 1).encode(), JSON, 422, "rooms"),
    (
        "unknown ocean_proximity",
        RECORD.replace("NEAR BAY", "MOON").encode(),
        JSON,
        422,
        "ocean_proximity",
    ),  # fmt: skip
    (
        "40,000 instances",
        json.dumps({"instances": [EXAMPLE_RECORD] * 40_000}).encode(),  # ~8 MB
        JSON,
        413,
        "HOUSING_MAX_BODY_BYTES",
    ),  # fmt: skip
    (
        "2,000 instances under the size limit",
        json.dumps({"instances": [{"a": 1}] * 2_000}, separators=(",", ":")).encode(),
        JSON,
        422,
        "at most 1024",
    ),  # fmt: skip
    ("50 MB body", b'{"instances": [' + b" " * 50_000_000 + b"]}", JSON, 413, "HOUSING_MAX_BODY"),
    (
        "deeply nested JSON",
        b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        JSON,
        422,
        "",
    ),  # fmt: skip
    ("wrong content type", RECORD.encode(), {"content-type": "text/plain"}, 415, "text/plain"),
    (
        "form content type",
        RECORD.encode(),
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "Hint",
    ),  # fmt: skip
]


@pytest.fixture(scope="module")
def server(artifacts: Path) -> Iterator[ServerProcess]:
    with serve(artifacts, HOUSING_DEVICE="cpu") as s:
        s.wait_ready()
        yield s


@pytest.mark.parametrize(
    ("body", "headers", "status", "piece"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_hostile_body(
    server: ServerProcess, body: bytes, headers: dict[str, str], status: int, piece: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/predict", content=body, headers=headers)
        assert response.status_code == status, response.text[:500]
        assert piece in response.text
        assert "Traceback" not in response.text
        assert len(response.content) < 10_000  # no echo of the input
        assert client.get("/health/ready").status_code == 200
    assert server.proc is not None and server.proc.poll() is None
