"""CSV bodies (``app.codecs.tabular.parse_csv``): a header alone is no records; no line at all
is refused."""

from __future__ import annotations

import pytest

from app.codecs.schemas import request_adapter
from app.codecs.tabular import SLICE_ROWS, parse_csv
from app.errors import InvalidInput
from modelspec.features import EXAMPLE_RECORD, RAW_COLUMNS

HEADER = ",".join(RAW_COLUMNS).encode()
ROW = ",".join(str(EXAMPLE_RECORD[c]) for c in RAW_COLUMNS).encode()
ADAPTER = request_adapter(SLICE_ROWS)


@pytest.mark.parametrize(
    "body", [HEADER, HEADER + b"\n", HEADER + b"\r\n\n \n", b"\xef\xbb\xbf" + HEADER + b"\n"]
)
def test_a_header_alone_is_no_records(body: bytes) -> None:
    assert parse_csv(body, ADAPTER) == []


def test_a_header_and_rows_are_the_rows() -> None:
    assert len(parse_csv(HEADER + b"\n" + ROW + b"\n" + ROW + b"\n", ADAPTER)) == 2


@pytest.mark.parametrize("body", [b"", b"\n", b" \n\t\n", b"\xef\xbb\xbf"])
def test_no_line_at_all_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_csv(body, ADAPTER)
    assert info.value.details[0]["field"] == "line 1.body"
    assert "no rows" in info.value.details[0]["message"]


def test_a_line_of_empty_cells_is_refused_not_dropped() -> None:
    body = b"-122.23,37.88,41,880,129,322,126,8.3252,NEAR BAY\n,,,,,,,,\n"
    with pytest.raises(InvalidInput) as info:
        parse_csv(body, request_adapter(2048))
    assert {d["field"].split(".")[0] for d in info.value.details} == {"line 2"}
