"""``offline.score.files``' readers on hostile files: every record read is kept for scoring or
refused with its physical line (1-based, as an editor shows it); a bad header refuses the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import StartupError
from offline.score.files import CsvReader, ParquetReader, columns_of

HEADER = (
    "longitude,latitude,housing_median_age,total_rooms,total_bedrooms,population,households,"
    "median_income,median_house_value,ocean_proximity"
)
GOOD = "-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,452600.0,NEAR BAY"


def write(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    return path


def read(path: Path, chunk_rows: int = 3) -> list[tuple[int, str | None]]:
    """Each record read, in order: its line, and the field it was refused for (None: kept)."""
    out: list[tuple[int, str | None]] = []
    for chunk in CsvReader(path, chunk_rows).chunks():
        assert len(chunk.rows) == len(chunk.lines)
        out += [(line, chunk.refused.get(i, (None, ""))[0]) for i, line in enumerate(chunk.lines)]
    return out


def refusals(path: Path) -> dict[int, str]:
    """The reasons of the refused records, by line."""
    return {
        chunk.lines[i]: reason
        for chunk in CsvReader(path, 100).chunks()
        for i, (_, reason) in chunk.refused.items()
    }


def test_a_quote_left_open_refuses_its_own_line_and_the_next_lines_are_read(
    tmp_path: Path,
) -> None:
    lines = [HEADER, GOOD, GOOD, GOOD, GOOD.replace("NEAR BAY", '"NEAR BAY'), *[GOOD] * 5]
    path = write(tmp_path / "quote.csv", lines)
    assert read(path) == [
        (2, None),
        (3, None),
        (4, None),
        (5, "row"),
        *[(n, None) for n in (6, 7, 8, 9, 10)],
    ]
    assert "quoted cell must close on its line" in refusals(path)[5]
    kept = [row for chunk in CsvReader(path, 100).chunks() for row in chunk.rows if row]
    assert len(kept) == 8 and all(row["ocean_proximity"] == "NEAR BAY" for row in kept)


def test_text_after_a_closing_quote_refuses_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "after.csv", [HEADER, GOOD.replace("NEAR BAY", '"NEAR" BAY'), GOOD])
    assert read(path) == [(2, "row"), (3, None)]
    assert refusals(path)[2].startswith("not CSV: ")


def test_rows_with_more_or_fewer_cells_than_the_header_are_refused_not_trimmed(
    tmp_path: Path,
) -> None:
    short = GOOD.rsplit(",", 1)[0]
    path = write(tmp_path / "cells.csv", [HEADER, GOOD, GOOD + ",surplus", short, GOOD])
    assert read(path) == [(2, None), (3, "row"), (4, "row"), (5, None)]
    reasons = refusals(path)
    assert reasons[3].startswith("11 cells, and the header has 10 columns")
    assert reasons[4].startswith("9 cells, and the header has 10 columns")
    assert "Hint:" in reasons[3]


def test_line_numbers_are_the_files_physical_lines(tmp_path: Path) -> None:
    # CRLF endings; blank lines (spaces, or only commas) are no record but count as lines; a
    # quoted cell with a comma and a doubled quote is one cell.
    quoted = GOOD.replace("NEAR BAY", '"NEAR, ""BAY"""')
    lines = [HEADER, GOOD, "", "   ", ",,,,,,,,,", quoted, GOOD + ",x", GOOD]
    path = write(tmp_path / "crlf.csv", lines, newline="\r\n")
    assert read(path, chunk_rows=2) == [(2, None), (6, None), (7, "row"), (8, None)]
    rows = [row for chunk in CsvReader(path, 100).chunks() for row in chunk.rows]
    assert rows[1]["ocean_proximity"] == 'NEAR, "BAY"'
    assert rows[3]["ocean_proximity"] == "NEAR BAY"  # no "\r" left on the last cell


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\n{GOOD}\n".encode())
    assert columns_of(path)[0] == "longitude"
    chunks = list(CsvReader(path, 10).chunks())
    assert chunks[0].columns[0] == "longitude" and chunks[0].rows[0]["longitude"] == "-122.23"


@pytest.mark.parametrize(
    ("header", "row", "column"),
    [
        (f"{HEADER},median_income", f"{GOOD},1.5", "median_income"),  # a model column
        (f"note,{HEADER}, note ", f"a,{GOOD},b", "note"),  # one carried through, spaced
    ],
    ids=["model-column", "carried-column"],
)
def test_a_column_named_twice_refuses_the_whole_file(
    tmp_path: Path, header: str, row: str, column: str
) -> None:
    path = write(tmp_path / "twice.csv", [header, row])
    for attempt in (lambda: list(CsvReader(path, 10).chunks()), lambda: columns_of(path)):
        with pytest.raises(StartupError, match=f"names the column '{column}' twice") as caught:
            attempt()
        assert getattr(caught.value, "line", None) == 1
        assert "Hint: rename or remove one of them" in str(caught.value)


def test_a_header_that_is_not_csv_refuses_the_whole_file(tmp_path: Path) -> None:
    path = write(tmp_path / "header.csv", [HEADER.replace("longitude", '"longitude'), GOOD])
    with pytest.raises(StartupError, match="its header .line 1. is not CSV") as caught:
        list(CsvReader(path, 10).chunks())
    assert getattr(caught.value, "line", None) == 1


def test_a_parquet_column_named_twice_refuses_the_file_and_rows_count_from_1(
    tmp_path: Path,
) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    names = HEADER.split(",")
    values = [[float(v)] * 5 if v[0] in "-0123456789" else [v] * 5 for v in GOOD.split(",")]
    pq.write_table(pa.table(values, names=names), tmp_path / "ok.parquet")
    chunks = list(ParquetReader(tmp_path / "ok.parquet", 2).chunks())
    assert [c.lines for c in chunks] == [[1, 2], [3, 4], [5]]
    twice = pa.Table.from_arrays([pa.array(v) for v in [*values, values[1]]], [*names, "latitude"])
    pq.write_table(twice, tmp_path / "twice.parquet")
    with pytest.raises(StartupError, match="names the column 'latitude' twice") as caught:
        list(ParquetReader(tmp_path / "twice.parquet", 2).chunks())
    assert getattr(caught.value, "line", 0) is None  # a schema has no line
