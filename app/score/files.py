"""Reading and writing scored files in chunks: CSV with the standard library, Parquet with
pyarrow (imported only for Parquet files). Nothing ever holds more than one chunk."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.errors import StartupError
from app.protocols.tabular import cell_value
from modelspec.features import IMPUTED_COLUMN, RAW_COLUMNS

OUTPUT_COLUMNS = ("house_value", "house_value_low", "house_value_high", "warnings")
RANGE_COLUMNS = ("house_value_low", "house_value_high")  # only when the run has ranges


@dataclass
class Chunk:
    columns: list[str]  # the input's columns, in its order
    rows: list[dict[str, Any]]  # as read: strings from CSV, typed values from Parquet
    lines: list[int]  # each row's line in the file (CSV, header = 1) or row number (Parquet)


@dataclass
class Kept:
    """A chunk's scored rows: their indices in the chunk, parsed fields, dollars, notes, and
    each row's range (None: no ranges, and no range columns)."""

    index: list[int]
    records: list[dict[str, Any]]
    values: list[float]
    notes: list[str]
    bounds: list[tuple[float, float]] | None = None

    def answers(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Each kept row's index in the chunk and its output columns, in order."""
        bounds = self.bounds if self.bounds is not None else [None] * len(self.values)
        for i, value, note, b in zip(self.index, self.values, self.notes, bounds, strict=True):
            out: dict[str, Any] = {"house_value": value}
            if b is not None:
                out["house_value_low"], out["house_value_high"] = b
            out["warnings"] = note
            yield i, out


class Reader(Protocol):
    fraction_done: float

    def chunks(self) -> Iterator[Chunk]: ...


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in {".parquet", ".pq"}


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401 - makes pa.parquet available
    except ImportError:
        raise StartupError(
            "Parquet needs pyarrow. Hint: `pip install pyarrow`, or convert the file to CSV."
        ) from None
    return pa


def check_columns(columns: list[str], path: Path) -> None:
    missing = [c for c in RAW_COLUMNS if c not in columns and c != IMPUTED_COLUMN]
    if missing:
        raise StartupError(
            f"{path} has no column(s) {', '.join(missing)}. Hint: the file needs the data set's "
            f"columns by name: {', '.join(RAW_COLUMNS)} (total_bedrooms may be absent)."
        )


class CsvReader:
    """A CSV with a header line; extra columns are carried through to the output."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.path, self.chunk_rows = path, chunk_rows
        self._size = max(path.stat().st_size, 1)
        self._read = 0
        self.fraction_done = 0.0

    def _lines(self, fh: io.BufferedReader) -> Iterator[str]:
        for raw in fh:
            self._read += len(raw)
            yield raw.decode("utf-8", errors="replace")

    def chunks(self) -> Iterator[Chunk]:
        with self.path.open("rb") as fh:
            reader = csv.reader(self._lines(fh))
            header = next(reader, None)
            if header is None:
                raise StartupError(f"{self.path} is empty. Hint: a CSV needs a header line.")
            columns = [c.strip() for c in header]
            check_columns(columns, self.path)
            chunk = Chunk(columns, [], [])
            for cells in reader:
                if not cells or all(not c.strip() for c in cells):
                    continue
                chunk.rows.append(dict(zip(columns, cells, strict=False)))
                chunk.lines.append(reader.line_num)
                if len(chunk.rows) >= self.chunk_rows:
                    self.fraction_done = self._read / self._size
                    yield chunk
                    chunk = Chunk(columns, [], [])
            self.fraction_done = 1.0
            if chunk.rows:
                yield chunk


class ParquetReader:
    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.path, self.chunk_rows = path, chunk_rows
        self.fraction_done = 0.0

    def batches(self) -> Iterator[tuple[Any, int]]:
        """The file's pyarrow record batches and each one's first row number (1-based)."""
        pa = _pyarrow()
        source = pa.parquet.ParquetFile(self.path)
        check_columns(list(source.schema_arrow.names), self.path)
        total, done = max(source.metadata.num_rows, 1), 0
        for batch in source.iter_batches(batch_size=self.chunk_rows):
            done += batch.num_rows
            self.fraction_done = done / total
            yield batch, done - batch.num_rows + 1

    def chunks(self) -> Iterator[Chunk]:
        for batch, first in self.batches():
            rows = batch.to_pylist()
            yield Chunk(batch.schema.names, rows, list(range(first, first + len(rows))))


def columns_of(path: Path) -> list[str]:
    """A file's columns (a CSV's header, a Parquet file's schema), checked as its reader checks
    them: StartupError with a hint."""
    if is_parquet(path):
        columns = list(_pyarrow().parquet.read_schema(path).names)
    else:
        with path.open("rb") as fh:
            header = next(csv.reader(raw.decode("utf-8", errors="replace") for raw in fh), None)
        if header is None:
            raise StartupError(f"{path} is empty. Hint: a CSV needs a header line.")
        columns = [c.strip() for c in header]
    check_columns(columns, path)
    return columns


def reader_for(path: Path, chunk_rows: int) -> Reader:
    if not path.is_file():
        raise StartupError(f"no input file at {path}")
    return ParquetReader(path, chunk_rows) if is_parquet(path) else CsvReader(path, chunk_rows)


def to_record(row: dict[str, Any]) -> dict[str, Any]:
    """The raw fields of a row, as the service's validator takes them; ValueError names the
    field. CSV cells are text, parsed as ``/invocations`` parses them; Parquet's are typed."""
    record: dict[str, Any] = {}
    for name in RAW_COLUMNS:
        value = row.get(name)
        if isinstance(value, str):
            try:
                value = cell_value(name, value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if isinstance(value, float) and math.isnan(value):
            value = None
        if value is None and name != IMPUTED_COLUMN:
            raise ValueError(f"{name}: missing (only {IMPUTED_COLUMN} may be empty)")
        record[name] = value
    return record


class Writer(Protocol):
    def write(self, chunk: Chunk, kept: Kept) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    def __init__(self, path: Path) -> None:
        self._fh = path.open("w", newline="", encoding="utf-8")
        self._out = csv.writer(self._fh)
        self._header = False

    def write(self, chunk: Chunk, kept: Kept) -> None:
        # An input that was scored before: its old answers are replaced, not repeated.
        columns = [c for c in chunk.columns if c not in OUTPUT_COLUMNS]
        outputs = [c for c in OUTPUT_COLUMNS if kept.bounds is not None or c not in RANGE_COLUMNS]
        if not self._header:
            self._out.writerow([*columns, *outputs])
            self._header = True
        for i, answer in kept.answers():
            row = chunk.rows[i]  # the cells as they were: a CSV passes through unchanged
            cells = ["" if row.get(c) is None else row[c] for c in columns]
            dollars = [f"{v:.2f}" if isinstance(v, float) else v for v in answer.values()]
            self._out.writerow([*cells, *dollars])

    def close(self) -> None:
        self._fh.close()


class ParquetWriter:
    def __init__(self, path: Path) -> None:
        self._pa = _pyarrow()
        self.path = path
        self._writer: Any = None
        self._schema: Any = None

    def write(self, chunk: Chunk, kept: Kept) -> None:
        # The model's inputs as the numbers they were read as (a CSV's cells are text).
        rows = [
            {**chunk.rows[i], **record, **answer}
            for (i, answer), record in zip(kept.answers(), kept.records, strict=True)
        ]
        if not rows:
            return
        pa = self._pa
        if self._writer is None:
            table = pa.Table.from_pylist(rows)
            self._schema = table.schema
            self._writer = pa.parquet.ParquetWriter(self.path, self._schema)
        else:  # every chunk in the first one's schema: one file, one schema
            table = pa.Table.from_pylist(rows, schema=self._schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def writer_for(path: Path) -> Writer:
    return ParquetWriter(path) if is_parquet(path) else CsvWriter(path)
